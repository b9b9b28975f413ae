"""The README's side-by-side learning curves: the evaluations of several `dreamer` artifacts on one plot.

    python docs/plot_dreamer_curves.py OUT.png "DreamerV2=runs/cartpole-v2/dreamer.h5" "DreamerV3=runs/cartpole-v3/dreamer.h5" \\
        [--target 475] [--title "CartPole-v1"]
"""

from __future__ import annotations

import argparse

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/dreamer.h5")
    parser.add_argument("--target", type=float, default=None, help="A horizontal line at this return.")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()
    fig, axis = plt.subplots(figsize=(7, 4))
    for run in args.runs:
        label, path = run.split("=", 1)
        with h5py.File(path, "r") as f:
            steps, mean, std = (f[f"history/eval_{key}"][:] for key in ("env_steps", "return_mean", "return_std"))
            title = args.title or str(f.attrs["env_id"])
        line, = axis.plot(steps, mean, "o-", markersize=3, label=f"{label} (evaluation, 10 episodes)")
        axis.fill_between(steps, np.asarray(mean) - std, np.asarray(mean) + std, alpha=0.15, color=line.get_color())
    if args.target is not None:
        axis.axhline(args.target, color="grey", linestyle="--", linewidth=1, label=f"target {args.target:g}")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("return")
    axis.set_title(title)
    axis.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"Wrote {args.out}.")


if __name__ == "__main__":
    main()
