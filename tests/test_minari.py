"""`wm export minari` through Minari's own API, read back with `minari.load_dataset`."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import rollout, run_wm
from wm.io.artifact import open_artifact
from wm.io.rollouts import RolloutsReader


@pytest.fixture
def minari_home(tmp_path, monkeypatch):
    home = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(home))
    return home


@pytest.mark.parametrize("env", ["doom-takecover", "carracing"])
def test_round_trip_gives_back_observations_actions_rewards(tmp_path, minari_home, env):
    import minari

    source = rollout(tmp_path, env=env, episodes=2, max_steps=40)
    result = run_wm("export", "minari", str(source), "--dataset-id", f"wm/{env}-test-v0")
    assert result.returncode == 0, result.stderr
    dataset = minari.load_dataset(f"wm/{env}-test-v0")
    with open_artifact(source) as artifact:
        reader = RolloutsReader(artifact)
        assert dataset.total_episodes == reader.num_episodes and dataset.total_steps == reader.num_steps
        for ours, theirs in zip(reader.episodes(), dataset.iterate_episodes()):
            assert np.array_equal(theirs.observations[:-1], ours.obs)  # bit-exact: no JPEG
            assert not theirs.observations[-1].any()  # the unrecorded final observation
            assert np.array_equal(np.asarray(theirs.actions).reshape(ours.action.shape), ours.action)
            assert np.array_equal(theirs.rewards, ours.reward)
            assert np.array_equal(theirs.terminations, ours.terminated)
            assert np.array_equal(theirs.truncations, ours.truncated)
            assert theirs.id == ours.index


def test_existing_dataset_is_refused_unless_forced(tmp_path, minari_home):
    source = rollout(tmp_path, env="fake-pixels", episodes=2)
    assert run_wm("export", "minari", str(source), "--dataset-id", "wm/fake-v0").returncode == 0
    again = run_wm("export", "minari", str(source), "--dataset-id", "wm/fake-v0")
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    assert run_wm("export", "minari", str(source), "--dataset-id", "wm/fake-v0", "--force").returncode == 0


def test_malformed_dataset_id(tmp_path, minari_home):
    source = rollout(tmp_path, env="fake-pixels", episodes=1)
    result = run_wm("export", "minari", str(source), "--dataset-id", "no version")
    assert result.returncode == 2 and "not a valid Minari dataset id" in result.stderr
