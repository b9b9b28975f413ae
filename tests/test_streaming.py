"""The streaming readers: frames for the VAE, sequence windows for the MDN-RNN."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from wm.worldmodels.frames import FrameStream, episode_frame_indices, read_rows, split_episodes
from wm.actions import memory_inputs
from wm.worldmodels.sequences import WindowReader, WindowStream, episode_windows
from wm.errors import UsageError


def test_every_training_frame_is_visited_exactly_once_an_epoch(tmp_path):
    from tests.conftest import rollout

    path = rollout(tmp_path, env="fake-pixels", episodes=6, max_steps=25)
    with h5py.File(path) as f:
        starts, lengths = f["episode/start"][:], f["episode/length"][:]
        train, heldout = split_episodes(len(starts), 0.2, seed=3)
        rows = episode_frame_indices(starts, lengths, train)
        stream = FrameStream(f["obs"], rows, batch_size=7, seed=3, pool_batches=3)
        orders = []
        for epoch in range(2):
            batches = list(stream.index_batches(epoch))
            assert len(batches) == stream.batches_per_epoch
            visited = np.concatenate(batches)
            np.testing.assert_array_equal(np.sort(visited), np.sort(rows))  # each frame once, none else
            orders.append(visited)
            frames = [batch.numpy() for batch in stream.dataset(epoch)]  # through tf.data, as training reads them
            np.testing.assert_array_equal(np.concatenate(frames), f["obs"][:][visited])
        assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch
        chunk = f["obs"].chunks[0]
        distinct = [len(np.unique(batch // chunk)) for batch in stream.index_batches(0)]
        neighbours = [len(np.unique(rows[i : i + 7] // chunk)) for i in range(0, len(rows), 7)]
        assert np.mean(distinct) >= np.mean(neighbours) + 1.5  # a batch mixes chunks, not runs of neighbours
        # A pool of 3 batches reads whole chunk groups: an epoch decompresses each chunk about once,
        # at most once more per pool boundary that splits a group.
        order = stream.epoch_order(0)
        pools = [order[i : i + stream.pool_size] for i in range(0, len(order), stream.pool_size)]
        chunk_reads = sum(len(np.unique(pool // chunk)) for pool in pools)
        assert chunk_reads <= len(np.unique(rows // chunk)) + len(pools) - 1
        held_rows = set(episode_frame_indices(starts, lengths, heldout).tolist())
        assert held_rows and not held_rows & set(rows.tolist())
        # Resuming at batch 2 yields exactly the rest of the epoch, frames included.
        for start in (2, 4):  # inside the first pool of 3 batches, and inside the second
            resumed = np.concatenate(list(stream.index_batches(1, start=start)))
            np.testing.assert_array_equal(resumed, orders[1][start * 7 :])
            np.testing.assert_array_equal(np.concatenate(list(stream.numpy_batches(1, start=start))), f["obs"][:][resumed])


def test_read_rows_equals_fancy_indexing(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        data = np.arange(1000 * 3).reshape(1000, 3)
        f.create_dataset("x", data=data, chunks=(16, 3), compression="lzf")
        rows = np.sort(np.random.default_rng(0).choice(1000, 77, replace=False))
        np.testing.assert_array_equal(read_rows(f["x"], rows), data[rows])


def test_split_keeps_whole_episodes_apart_and_needs_two():
    train, heldout = split_episodes(20, 0.05, seed=0)
    assert len(heldout) == 1 and len(train) == 19 and not set(train) & set(heldout)
    assert len(split_episodes(2, 0.9, seed=0)[0]) == 1
    with pytest.raises(UsageError, match="at least 2 episodes"):
        split_episodes(1, 0.05, seed=0)


@pytest.mark.parametrize("total", [1, 5, 7, 10, 23])
def test_windows_cover_each_step_once(total):
    rng = np.random.default_rng(total)
    for _ in range(20):
        windows = episode_windows(np.array([total]), np.array([0]), 5, rng)
        covered = [step for _, begin, steps in windows for step in range(begin, begin + steps)]
        assert covered == list(range(total))
        assert len(windows) == -(-total // 5) and all(1 <= steps <= 5 for _, _, steps in windows)


def _latents_like_file(path):
    """A file with the latents step layout; mu[i] = i so that rows can be recognised."""
    lengths = np.array([4, 9, 6])
    steps = int(lengths.sum())
    with h5py.File(path, "w") as f:
        f["mu"] = np.repeat(np.arange(steps, dtype=np.float32)[:, None], 2, axis=1)
        f["logvar"] = np.zeros((steps, 2), np.float32)
        f["action"] = np.arange(steps) % 3
        f["reward"] = np.arange(steps, dtype=np.float32)
        terminated = np.zeros(steps, bool)
        terminated[np.cumsum(lengths) - 1] = True
        f["terminated"] = terminated
        f["episode/start"] = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        f["episode/length"] = lengths


def test_window_batches_align_targets_and_mask_the_last_step(tmp_path):
    _latents_like_file(tmp_path / "l.h5")
    with h5py.File(tmp_path / "l.h5") as f:
        reader = WindowReader(f, action_dim=3, discrete=True)
        batch = reader.read([(1, 2, 5), (0, 0, 4)], length=5)
        # Window of episode 1 (rows 4..12) from step 2: inputs rows 6..10, targets rows 7..11.
        np.testing.assert_array_equal(batch.mu[0, :, 0], [6, 7, 8, 9, 10, 11])
        np.testing.assert_array_equal(batch.has_next[0], [1, 1, 1, 1, 1])
        # Episode 0 (rows 0..3) ends inside the window: no target after its last step, padding after.
        np.testing.assert_array_equal(batch.valid[1], [1, 1, 1, 1, 0])
        np.testing.assert_array_equal(batch.has_next[1], [1, 1, 1, 0, 0])
        np.testing.assert_array_equal(batch.done[1], [0, 0, 0, 1, 0])
        np.testing.assert_array_equal(batch.action[0].argmax(-1), np.arange(6, 11) % 3)
        stream = WindowStream(reader, np.array([0, 1, 2]), length=4, batch_size=2, seed=0)
        for epoch in range(3):
            seen = []
            batches = list(stream.batches(epoch))
            assert len(batches) == stream.batches_per_epoch
            for b in batches:
                seen += [int(v) for v, ok in zip(b.mu[:, :-1, 0].ravel(), b.valid.ravel()) if ok]
                assert b.valid[:, -1].any()  # padded to the batch's own longest window, no further
            assert sorted(seen) == list(range(19))
        whole = WindowStream(reader, np.array([0, 1, 2]), length=100, batch_size=1, seed=0)  # windows longer than every episode
        starts = sorted((int(b.mu[0, 0, 0]), int(b.valid.sum())) for b in whole.batches(0))
        assert starts == [(0, 4), (4, 9), (13, 6)]  # each episode whole, from its first step


def test_actions_are_one_hot_when_discrete():
    np.testing.assert_array_equal(memory_inputs(np.array([2, 0]), 3, True), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(memory_inputs(np.array([[0.5, -1.0]]), 2, False), [[0.5, -1.0]])
