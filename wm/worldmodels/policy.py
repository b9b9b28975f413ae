"""The World Models agent in the real environment: V encodes the frame, C acts on [z, (c), h], M remembers.

    frame_t -> z_t = mu + sigma * eps (VAE; `z_mode="mean"` uses mu)
    a_t = C([z_t, c_t, h_t])          (the state before M has read z_t)
    (h, c)_{t+1} = M([z_t, a_t], (h, c)_t)

`WorldModelAgent` follows the rollout `Policy` protocol (`reset(rng)`, `act(observation)`), so
evaluation, real-environment CMA-ES and `wm rollout --policy controller` all run it through the
same episode runner and executor as random rollouts. Its random draws (z samples, exploration
noise) come from the episode's own generator, so an episode is reproducible from its seed.

Workers build the agent from a `PolicySpec("controller", kwargs)`:
- `{"controller": path, "params": "mean" | "best", "noise": s, "z_mode": ...}`: a trained controller;
- `{"vae": path, "mdnrnn": path, "layout_json": ..., "params": [...], "z_mode": ...}`: a CMA-ES
  candidate (a flat parameter list) with the world model it is being trained in.
V and M are loaded once per worker process and kept.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from wm.actions import tf_controller_env_action, tf_controller_memory_input
from wm.errors import UsageError
from wm.io.artifact import open_artifact
from wm.tfsetup import tensorflow
from wm.worldmodels.controller import ControllerLayout, LinearActor, features

_WORLD_CACHE: dict[tuple, Any] = {}
_STEP_CACHE: dict[tuple, Any] = {}


def _file_key(path: str) -> tuple:
    stat = os.stat(path)
    return (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def cached_world_model(vae: str | None = None, mdnrnn: str | None = None, controller: str | None = None) -> Any:
    """The world model of a controller artifact, or of a VAE + MDN-RNN pair, loaded once per process."""
    from wm.worldmodels.dream.world import load_world_model, world_model_of

    key = (_file_key(controller),) if controller else (_file_key(vae), _file_key(mdnrnn))
    if key not in _WORLD_CACHE:
        if controller:
            with open_artifact(controller, "controller") as artifact:
                _WORLD_CACHE[key] = world_model_of(artifact)
        else:
            _WORLD_CACHE[key] = load_world_model(vae, mdnrnn)
    return _WORLD_CACHE[key]


class WorldModelAgent:
    """Acts in the real environment from frames: V -> C -> action, M updated with [z, a]."""

    def __init__(self, world: Any, layout: Any, actor: Callable[[Any], Any], *, z_mode: str = "sample", noise: float = 0.0):
        if z_mode not in ("sample", "mean"):
            raise UsageError(f"z_mode must be sample or mean; got {z_mode!r}.")
        if world.vae is None:
            raise UsageError("Acting in the real environment needs the VAE.")
        self.world, self.layout, self.z_mode, self.noise = world, layout, z_mode, float(noise)
        self.tf = tensorflow()
        self._step = self._compile(actor)
        self.rng = np.random.default_rng(0)
        self.h = self.c = None

    def _compile(self, actor: Callable[[Any], Any]) -> Any:
        from wm.worldmodels.vae import frames_to_input

        tf, world, layout = self.tf, self.world, self.layout
        spec = [
            tf.TensorSpec([1, 64, 64, 3], tf.uint8), tf.TensorSpec([1, world.units]), tf.TensorSpec([1, world.units]),
            tf.TensorSpec([1, world.latent_dim]), tf.TensorSpec([1, layout.outputs]),
        ]

        @tf.function(input_signature=spec, jit_compile=False)
        def step(frame, h, c, eps, noise):
            mu, logvar = world.vae.encode(frames_to_input(frame))
            z = mu + tf.exp(0.5 * logvar) * eps
            raw = tf.clip_by_value(actor(features(layout, z, h, c, concat=tf.concat)) + noise, -1.0, 1.0)
            action = tf_controller_env_action(layout, raw)
            _, (h, c) = world.mdnrnn.step(z, tf_controller_memory_input(layout, action), [h, c])
            return action, h, c

        return step

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.h = np.zeros((1, self.world.units), np.float32)
        self.c = np.zeros((1, self.world.units), np.float32)

    def act(self, observation: np.ndarray) -> Any:
        eps = self.rng.standard_normal((1, self.world.latent_dim)) if self.z_mode == "sample" else np.zeros((1, self.world.latent_dim))
        noise = self.rng.normal(0.0, self.noise, (1, self.layout.outputs)) if self.noise > 0 else np.zeros((1, self.layout.outputs))
        action, h, c = self._step(
            observation[None], self.h, self.c, eps.astype(np.float32), noise.astype(np.float32)
        )
        self.h, self.c = h.numpy(), c.numpy()
        action = action.numpy()[0]
        return int(action) if self.layout.discrete else action.astype(np.float32)


def make_agent(env_name: str, action_space: Any, **kwargs: Any) -> WorldModelAgent:
    """The agent a `PolicySpec("controller", kwargs)` describes (see the module docstring)."""
    z_mode = kwargs.get("z_mode", "sample")
    noise = float(kwargs.get("noise", 0.0))
    if "controller" in kwargs:
        from wm.worldmodels.controller_artifact import load_actor

        path = kwargs["controller"]
        world = cached_world_model(controller=path)
        key = ("controller", _file_key(path), kwargs.get("params", "mean"), z_mode)
        if key not in _STEP_CACHE:
            layout, actor = load_actor(path, kwargs.get("params", "mean"))
            _STEP_CACHE[key] = (layout, actor)
        layout, actor = _STEP_CACHE[key]
    else:
        world = cached_world_model(vae=kwargs["vae"], mdnrnn=kwargs["mdnrnn"])
        layout = ControllerLayout.from_json(kwargs["layout_json"])
        key = ("linear", _file_key(kwargs["vae"]), _file_key(kwargs["mdnrnn"]), layout)
        if key not in _STEP_CACHE:
            _STEP_CACHE[key] = (layout, LinearActor(layout))
        actor = _STEP_CACHE[key][1]
        actor.set_params(np.asarray(kwargs["params"], np.float32))
    if world.env_id != env_name:
        raise UsageError(f"This controller was trained for {world.env_id}, not {env_name}; use it with --env {world.env_id}.")
    agent_key = ("agent", id(world), id(actor), z_mode, noise)
    if agent_key not in _STEP_CACHE:
        _STEP_CACHE[agent_key] = WorldModelAgent(world, layout, actor, z_mode=z_mode, noise=noise)
    return _STEP_CACHE[agent_key]
