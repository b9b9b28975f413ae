"""VAE training: streaming from disk against in memory, and memory use against file size.

1. Frames per second of the VAE update (the same compiled step of `wm train-vae`, same model, same
   frames, batch 100) fed two ways, measured alternately in one run:
   streaming - `FrameStream` reading shuffled batches from the lzf-compressed rollouts file through
               tf.data, as `wm train-vae` does;
   in memory - the same frames in the same order, loaded into a NumPy array first and sliced
               into batches (no reading, no decompression, no tf.data).
   Target: streaming / in memory >= 0.9 (the input pipeline is not the bottleneck).
2. Peak resident memory of the real `wm train-vae` command (same number of batches) on a rollouts
   file of about 200,000 frames against one of about 20,000. Target: large / small <= 1.2.

    python bench/vision_memory.py                       # makes the doom-takecover files it needs
    python bench/vision_memory.py --data-dir /tmp/wm-bench --batches 150
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ENV = "doom-takecover"


def ensure_rollouts(path: Path, frames: int, seed: int) -> Path:
    """A doom-takecover random rollouts file with at least `frames` frames (made with `wm rollout` if missing)."""
    from wm.io.artifact import open_artifact

    if path.exists():
        with open_artifact(path, "rollouts") as artifact:
            if artifact.file["reward"].shape[0] >= frames:
                return path
    episodes = 1 + frames // 300  # random doom-takecover episodes last about 330 steps
    while True:
        subprocess.run(
            [sys.executable, "-m", "wm", "rollout", "--env", ENV, "--episodes", str(episodes), "--seed", str(seed),
             "--out", str(path), "--force"],
            check=True,
        )
        with open_artifact(path, "rollouts") as artifact:
            if artifact.file["reward"].shape[0] >= frames:
                return path
        episodes = int(episodes * 1.2) + 1


def rollout_steps(path: Path) -> int:
    """How many steps a rollouts file holds."""
    from wm.io.artifact import open_artifact

    with open_artifact(path, "rollouts") as artifact:
        return int(artifact.file["reward"].shape[0])


def throughput(path: Path, batches: int, rounds: int) -> tuple[float, float]:
    """(streaming, in-memory) frames per second of the VAE update, medians over alternating rounds."""
    from wm.worldmodels.frames import FrameStream
    from wm.io.artifact import open_artifact
    from wm.worldmodels.vae import build_vae, make_train_step
    from wm.tfsetup import keras, tensorflow

    tf, keras = tensorflow(), keras()
    model = build_vae(64)
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    train_step = make_train_step(model, optimizer, 0.5, seed=0)
    with open_artifact(path, "rollouts") as artifact:
        obs = artifact.file["obs"]
        rows = np.arange(min(obs.shape[0], (batches + 3) * 100 * (rounds + 1)))
        stream = FrameStream(obs, rows, batch_size=100, seed=0)
        in_memory = obs[: len(rows)]  # loaded whole: the thing `wm train-vae` never does

        def memory_batches(epoch: int):
            """The same order, sliced from memory: no reading, no decompression, no tf.data."""
            ordered = in_memory[stream.epoch_order(epoch)]
            return (ordered[begin : begin + 100] for begin in range(0, len(ordered), 100))

        def streaming_batches(epoch: int):
            return iter(stream.dataset(epoch))

        def timed(batches_iterator) -> float:
            started, frames = None, 0
            for index, batch in zip(range(batches + 3), batches_iterator):
                train_step(tf.convert_to_tensor(batch), tf.constant(index, tf.int64))["loss"].numpy()
                if index == 2:  # the first batches pay for tracing and thread start-up
                    started = time.perf_counter()
                elif index > 2:
                    frames += int(batch.shape[0])
            return frames / (time.perf_counter() - started)

        timed(streaming_batches(rounds))  # warm-up, not counted: tracing, thread pools, the file's first reads
        timed(memory_batches(rounds))
        streaming, memory = [], []
        for epoch in range(rounds):
            streaming.append(timed(streaming_batches(epoch)))
            memory.append(timed(memory_batches(epoch)))
            print(f"  round {epoch + 1}: streaming {streaming[-1]:.0f} frames/s, in memory {memory[-1]:.0f} frames/s", flush=True)
    return float(np.median(streaming)), float(np.median(memory))


# Runs `python -m wm ...` in this process and, at exit, writes its peak resident memory (VmHWM) to
# the file named by WM_BENCH_PEAK. VmHWM belongs to the exec'd program alone; rusage's ru_maxrss
# would also count the pages of this (large) benchmark process that the child was forked from.
PEAK_WRAPPER = """
import atexit, os, runpy, sys
def report():
    with open('/proc/self/status') as status, open(os.environ['WM_BENCH_PEAK'], 'w') as out:
        out.write(next(line for line in status if line.startswith('VmHWM')).split()[1])
