"""Sequence windows for Dreamer training, sampled from a rollouts or replay file without loading it.

A window is L consecutive rows of the flat, step-aligned arrays (docs/architecture.md, "Artifacts"), starting at a row
drawn uniformly from [0, N - L]. It may cross episode boundaries: `is_first` marks where the RSSM
state is reset, so episodes shorter than L (CartPole's first random episodes) are used whole. Each
window is one contiguous slice read per dataset, so memory does not grow with the file.
See `wm.dreamer.agent` for the meaning of the batch's keys.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from wm.actions import dreamer_model_action


class WindowSampler:
    """Draws batches of windows of `length` steps from an open rollouts/replay file `f`.

    `steps` (default: all rows) limits sampling to the committed prefix of a file that is still
    growing; call `refresh(steps, starts)` after each appended episode.
    """

    def __init__(self, f: h5py.File, length: int, kind: str, action_dim: int, low: Any = None, high: Any = None):
        self.f, self.length, self.kind, self.action_dim = f, length, kind, action_dim
        self.low = None if low is None else np.asarray(low, np.float32)
        self.high = None if high is None else np.asarray(high, np.float32)
        self.refresh(int(f["reward"].shape[0]), f["episode/start"][:])

    def refresh(self, steps: int, episode_starts: np.ndarray) -> None:
        """Sample only rows [0, steps), whose episodes start at `episode_starts`."""
        self.steps = steps
        self.first = np.zeros(steps + 1, bool)
        self.first[np.asarray(episode_starts, np.int64)] = True

    @property
    def ready(self) -> bool:
        """Whether the file holds at least one window."""
        return self.steps >= self.length

    def window(self, start: int) -> dict[str, np.ndarray]:
        """The window of rows [start, start + length) with its derived keys."""
        stop = start + self.length
        begin = max(start - 1, 0)  # row start - 1 holds the previous action
        rows = slice(begin, stop)
        action = dreamer_model_action(self.f["action"][rows], self.kind, self.action_dim, self.low, self.high)
        is_first = self.first[start:stop].copy()
        is_first[0] = is_first[0] or start == 0
        previous = action[:-1] if start > 0 else np.concatenate([np.zeros_like(action[:1]), action[:-1]])
        previous = previous * (~is_first)[:, None]
        has_next = np.concatenate([~self.first[start + 1:stop], [False]])
        return {
            "obs": self.f["obs"][start:stop],
            "action": action[-self.length:],
            "previous_action": previous.astype(np.float32),
            "reward": self.f["reward"][start:stop].astype(np.float32),
            "terminated": self.f["terminated"][start:stop],
            "is_first": is_first,
            "has_next": has_next,
        }

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`batch` windows at uniformly drawn starts, stacked batch-major [batch, length, ..]."""
        if not self.ready:
            raise ValueError(f"the replay holds {self.steps} steps, fewer than one window of {self.length}")
        starts = rng.integers(0, self.steps - self.length + 1, size=batch)
        windows = [self.window(int(s)) for s in np.sort(starts)]  # sorted: reads move forward through the file
        return {key: np.stack([w[key] for w in windows]) for key in windows[0]}
