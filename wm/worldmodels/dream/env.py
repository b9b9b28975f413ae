"""`wm/Dream-v0`: one dream inside a learned world model as a gymnasium environment.

Any gymnasium agent can train inside the learned model with it. Observations are the controller's
input x = [z, h] or [z, c, h] (float32; `observation="pixels"` gives the VAE's decoding of z as a
64x64x3 uint8 frame instead); actions are the real environment's. Each episode starts from a
recorded first frame; the rules (temperature, reward, when a dream ends) are those of
`wm.worldmodels.dream.batched.DreamRules`. `reset(seed=...)` makes the episode reproducible.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from wm.actions import controller_memory_input
from wm.envs import default_max_steps
from wm.envs.spaces import space_from_json
from wm.errors import ConfigError
from wm.tfsetup import tensorflow
from wm.worldmodels.controller import controller_layout, features


class DreamEnv(gym.Env):
    """A dream of the MDN-RNN `mdnrnn` (with the VAE `vae` for frames), stepped one action at a time."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(
        self,
        vae: str | None = None,
        mdnrnn: str | None = None,
        *,
        world: Any = None,
        temperature: float = 1.0,
        max_steps: int | None = None,
        reward: str = "auto",
        sample_done: bool = False,
        done_threshold: float = 0.5,
        features: str = "auto",
        observation: str = "features",
        render_mode: str | None = None,
    ):
        from wm.worldmodels.dream.batched import Dream
        from wm.worldmodels.dream.rules import dream_rules
        from wm.worldmodels.dream.world import load_world_model

        tf = tensorflow()
        if world is None:
            if vae is None or mdnrnn is None:
                raise ConfigError("wm/Dream-v0 needs vae= and mdnrnn= artifact paths (or world=).")
            world = load_world_model(vae, mdnrnn)
        if observation not in ("features", "pixels"):
            raise ConfigError(f"'observation' must be features or pixels; got {observation!r}.")
        if (observation == "pixels" or render_mode == "rgb_array") and world.vae is None:
            raise ConfigError("Frames need the VAE; load the world model with it.")
        self.world, self.render_mode, self.observation_kind = world, render_mode, observation
        self.layout = controller_layout(world.env_id, world.action_space_json, world.latent_dim, world.units, features)
        self.rules = dream_rules(
            world.mdnrnn, temperature=temperature, max_steps=max_steps or default_max_steps(world.env_id), reward=reward,
            sample_done=sample_done, done_threshold=done_threshold,
        )
        self.dream = Dream(world.mdnrnn, world.initial_mu, world.initial_logvar, self.rules)
        self.action_space = space_from_json(world.action_space_json)
        if observation == "pixels":
            self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.layout.input_dim,), np.float32)
        self._transition = tf.function(self.dream.transition, jit_compile=False)
        self._start = tf.function(self.dream.start, jit_compile=False)
        self._tf = tf
        self._key = np.zeros((1, 2), np.uint32)
        self._z = self._h = self._c = None
        self._t = 0

    def _observation(self) -> np.ndarray:
        if self.observation_kind == "pixels":
            return self.render()
        return features(self.layout, self._z[0], self._h[0], self._c[0]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._key = self.np_random.integers(0, 2**32, size=(1, 2), dtype=np.uint64).astype(np.uint32)
        self._z = self._start(self._tf.constant(self._key)).numpy()
        self._h = np.zeros((1, self.world.units), np.float32)
        self._c = np.zeros((1, self.world.units), np.float32)
        self._t = 0
        return self._observation(), {}

    def step(self, action: Any):
        if self._z is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        if not self.action_space.contains(action if self.layout.discrete else np.asarray(action, self.action_space.dtype)):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        tf = self._tf
        encoded = controller_memory_input(self.layout, action)[None]
        z, h, c, reward, terminated = self._transition(
            tf.constant(self._z), tf.constant(self._h), tf.constant(self._c), tf.constant(encoded), tf.constant(self._key), tf.constant(self._t)
        )
        self._z, self._h, self._c = z.numpy(), h.numpy(), c.numpy()
        self._t += 1
        terminated = bool(terminated[0])
        truncated = self._t >= self.rules.max_steps and not terminated
        return self._observation(), float(reward[0]), terminated, truncated, {"step": self._t}

    def render(self) -> np.ndarray | None:
        """The VAE's decoding of the current z, [64, 64, 3] uint8."""
        from wm.worldmodels.vae import output_to_frames

        if self._z is None or self.world.vae is None:
            return None
        return output_to_frames(self.world.vae.decode(self._tf.constant(self._z)))[0]
