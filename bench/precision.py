"""float32 against Keras `mixed_bfloat16` for `wm train-vae` and `wm train-mdnrnn`, side by side in one run.

Speed: the two updates alone on frames and windows held in memory (no file reading), each precision
in a fresh process, alternating, `--rounds` rounds of `--seconds` per loop (bench/onednn.py's child);
prints the medians and their ratio.

Quality: each precision trains the same model from the same first weights on the same batches (same seed), as
the real stage, in a fresh `wm` process, one after the other. The stage records each epoch's
training seconds (without the held-out evaluation) and its held-out metrics, computed by a float32
copy of the weights (what `wm encode`, `wm dream` and the controller use). Prints, per model, the
training speed of both and their ratio, and the held-out metrics epoch by epoch.

    python bench/precision.py --rollouts R.h5 --latents L.h5 --out /tmp/precision
    python bench/precision.py --rollouts R.h5 --latents L.h5 --out /tmp/precision --vae-batches 250 --vae-epochs 3 --m-epochs 2
    python bench/precision.py --only speed --rounds 3

The models are doom-takecover's as `--preset cpu-3h` trains them: the VAE (z = 64, lr 1e-3, batches of
100 frames) and M (LSTM 512, death head, whole episodes of up to 2,100 steps, batches of 16). The
latents should be of the same rollouts (any VAE: `wm encode`). bfloat16 is fast only on CPUs with
BF16 instructions (`lscpu | grep avx512_bf16`, or AMX).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from wm.tfsetup import PRECISIONS


def train(stage: str, arguments: list[str], out: Path, precision: str) -> list[dict]:
    """Run `wm STAGE ARGUMENTS --precision P --out OUT` in a fresh process; its per-epoch history."""
    import h5py

    command = [sys.executable, "-m", "wm", stage, *arguments, "--precision", precision, "--out", str(out), "--force"]
    print("$", " ".join(command[2:]), flush=True)
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    with h5py.File(out, "r") as f:
        return json.loads(f.attrs["history_json"])


def compare(title: str, histories: dict[str, list[dict]], unit: str, metrics: list[str]) -> None:
    """Print the speed of each precision (the frames or steps of its epochs over their seconds), the ratio, and
    the held-out metrics epoch by epoch."""
    print(f"\n{title}")
    rates = {}
    for precision, history in histories.items():
        seconds = sum(row["seconds"] for row in history)
        rates[precision] = sum(row["items"] for row in history) / seconds
        print(f"  {precision:15s} {rates[precision]:9.1f} {unit} ({seconds:.0f} s of updates over {len(history)} epochs)")
    print(f"  ratio mixed_bfloat16 / float32: {rates['mixed_bfloat16'] / rates['float32']:.2f}")
    for metric in metrics:
        values = {p: [row[f"heldout/{metric}"] for row in h] for p, h in histories.items()}
        cells = "; ".join(f"epoch {i + 1}: {a:.4f} vs {b:.4f} ({(b - a) / abs(a) * 100:+.2f} %)"
                          for i, (a, b) in enumerate(zip(values["float32"], values["mixed_bfloat16"])))
        print(f"  held-out {metric} (float32 vs mixed_bfloat16): {cells}")


def speed(rounds: int, seconds: float) -> None:
    """Median update rates of the VAE and M in each precision, alternating fresh processes."""
    import numpy as np

    runs: dict[str, list[dict]] = {p: [] for p in PRECISIONS}
    script = str(Path(__file__).with_name("onednn.py"))
    for round_index in range(rounds):
        for precision in PRECISIONS:
            command = [sys.executable, script, "--child", "--seconds", str(seconds), "--precision", precision, "--loops", "vae,mdnrnn"]
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ.copy()).stdout
            runs[precision].append(json.loads(output.strip().splitlines()[-1]))
            print(f"  round {round_index + 1}, {precision}: VAE {runs[precision][-1]['vae']:.0f} frames/s, "
                  f"M {runs[precision][-1]['mdnrnn']:.0f} step-samples/s", flush=True)
    print("\nUpdates alone, inputs in memory (medians):")
    for key, title, unit in (("vae", "VAE (batch 100)", "frames/s"), ("mdnrnn", "M (LSTM 512, batch 16 x 200 steps)", "step-samples/s")):
        median = {p: float(np.median([run[key] for run in runs[p]])) for p in PRECISIONS}
        print(f"  {title}: float32 {median['float32']:.0f}, mixed_bfloat16 {median['mixed_bfloat16']:.0f} {unit}; "
              f"ratio {median['mixed_bfloat16'] / median['float32']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", help="doom-takecover rollouts (the VAE's frames).")
    parser.add_argument("--latents", help="Latents of those rollouts (M's sequences).")
    parser.add_argument("--out", type=Path, help="Folder for the trained artifacts and their logs.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds of the speed measurement.")
    parser.add_argument("--seconds", type=float, default=8.0, help="Timing of each loop per round.")
    parser.add_argument("--vae-batches", type=int, default=250, help="VAE batches of 100 frames per epoch.")
    parser.add_argument("--vae-epochs", type=int, default=3)
    parser.add_argument("--m-epochs", type=int, default=2, help="M epochs over whole episodes (batches of 16).")
    parser.add_argument("--only", choices=("speed", "vae", "mdnrnn"), help="One part only.")
    args = parser.parse_args()
    if args.only != "speed" and not (args.out and (args.rollouts or args.only == "mdnrnn") and (args.latents or args.only == "vae")):
        parser.error("the stage runs need --out, --rollouts (VAE) and --latents (M); --only speed needs none")
    if args.only in (None, "speed"):
        speed(args.rounds, args.seconds)
    if args.only == "speed":
        return
    args.out.mkdir(parents=True, exist_ok=True)

    if args.only in (None, "vae"):
        vae_arguments = ["train-vae", "--rollouts", args.rollouts, "--preset", "doom-takecover", "--learning-rate", "0.001",
                         "--heldout-fraction", "0.01", "--epochs", str(args.vae_epochs), "--batches-per-epoch", str(args.vae_batches)]
        histories = {p: train(vae_arguments[0], vae_arguments[1:], args.out / f"vae-{p}.h5", p) for p in PRECISIONS}
        compare("VAE update (z = 64, batches of 100 frames)", histories, "frames/s", ["loss", "reconstruction", "kl"])
    if args.only in (None, "mdnrnn"):
        m_arguments = ["train-mdnrnn", "--latents", args.latents, "--preset", "doom-takecover", "--sequence-length", "2100",
                       "--batch-size", "16", "--epochs", str(args.m_epochs)]
        histories = {p: train(m_arguments[0], m_arguments[1:], args.out / f"mdnrnn-{p}.h5", p) for p in PRECISIONS}
        compare("MDN-RNN update (LSTM 512, death head, whole episodes, batches of 16)", histories, "step-samples/s", ["nll", "done_auc"])


if __name__ == "__main__":
    main()
