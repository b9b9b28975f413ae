"""The README's side-by-side learning curves: the evaluations of several `dreamer` artifacts on one plot.

    python docs/plot_dreamer_curves.py OUT.png "DreamerV2=runs/cartpole-v2/dreamer.h5" "DreamerV3=runs/cartpole-v3/dreamer.h5" \\
        [--target 475] [--title "CartPole-v1"]

A run that did not finish can be given by its `<out stem>.logs/metrics.jsonl` instead of the artifact.
A run with `--eval-both` gives either of its two scores with `@mode` or `@sample` after the path.
"""

from __future__ import annotations

import argparse
import json

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def evaluations(path: str, action: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(environment steps, mean return, its std, env id) of every evaluation of a `dreamer` artifact or a metrics.jsonl;
    `action` "mode" or "sample" picks that score of an --eval-both run ("": the scored one)."""
    mean_key, std_key = (f"{action}_return_mean", f"{action}_return_std") if action else ("return_mean", "return_std")
    if path.endswith(".jsonl"):
        with open(path) as lines:
            rows = [row for row in map(json.loads, lines) if f"eval/{mean_key}" in row]
        rows = list({row["step"]: row for row in rows}.values())  # a resumed run repeats the evaluation it was killed in
        return (np.array([r["step"] for r in rows]), np.array([r[f"eval/{mean_key}"] for r in rows]),
                np.array([r[f"eval/{std_key}"] for r in rows]), "")
    with h5py.File(path, "r") as f:
        steps, mean, std = (f[f"history/eval_{key}"][:] for key in ("env_steps", mean_key, std_key))
        return steps, mean, std, str(f.attrs["env_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/dreamer.h5")
    parser.add_argument("--target", type=float, default=None, help="A horizontal line at this return.")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()
    fig, axis = plt.subplots(figsize=(8, 4.8))
    for run in args.runs:
        label, path = run.split("=", 1)
        path, _, action = path.partition("@")
        steps, mean, std, env_id = evaluations(path, action)
        title = args.title or env_id
        line, = axis.plot(steps, mean, "o-", markersize=3, label=f"{label} (evaluation, 10 episodes)")
        axis.fill_between(steps, np.asarray(mean) - std, np.asarray(mean) + std, alpha=0.15, color=line.get_color())
    if args.target is not None:
        axis.axhline(args.target, color="grey", linestyle="--", linewidth=1, label=f"target {args.target:g}")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("return")
    axis.set_title(title)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90, bbox_inches="tight")
    print(f"Wrote {args.out}.")


if __name__ == "__main__":
    main()
