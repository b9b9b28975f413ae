"""Action repeat: the agent acts every `repeat` frames and holds its action in between (Dreamer's Atari and DMLab setting)."""

from __future__ import annotations

import gymnasium as gym


class ActionRepeat(gym.Wrapper):
    """One step = the same action for up to `repeat` frames; the rewards summed; stops early where the episode ends.

    The episode's time limit (a TimeLimit inside this wrapper) still counts frames.
    """

    def __init__(self, env: gym.Env, repeat: int):
        if repeat < 1:
            raise ValueError(f"repeat must be at least 1; got {repeat}")
        super().__init__(env)
        self.repeat = int(repeat)

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            observation, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return observation, total, terminated, truncated, info
