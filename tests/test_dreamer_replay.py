"""Dreamer's sequence windows against a direct reading of the whole (small) file."""

import h5py
import numpy as np

from wm.actions import dreamer_model_action
from wm.dreamer.replay import WindowSampler
from wm.io.rollouts import Episode, RolloutsWriter


def _replay(path, lengths, discrete=True):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        writer = RolloutsWriter(f, obs_shape=(3,), obs_dtype=np.float32, action_shape=() if discrete else (2,),
                                action_dtype=np.int64 if discrete else np.float32, compression="lzf", image_obs=False)
        for index, length in enumerate(lengths):
            terminated = np.zeros(length, bool)
            terminated[-1] = index % 2 == 0
            action = rng.integers(0, 3, length) if discrete else rng.uniform(-2, 2, (length, 2))
            writer.append(Episode(index, index, rng.normal(size=(length, 3)).astype(np.float32), action,
                                  rng.normal(size=length).astype(np.float32), terminated, ~terminated & False))
        writer.finish()


def test_windows_cross_episodes_with_resets_previous_actions_and_next_flags(tmp_path):
    path = tmp_path / "replay.h5"
    lengths = [4, 9, 3, 12]
    _replay(path, lengths)
    with h5py.File(path, "r") as f:
        obs, action, reward = f["obs"][:], f["action"][:], f["reward"][:]
        starts = set(np.cumsum([0] + lengths[:-1]).tolist())
        sampler = WindowSampler(f, 6, "categorical", 3)
        for start in range(sum(lengths) - 6 + 1):
            window = sampler.window(start)
            np.testing.assert_array_equal(window["obs"], obs[start:start + 6])
            np.testing.assert_array_equal(window["reward"], reward[start:start + 6])
            for t in range(6):
                row = start + t
                assert window["is_first"][t] == (row in starts or t == 0 and row == 0)
                np.testing.assert_array_equal(window["action"][t], np.eye(3)[action[row]])
                expected_previous = np.zeros(3) if row in starts or row == 0 else np.eye(3)[action[row - 1]]
                np.testing.assert_array_equal(window["previous_action"][t], expected_previous)
                assert window["has_next"][t] == (t < 5 and row + 1 not in starts)


def test_batches_are_seeded_and_limited_to_the_committed_rows(tmp_path):
    path = tmp_path / "replay.h5"
    _replay(path, [10, 10, 10], discrete=False)
    with h5py.File(path, "r") as f:
        sampler = WindowSampler(f, 5, "bounded", 2, low=[-2, -2], high=[2, 2])
        a = sampler.sample(8, np.random.default_rng(1))
        b = sampler.sample(8, np.random.default_rng(1))
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        assert a["obs"].shape == (8, 5, 3) and a["action"].shape == (8, 5, 2)
        assert np.all(np.abs(a["action"]) <= 1.0)
        sampler.refresh(10, np.array([0]))  # only the first episode is committed
        assert not sampler.sample(50, np.random.default_rng(2))["is_first"][:, 1:].any()
    np.testing.assert_allclose(dreamer_model_action(np.array([[-2.0, 2.0], [0.0, 1.0]]), "bounded", 2, np.array([-2, -2]), np.array([2, 2])),
                               [[-1.0, 1.0], [0.0, 0.5]])
