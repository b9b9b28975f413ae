"""Sequence windows of a latents artifact for MDN-RNN training, read from disk batch by batch.

An epoch cuts every training episode into windows of at most `length` steps at a random offset
drawn from (seed, epoch), shuffles the windows and groups them into batches, so every step is an
input exactly once an epoch. A batch is padded to its own longest window, and windows of similar
length share a batch (they are sorted by length inside pools of `POOL_BATCHES` batches, whose
batches are then shuffled), so that long windows (whole episodes of up to 2,100 steps) cost little
padding. A window [s, s + n) also reads row s + n when it lies inside the
episode: it holds the target z_{s+n} of the window's last step. Steps whose z_{t+1} does not exist
(an episode's last step: the observation after the last action is not stored) are masked out of
the latent loss but still teach the done head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import h5py
import numpy as np

from wm.rng import data_generator

from wm.actions import memory_inputs

POOL_BATCHES = 32


@dataclass
class WindowBatch:
    """A padded batch of windows; `valid` marks real steps, `has_next` steps with a target z_{t+1}."""

    mu: np.ndarray  # [batch, length + 1, latent] (row t + 1 is the target of step t)
    logvar: np.ndarray  # [batch, length + 1, latent]
    action: np.ndarray  # [batch, length, action] float32 (one-hot for discrete actions)
    reward: np.ndarray  # [batch, length] float32
    done: np.ndarray  # [batch, length] float32 (terminated after the step's action)
    valid: np.ndarray  # [batch, length] float32
    has_next: np.ndarray  # [batch, length] float32

    @property
    def steps(self) -> int:
        return int(self.valid.sum())


def episode_windows(lengths: np.ndarray, episodes: np.ndarray, length: int, rng: np.random.Generator | None) -> list[tuple[int, int, int]]:
    """(episode, start, steps) windows covering each episode once, ceil(T / length) windows per episode.

    With `rng` the cuts are shifted by a random offset within the slack (windows * length - T), so
    that the same steps do not always open a window.
    """
    windows = []
    for episode in episodes:
        total = int(lengths[episode])
        count = math.ceil(total / length)
        offset = int(rng.integers(0, count * length - total + 1)) if rng is not None else 0
        cuts = [0] + [k * length - offset for k in range(1, count)] + [total]
        windows += [(int(episode), begin, end - begin) for begin, end in zip(cuts[:-1], cuts[1:])]
    return windows


class WindowReader:
    """Reads windows from the step arrays of an open latents file."""

    def __init__(self, f: h5py.File, action_dim: int, discrete: bool):
        self.f, self.action_dim, self.discrete = f, action_dim, discrete
        self.starts = f["episode/start"][:]
        self.lengths = f["episode/length"][:]

    def read(self, windows: list[tuple[int, int, int]], length: int) -> WindowBatch:
        """A batch of the given windows, padded to `length` steps."""
        batch, latent = len(windows), self.f["mu"].shape[1]
        out = WindowBatch(
            mu=np.zeros((batch, length + 1, latent), np.float32),
            logvar=np.zeros((batch, length + 1, latent), np.float32),
            action=np.zeros((batch, length, self.action_dim), np.float32),
            reward=np.zeros((batch, length), np.float32),
            done=np.zeros((batch, length), np.float32),
            valid=np.zeros((batch, length), np.float32),
            has_next=np.zeros((batch, length), np.float32),
        )
        for i, (episode, begin, steps) in enumerate(windows):
            first = int(self.starts[episode]) + begin
            with_next = steps + 1 if begin + steps < int(self.lengths[episode]) else steps
            out.mu[i, :with_next] = self.f["mu"][first : first + with_next]
            out.logvar[i, :with_next] = self.f["logvar"][first : first + with_next]
            out.action[i, :steps] = memory_inputs(self.f["action"][first : first + steps], self.action_dim, self.discrete)
            out.reward[i, :steps] = self.f["reward"][first : first + steps]
            out.done[i, :steps] = self.f["terminated"][first : first + steps]
            out.valid[i, :steps] = 1.0
            out.has_next[i, : with_next - 1] = 1.0
        return out


class WindowStream:
    """Shuffled batches of windows over a set of episodes, one epoch at a time."""

    def __init__(self, reader: WindowReader, episodes: np.ndarray, length: int, batch_size: int, seed: int):
        self.reader, self.episodes, self.length, self.batch_size, self.seed = reader, episodes, length, batch_size, seed

    def epoch_windows(self, epoch: int) -> list[tuple[int, int, int]]:
        """The windows of `epoch` in visiting order."""
        rng = data_generator(self.seed, 0x5E9, epoch)
        windows = episode_windows(self.reader.lengths, self.episodes, self.length, rng)
        return [windows[i] for i in rng.permutation(len(windows))]

    @property
    def batches_per_epoch(self) -> int:
        """Batches in every epoch."""
        return math.ceil(sum(math.ceil(int(self.reader.lengths[e]) / self.length) for e in self.episodes) / self.batch_size)

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        """The windows of `epoch` grouped into batches, in visiting order (windows of similar length together)."""
        windows = self.epoch_windows(epoch)
        rng = data_generator(self.seed, 0xBA7, epoch)
        pool = self.batch_size * POOL_BATCHES
        batches: list[list[tuple[int, int, int]]] = []
        for begin in range(0, len(windows), pool):
            ordered = sorted(windows[begin : begin + pool], key=lambda window: window[2])
            group = [ordered[i : i + self.batch_size] for i in range(0, len(ordered), self.batch_size)]
            batches += [group[i] for i in rng.permutation(len(group))]
        return batches

    def batches(self, epoch: int, start: int = 0) -> Iterator[WindowBatch]:
        for windows in self.epoch_batches(epoch)[start:]:
            yield self.reader.read(windows, max(steps for _, _, steps in windows))
