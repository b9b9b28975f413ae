"""Frames for VAE training, streamed from a rollouts artifact in shuffled order.

An epoch visits every training frame exactly once, in an order drawn from (seed, epoch): the
frame indices are permuted, cut into batches, and each batch is read from HDF5 with its indices
sorted (one hyperslab read per run of neighbouring frames, so a chunk is decompressed once per
batch). Only the index array (8 bytes a frame) and a few batches are ever in memory. The held-out
split is by episode, so no held-out frame has a near-duplicate neighbour in training.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import h5py
import numpy as np

from wm.errors import UsageError


def split_episodes(num_episodes: int, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) episode numbers: a seeded random `heldout_fraction` (at least one) is held out."""
    if num_episodes < 2:
        raise UsageError(f"Training needs at least 2 episodes (one is held out for validation); the input has {num_episodes}.")
    heldout = min(num_episodes - 1, max(1, int(round(heldout_fraction * num_episodes))))
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1])).permutation(num_episodes)
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
    """Shuffled batches of frames from the `obs` dataset of an open rollouts file."""

    def __init__(self, obs: h5py.Dataset, rows: np.ndarray, batch_size: int, seed: int):
        self.obs, self.rows, self.batch_size, self.seed = obs, np.asarray(rows, dtype=np.int64), batch_size, seed

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The row numbers of `epoch` in visiting order (a permutation of `rows`)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xF4A, epoch]))
        return self.rows[rng.permutation(len(self.rows))]

    def index_batches(self, epoch: int, start: int = 0) -> Iterator[np.ndarray]:
        """Row numbers of each batch of `epoch` from batch `start` on, sorted within the batch."""
        order = self.epoch_order(epoch)
        for begin in range(start * self.batch_size, len(order), self.batch_size):
            yield np.sort(order[begin : begin + self.batch_size])

    def numpy_batches(self, epoch: int, start: int = 0) -> Iterator[np.ndarray]:
        """Frame batches [batch, 64, 64, 3] uint8 of `epoch` from batch `start` on."""
        for rows in self.index_batches(epoch, start):
            yield read_rows(self.obs, rows)

    def dataset(self, epoch: int, start: int = 0, prefetch: int = 4) -> Any:
        """The batches of `epoch` as a tf.data pipeline, read ahead in a background thread."""
        from wm.tfsetup import tensorflow

        tf = tensorflow()
        spec = tf.TensorSpec((None, *self.obs.shape[1:]), tf.as_dtype(self.obs.dtype))
        return tf.data.Dataset.from_generator(lambda: self.numpy_batches(epoch, start), output_signature=spec).prefetch(prefetch)


def sequential_batches(dataset: h5py.Dataset, rows: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, values) in order, `batch_size` rows at a time (for evaluation and encoding)."""
    rows = np.asarray(rows, dtype=np.int64)
    for begin in range(0, len(rows), batch_size):
        chunk = rows[begin : begin + batch_size]
        yield chunk, read_rows(dataset, chunk)
