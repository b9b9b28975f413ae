"""Learning runs (slow: run with `pytest -m slow`): the demo chains must actually learn something."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_wm
from wm.io.artifact import open_artifact


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_doom_takecover_demo_chain_learns(tmp_path):
    """40 random episodes: the VAE improves, the MDN-RNN beats the copy baseline, the death head ranks deaths above
    chance, CMA-ES improves the controller in the dream, and the evaluation ran on fresh seeds."""
    folder = tmp_path / "demo"
    result = run_wm("run", "doom-takecover", "--preset", "demo", "--out", str(folder), timeout=1800)
    assert result.returncode == 0, result.stderr
    with open_artifact(folder / "vae.h5", "vae") as vae:
        history = json.loads(vae.attr("history_json"))
        assert history[-1]["heldout/reconstruction"] < 0.7 * history[0]["heldout/reconstruction"]
    with open_artifact(folder / "mdnrnn.h5", "mdnrnn") as mdnrnn:
        final = json.loads(mdnrnn.attr("history_json"))[-1]
        assert final["heldout/nll"] < final["heldout/copy_baseline_nll"] - 0.1
        # 8 held-out deaths after 32 training ones: well above chance (0.5), not the 0.9 target, which
        # needs more data (the README's 200-episode run).
        assert final["heldout/done_auc"] > 0.7
    with open_artifact(folder / "controller.h5", "controller") as controller:
        history = json.loads(controller.attr("history_json"))
        assert history[-1]["population/mean"] > history[0]["population/mean"]
    with open_artifact(folder / "evaluation.h5", "evaluation") as evaluation:
        assert evaluation.file["episode/return"].shape == (24,) and evaluation.attr("mean_return") > 0


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_dreamer_cartpole_demo_learns(tmp_path):
    """10,000 CartPole-v1 steps of `wm run dreamer-cartpole --preset demo`: an evaluation of the actor beats the
    random policy (about 22 steps) many times over, and the recipe's 10-episode evaluation scores above 100."""
    folder = tmp_path / "cartpole"
    result = run_wm("run", "dreamer-cartpole", "--preset", "demo", "--out", str(folder), timeout=2400)
    assert result.returncode == 0, result.stderr
    with open_artifact(folder / "dreamer.h5", "dreamer") as dreamer:
        evaluations = dreamer.file["history/eval_return_mean"][:]
        assert evaluations.max() >= 200, evaluations
        assert dreamer.file["history/episode_return"].shape[0] > 0
    with open_artifact(folder / "evaluation.h5", "evaluation") as evaluation:
        assert evaluation.file["episode/return"].shape == (10,) and evaluation.attr("mean_return") > 100
