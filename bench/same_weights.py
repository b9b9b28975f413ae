"""Same seed, same weights: the tiny pipelines of two versions of wm, compared array by array.

A refactor that moves code around must not change what the code computes. This script installs
two versions of wm (a git revision, and by default the working tree) side by side in a temporary
folder, runs the same tiny pipelines with the same seed in each, and compares every numeric
dataset of every artifact both runs wrote (model weights, training histories aside from wall
times, rollouts, latents, evaluation returns). It prints, per artifact, how many arrays are equal
and the largest difference, and exits 1 if any array differs.

    python bench/same_weights.py --before d5a48dd                 # that commit against the working tree
    python bench/same_weights.py --before d5a48dd --after HEAD
    python bench/same_weights.py --before HEAD --after HEAD       # the pipelines' own determinism

Both versions run on this machine, one after the other, so CPU kernels are the same for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PIPELINES = ("doom-takecover", "dreamer-cartpole")
# Datasets that record wall time or the machine, not what was computed.
TIMING_WORDS = ("seconds", "elapsed", "time", "frames_per_second", "items")


def install(revision: str | None, folder: Path) -> Path:
    """Install wm at `revision` (None: the working tree) without dependencies into `folder/site`."""
    source = folder / "src"
    if revision is None:
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "artifacts", "build", "*.egg-info", "__pycache__"))
    else:
        source.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    site = folder / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(source)],
        check=True, cwd=folder,
    )
    return site


def run_pipelines(site: Path, folder: Path, seed: int) -> dict[str, float]:
    """Run each tiny pipeline with the installed wm; returns the wall time of each."""
    env = dict(os.environ, PYTHONPATH=str(site))
    times = {}
    for pipeline in PIPELINES:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "wm", "run", pipeline, "--preset", "tiny", "--seed", str(seed), "--out", str(folder / "runs" / pipeline)],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if result.returncode:
            sys.exit(f"wm run {pipeline} failed:\n{result.stderr[-3000:]}")
        times[pipeline] = time.perf_counter() - start
    return times


def numeric_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every numeric dataset of an HDF5 file whose name does not record time, by its path."""
    import h5py

    arrays: dict[str, np.ndarray] = {}

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "biuf" and not any(w in name for w in TIMING_WORDS):
            arrays[name] = item[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return arrays


def compare(before: Path, after: Path) -> bool:
    """Print the comparison of the artifacts of both runs; True if every array is equal."""
    same = True
    files = sorted(p.relative_to(before) for p in before.rglob("*.h5") if ".ckpt" not in p.parts[-2])
    print(f"{'artifact':52s} {'arrays':>7s} {'equal':>6s} {'max |difference|':>17s}")
    for relative in files:
        if not (after / relative).exists():
            print(f"{str(relative):52s} missing after the change")
            same = False
            continue
        a, b = numeric_arrays(before / relative), numeric_arrays(after / relative)
        names = sorted(set(a) | set(b))
        equal, largest = 0, 0.0
        for name in names:
            if name not in a or name not in b:
                print(f"  {relative}: dataset {name} is only in the {'after' if name in b else 'before'} run")
                same = False
                continue
            x, y = a[name], b[name]
            if x.shape != y.shape or x.dtype != y.dtype:
                print(f"  {relative}: {name} is {x.dtype}{x.shape} before, {y.dtype}{y.shape} after")
                same = False
                continue
            if np.array_equal(x, y, equal_nan=True):
                equal += 1
            else:
                largest = max(largest, float(np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
                same = False
        print(f"{str(relative):52s} {len(names):7d} {equal:6d} {largest:17.3g}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the first version")
    parser.add_argument("--after", default=None, help="git revision of the second version (default: the working tree)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep both runs in this folder")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wm-same-weights-"))
    try:
        runs = {}
        for label, revision in (("before", args.before), ("after", args.after)):
            site = install(revision, folder / label)
            times = run_pipelines(site, folder / label, args.seed)
            runs[label] = folder / label / "runs"
            print(f"{label} ({revision or 'working tree'}): " + ", ".join(f"{p} {t:.0f} s" for p, t in times.items()))
        same = compare(runs["before"], runs["after"])
        print("Every array is equal." if same else "Some arrays differ.")
        return 0 if same else 1
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
