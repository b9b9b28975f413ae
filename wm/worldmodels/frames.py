"""Frames for VAE training, streamed from a rollouts artifact in shuffled order.

An epoch visits every training frame exactly once, in an order drawn from (seed, epoch) (see
`FrameStream`). Reads are sorted hyperslab reads, one per run of neighbouring frames. Only the
index array (8 bytes a frame) and a pool of batches are ever in memory. The held-out
split is by episode, so no held-out frame has a near-duplicate neighbour in training.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import h5py
import numpy as np

from wm.errors import UsageError
from wm.rng import data_generator
from wm.tfsetup import tensorflow


def check_episode_count(num_episodes: int) -> None:
    """Training holds one episode or more out for validation, so it needs at least 2."""
    if num_episodes < 2:
        raise UsageError(f"Training needs at least 2 episodes (one is held out for validation); the input has {num_episodes}.")


def split_episodes(num_episodes: int, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) episode numbers: a seeded random `heldout_fraction` (at least one) is held out."""
    check_episode_count(num_episodes)
    heldout = min(num_episodes - 1, max(1, int(round(heldout_fraction * num_episodes))))
    order = data_generator(seed, 0x5E1).permutation(num_episodes)
    return np.sort(order[heldout:]), np.sort(order[:heldout])


def episode_frame_indices(starts: np.ndarray, lengths: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """The row numbers of every step of the given episodes, in order [frames] int64."""
    if len(episodes) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(starts[e], starts[e] + lengths[e], dtype=np.int64) for e in episodes])


def read_rows(dataset: h5py.Dataset, sorted_rows: np.ndarray) -> np.ndarray:
    """dataset[sorted_rows] for increasing row numbers, read as one slice per run of consecutive rows."""
    out = np.empty((len(sorted_rows), *dataset.shape[1:]), dtype=dataset.dtype)
    if len(sorted_rows) == 0:
        return out
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    run_starts = np.concatenate([[0], breaks])
    run_ends = np.concatenate([breaks, [len(sorted_rows)]])
    for begin, end in zip(run_starts, run_ends):
        first = int(sorted_rows[begin])
        dataset.read_direct(out, np.s_[first : first + (end - begin)], np.s_[begin:end])
    return out


class FrameStream:
    """Shuffled batches of frames from the `obs` dataset of an open rollouts file.

    Order of an epoch: the training frames are grouped by the HDF5 chunk that holds them, the
    groups are permuted, and the result is cut into pools of `pool_batches` batches, each pool
    permuted again frame by frame. A pool is read in one pass (each chunk decompressed once,
    instead of once per frame wanted), and a batch still draws its frames from the many chunks of
    its pool, picked at random across the file. Memory: one pool of frames (16 x 100 frames, 20 MB).
    """

    def __init__(self, obs: h5py.Dataset, rows: np.ndarray, batch_size: int, seed: int, pool_batches: int = 16):
        self.obs, self.rows, self.batch_size, self.seed = obs, np.asarray(rows, dtype=np.int64), batch_size, seed
        self.pool_size = batch_size * pool_batches
        chunk_rows = obs.chunks[0] if obs.chunks else 1
        self._group_starts = np.flatnonzero(np.diff(self.rows // chunk_rows, prepend=-1))  # first row of each chunk group

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The row numbers of `epoch` in visiting order (a permutation of `rows`)."""
        rng = data_generator(self.seed, 0xF4A, epoch)
        groups = np.split(self.rows, self._group_starts[1:])
        order = np.concatenate([groups[i] for i in rng.permutation(len(groups))]) if groups else self.rows
        for begin in range(0, len(order), self.pool_size):
            order[begin : begin + self.pool_size] = rng.permutation(order[begin : begin + self.pool_size])
        return order

    def index_batches(self, epoch: int, start: int = 0) -> Iterator[np.ndarray]:
        """Row numbers of each batch of `epoch` from batch `start` on, in visiting order."""
        order = self.epoch_order(epoch)
        for begin in range(start * self.batch_size, len(order), self.batch_size):
            yield order[begin : begin + self.batch_size]

    def numpy_batches(self, epoch: int, start: int = 0) -> Iterator[np.ndarray]:
        """Frame batches [batch, 64, 64, 3] uint8 of `epoch` from batch `start` on (a pool read at a time)."""
        order = self.epoch_order(epoch)
        first = start * self.batch_size
        for pool_begin in range(first - first % self.pool_size, len(order), self.pool_size):
            pool = order[pool_begin : pool_begin + self.pool_size]
            sorted_rows = np.sort(pool)
            frames = read_rows(self.obs, sorted_rows)[np.searchsorted(sorted_rows, pool)]  # back in pool order
            for begin in range(max(first - pool_begin, 0), len(pool), self.batch_size):
                yield frames[begin : begin + self.batch_size]

    def dataset(self, epoch: int, start: int = 0, prefetch: int = 4) -> Any:
        """The batches of `epoch` as a tf.data pipeline, read ahead in a background thread."""
        tf = tensorflow()
        spec = tf.TensorSpec((None, *self.obs.shape[1:]), tf.as_dtype(self.obs.dtype))
        return tf.data.Dataset.from_generator(lambda: self.numpy_batches(epoch, start), output_signature=spec).prefetch(prefetch)


def sequential_batches(dataset: h5py.Dataset, rows: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, values) in order, `batch_size` rows at a time (for evaluation and encoding)."""
    rows = np.asarray(rows, dtype=np.int64)
    for begin in range(0, len(rows), batch_size):
        chunk = rows[begin : begin + batch_size]
        yield chunk, read_rows(dataset, chunk)
