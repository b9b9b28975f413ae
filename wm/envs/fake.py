"""`fake-pixels`: a small deterministic pixel environment for tests (no physics engine, instant).

A 64x64 frame shows a paddle the agent moves left / stays / right (Discrete(3), as doom-takecover)
and a ball falling at a seed-dependent column. Reward is +1 while the paddle is under the ball.
The episode terminates when the ball lands (its length, 20 to 59 steps, depends on the seed), and
like ViZDoom the environment returns an all-zero frame after the terminal step. Everything is a
pure function of the reset seed and the actions.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SIZE = 64
PADDLE_WIDTH = 12


class FakePixelEnv(gym.Env):
    """Deterministic 64x64x3 uint8 frames, Discrete(3) actions: 0 left, 1 nothing, 2 right."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.render_mode = render_mode
        self._paddle = 0
        self._ball_x = 0
        self._fall_steps = 1
        self._t = 0
        self._color = np.zeros(3, np.uint8)

    def _frame(self) -> np.ndarray:
        frame = np.zeros((SIZE, SIZE, 3), np.uint8)
        frame[...] = self._color
        frame[SIZE - 4 :, self._paddle : self._paddle + PADDLE_WIDTH] = (255, 255, 255)
        ball_y = int((SIZE - 8) * self._t / self._fall_steps)
        frame[ball_y : ball_y + 4, self._ball_x : self._ball_x + 4] = (255, 0, 0)
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self._paddle = int(rng.integers(0, SIZE - PADDLE_WIDTH))
        self._ball_x = int(rng.integers(0, SIZE - 4))
        self._fall_steps = int(rng.integers(20, 60))
        self._color = rng.integers(0, 80, size=3).astype(np.uint8)
        self._t = 0
        return self._frame(), {}

    def step(self, action):
        if not self.action_space.contains(int(action)):
            raise ValueError(f"invalid action {action!r}")
        self._paddle = int(np.clip(self._paddle + 3 * (int(action) - 1), 0, SIZE - PADDLE_WIDTH))
        self._t += 1
        under = self._paddle <= self._ball_x + 2 < self._paddle + PADDLE_WIDTH
        reward = 1.0 if under else 0.0
        terminated = self._t >= self._fall_steps
        frame = np.zeros((SIZE, SIZE, 3), np.uint8) if terminated else self._frame()
        return frame, reward, terminated, False, {}

    def render(self):
        return self._frame()


def make_fake_pixels(max_steps: int, **kwargs) -> gym.Env:
    """FakePixelEnv with a time limit of `max_steps`."""
    return gym.wrappers.TimeLimit(FakePixelEnv(**kwargs), max_episode_steps=max_steps)
