"""TensorFlow's oneDNN kernels on and off, side by side in one run, for wm's three hot loops.

TensorFlow turns its oneDNN (MKL) kernels on by default only on some x86 CPUs: on an AMD EPYC
without AVX-512 they were off, and `wm train-vae` ran at about 30 frames/s. `wm.tfsetup` now turns
them on unless TF_ENABLE_ONEDNN_OPTS is set. This script times, in a fresh child process per
setting (the variable is read when TensorFlow starts), alternating settings for each round:

  vae     - the `wm train-vae` update (doom-takecover VAE, z = 64, batch 100): frames/s;
  mdnrnn  - the `wm train-mdnrnn` update (LSTM 512, death head, batch 16 x 200 steps): step-samples/s;
  dream   - one batched CMA-ES generation in the dream (`Dream.run_linear`, 256 dreams x 200 steps):
            dream steps/s;

and the VAE loss of the same first update under both settings (they must agree closely: the same
math, other kernels). Prints each median and the ratio on / off.

    python bench/onednn.py
    python bench/onednn.py --rounds 3 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def _rate(update, work: float, seconds: float) -> float:
    """Work units per second of `update()` over about `seconds` (after one untimed call)."""
    update()
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        update()
        count += 1
    return count * work / (time.perf_counter() - start)


def child(seconds: float, precision: str = "float32", loops: tuple[str, ...] = ("vae", "mdnrnn", "dream")) -> dict:
    """The rates of `loops` and the VAE's first loss in this process (TF_ENABLE_ONEDNN_OPTS as the parent set it).

    The VAE and M compute in `precision` (bench/precision.py compares float32 with mixed_bfloat16).
    """
    from wm.worldmodels.vae import build_vae, make_train_step
    from wm.tfsetup import dtype_policy, keras, tensorflow

    sys.path.insert(0, os.path.dirname(__file__))
    from dream import generation
    from mdnrnn_speed import make_update

    tf, keras = tensorflow(), keras()
    keras.utils.set_random_seed(0)
    generator = np.random.default_rng(0)
    with dtype_policy(precision):
        vae = build_vae(64)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(vae.trainable_variables)
    vae_step = make_train_step(vae, optimizer, 0.5, seed=0)
    frames = tf.constant(generator.integers(0, 256, (100, 64, 64, 3), dtype=np.uint8))
    first_loss = float(vae_step(frames, tf.constant(0, tf.int64))["loss"])
    result = {"first_vae_loss": first_loss}
    if "vae" in loops:
        result["vae"] = _rate(lambda: vae_step(frames, tf.constant(1, tf.int64))["loss"].numpy(), 100, seconds)
    if "mdnrnn" in loops:
        with dtype_policy(precision):
            mdnrnn_update = make_update(16, False)
        result["mdnrnn"] = _rate(mdnrnn_update, 16 * 200, seconds)
    if "dream" in loops:
        dream, layout, params, candidate, keys = generation(16, 16, 200)
        result["dream"] = _rate(lambda: dream.run_linear(layout, params, candidate, keys), 256 * 200, seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds per setting (medians are printed).")
    parser.add_argument("--seconds", type=float, default=8.0, help="Timing of each loop per round.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)  # of the child
    parser.add_argument("--loops", default="vae,mdnrnn,dream", help=argparse.SUPPRESS)  # of the child
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.seconds, args.precision, tuple(args.loops.split(",")))))
        return
    runs: dict[str, list[dict]] = {"0": [], "1": []}
    for round_index in range(args.rounds):
        for setting in runs:
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "2"}
            output = subprocess.run([sys.executable, __file__, "--child", "--seconds", str(args.seconds)], env=env,
                                    check=True, capture_output=True, text=True).stdout
            runs[setting].append(json.loads(output.strip().splitlines()[-1]))
            print(f"  round {round_index + 1}, oneDNN {'on ' if setting == '1' else 'off'}: "
                  + ", ".join(f"{key} {value:.0f}" for key, value in runs[setting][-1].items() if key != "first_vae_loss"), flush=True)
    units = {"vae": "frames/s", "mdnrnn": "step-samples/s", "dream": "dream steps/s"}
    for key, unit in units.items():
        off = float(np.median([run[key] for run in runs["0"]]))
        on = float(np.median([run[key] for run in runs["1"]]))
        print(f"{key:7s} oneDNN off {off:9.0f} {unit}, on {on:9.0f} {unit}: on / off = {on / off:.2f}")
    losses = runs["0"][0]["first_vae_loss"], runs["1"][0]["first_vae_loss"]
    print(f"first VAE update, same frames and noise: loss {losses[0]:.4f} (off) and {losses[1]:.4f} (on), "
          f"relative difference {abs(losses[0] - losses[1]) / abs(losses[0]):.1e}")


if __name__ == "__main__":
    main()
