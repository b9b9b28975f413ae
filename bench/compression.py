"""Compression of frames: lzf against gzip levels, written and read the way wm writes and reads them.

The default compression of every artifact must be one that Debian's `h5dump` and HDFView read
(gzip; lzf is an h5py-only filter). This measures what each choice costs on real frames: the same
frames (taken from a rollouts artifact) are written with the rollouts layout (chunks of 4 frames,
byte shuffle) once per filter, then read back in the order `wm train-vae` reads them (whole chunk
groups). It prints, per filter, the size, the write and read rates, and their ratio to lzf.

    python bench/compression.py --rollouts /work/runs/cpu3h/rollouts.h5 --frames 20000
    python bench/compression.py --rollouts r.h5 --filters lzf gzip1 gzip2 gzip4 gzip6 none --rounds 3

Filters alternate within each round, so that a change in the machine's load hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

FILTERS = {
    "none": {},
    "lzf": {"compression": "lzf", "shuffle": True},
    **{f"gzip{level}": {"compression": "gzip", "compression_opts": level, "shuffle": True} for level in range(1, 10)},
}


def write(frames: np.ndarray, path: Path, options: dict) -> float:
    """Seconds to write `frames` episode by episode (1,000-frame appends), as the rollout writer does."""
    started = time.perf_counter()
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset("obs", shape=(0, *frames.shape[1:]), maxshape=(None, *frames.shape[1:]), dtype=np.uint8,
                                   chunks=(4, *frames.shape[1:]), **options)
        for begin in range(0, len(frames), 1000):
            block = frames[begin : begin + 1000]
            dataset.resize(begin + len(block), axis=0)
            dataset[begin : begin + len(block)] = block
    return time.perf_counter() - started


def read(path: Path) -> float:
    """Seconds to read every frame back in blocks of 1,024 rows (whole chunks), as the VAE's frame stream does."""
    started = time.perf_counter()
    with h5py.File(path, "r") as f:
        dataset = f["obs"]
        for begin in range(0, dataset.shape[0], 1024):
            dataset[begin : begin + 1024]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=Path, required=True, help="a rollouts artifact to take frames from")
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--filters", nargs="+", default=["lzf", "gzip1", "gzip2", "gzip4", "gzip6", "none"], choices=sorted(FILTERS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with h5py.File(args.rollouts, "r") as f:
        frames = f["obs"][: args.frames]
    print(f"{len(frames)} frames of {args.rollouts} ({frames.nbytes / 2**20:.0f} MiB raw), {args.rounds} rounds, filters alternating")
    writes: dict[str, list[float]] = {name: [] for name in args.filters}
    reads: dict[str, list[float]] = {name: [] for name in args.filters}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(dir=args.rollouts.parent) as folder:
        for _ in range(args.rounds):
            for name in args.filters:
                path = Path(folder) / f"{name}.h5"
                writes[name].append(write(frames, path, FILTERS[name]))
                os.sync()
                reads[name].append(read(path))
                sizes[name] = path.stat().st_size
                path.unlink()
    base = "lzf" if "lzf" in args.filters else args.filters[0]
    write_rate = {name: len(frames) / float(np.median(values)) for name, values in writes.items()}
    read_rate = {name: len(frames) / float(np.median(values)) for name, values in reads.items()}
    print(f"{'filter':8s} {'MiB':>7s} {'KiB/frame':>9s} {'write fr/s':>11s} {'vs ' + base:>8s} {'read fr/s':>10s} {'vs ' + base:>8s}")
    for name in args.filters:
        print(f"{name:8s} {sizes[name] / 2**20:7.1f} {sizes[name] / 1024 / len(frames):9.2f} {write_rate[name]:11.0f} "
              f"{write_rate[name] / write_rate[base]:7.2f}x {read_rate[name]:10.0f} {read_rate[name] / read_rate[base]:7.2f}x")


if __name__ == "__main__":
    main()
