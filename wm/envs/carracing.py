"""`carracing`: gymnasium CarRacing-v3, HUD cropped, 64x64x3 uint8 frames, continuous 3-d actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wm.envs.preprocess import FRAME_SIZE, carracing_frame


class CarRacingFrames(gym.ObservationWrapper):
    """Crops the dashboard and resizes CarRacing's frames to 64x64."""

    def __init__(self, env: gym.Env, size: int = FRAME_SIZE):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return carracing_frame(observation, self.size)


def make_carracing(max_steps: int, **kwargs) -> gym.Env:
    """CarRacing-v3 (continuous actions: steering [-1, 1], gas [0, 1], brake [0, 1])."""
    return CarRacingFrames(gym.make("CarRacing-v3", max_episode_steps=max_steps, **kwargs))
