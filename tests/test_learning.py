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