atexit.register(report)
sys.argv = ['wm', *sys.argv[1:]]
runpy.run_module('wm', run_name='__main__', alter_sys=True)
"""


def peak_rss_of(arguments: list[str], peak_file: Path) -> float:
    """Peak resident memory (MiB, VmHWM) of the real `wm ARGUMENTS` command, run to its end."""
    command = [sys.executable, "-c", PEAK_WRAPPER, *arguments]
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "WM_BENCH_PEAK": str(peak_file)})
    if result.returncode != 0:
        raise SystemExit(f"wm {arguments[0]} failed:\n{result.stderr}")
    return int(peak_file.read_text()) / 1024.0  # VmHWM is in KiB


def peak_rss_mib(rollouts: Path, out: Path, batches: int) -> float:
    """Peak resident memory (MiB) of `wm train-vae` on `rollouts` for one epoch of `batches` batches."""
    out.unlink(missing_ok=True)  # an up-to-date output would make the command return at once
    return peak_rss_of(["train-vae", "--rollouts", str(rollouts), "--out", str(out), "--force", "--latent-dim", "64",
                        "--epochs", "1", "--batches-per-epoch", str(batches)], out.with_suffix(".peak"))


def parse_with_rollouts(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Path, Path]:
    """The arguments (with --data-dir, --small-frames, --large-frames) and the small and large rollouts, made if missing."""
    parser.add_argument("--data-dir", type=Path, default=Path("artifacts/bench"), help="Where the rollouts files are kept.")
    parser.add_argument("--small-frames", type=int, default=20_000)
    parser.add_argument("--large-frames", type=int, default=200_000)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    small = ensure_rollouts(args.data_dir / "rollouts-20k.h5", args.small_frames, seed=1)
    large = ensure_rollouts(args.data_dir / "rollouts-200k.h5", args.large_frames, seed=2)
    return args, small, large


def print_memory_ratio(small: Path, large: Path, peak_mib: Callable[[Path, str], float], unit: str) -> None:
    """Peak memory of the same work on the small and the large rollouts, and their ratio (the target: at most 1.2)."""
    sizes = {path: rollout_steps(path) for path in (small, large)}
    small_rss, large_rss = peak_mib(small, "small"), peak_mib(large, "large")
    print(f"   {sizes[small]} {unit}: {small_rss:.0f} MiB; {sizes[large]} {unit}: {large_rss:.0f} MiB; "
          f"ratio {large_rss / small_rss:.3f} (target <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=60, help="Timed batches per round (part 1) and per run (part 2).")
    parser.add_argument("--rounds", type=int, default=5, help="Alternating rounds of part 1 (after one warm-up round).")
    args, small, large = parse_with_rollouts(parser)

    print("1. VAE update, frames per second (batch 100, z = 64, 2 cores):")
    streaming, memory = throughput(large, args.batches, args.rounds)
    print(f"   streaming from {large.name} (lzf): {streaming:.0f} frames/s; in memory: {memory:.0f} frames/s; "
          f"ratio {streaming / memory:.3f} (target >= 0.9)")

    print("2. Peak resident memory of `wm train-vae` (same batches, one epoch):")
    print_memory_ratio(small, large, lambda path, size: peak_rss_mib(path, args.data_dir / f"vae-{size}.h5", args.batches), "frames")


if __name__ == "__main__":
    main()
