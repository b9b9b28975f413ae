"""Running one episode in a worker: the unit of parallel work for rollouts, evaluation and real-environment CMA-ES.

Each episode draws its randomness from `numpy.random.SeedSequence(seed, spawn_key=(index, ...))`, so
episode `index` of a run is the same whichever worker runs it and however many workers there are.
Workers keep their environment between episodes (ViZDoom takes a moment to start).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wm import rng
from wm.envs import make_env
from wm.envs.policies import PolicySpec, make_policy
from wm.envs.spaces import storage_layout
from wm.io.rollouts import Episode
from wm.parallel import at_worker_exit

ENV_SEED_KEY = 0
POLICY_SEED_KEY = 1


def episode_env_seed(seed: int, index: int) -> int:
    """The `env.reset(seed=...)` value of episode `index` of a run with `seed`."""
    return rng.int_seed(seed, index, ENV_SEED_KEY)


def purpose_seed(seed: int, *purpose: int) -> int:
    """A run seed for one use of a run's seed (training generation g, evaluation, ...), so their episodes differ.

    Episode `index` of that use then gets `episode_env_seed(purpose_seed(seed, ...), index)`.
    """
    return rng.int_seed(seed, 0x5EED, *purpose)


def episode_policy_rng(seed: int, index: int) -> np.random.Generator:
    """The policy's random generator for episode `index` of a run with `seed`."""
    return rng.generator(seed, index, POLICY_SEED_KEY)


@dataclass(frozen=True)
class EpisodeTask:
    """Everything a worker needs to run one episode (picklable, JSON-able values only)."""

    env_name: str
    max_steps: int
    policy: PolicySpec
    seed: int
    index: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    record_frames: bool = True  # False: return no observations (evaluation needs only returns and lengths)
    render: bool = False  # also return env.render() of each step (env_kwargs must hold render_mode="rgb_array")


_ENV_CACHE: dict[str, Any] = {}


def close_cached_envs() -> None:
    """Close the environments this process keeps between episodes."""
    for env in _ENV_CACHE.values():
        env.close()
    _ENV_CACHE.clear()


def _cached_env(task: EpisodeTask) -> Any:
    at_worker_exit(close_cached_envs)

    key = json.dumps([task.env_name, task.max_steps, task.env_kwargs], sort_keys=True)
    if key not in _ENV_CACHE:
        close_cached_envs()
        _ENV_CACHE[key] = make_env(task.env_name, task.max_steps, **task.env_kwargs)
    return _ENV_CACHE[key]


def run_episode(task: EpisodeTask) -> Episode:
    """Play one episode and return it step-aligned: obs[i] is the frame action[i] was chosen on.

    The observation returned after the last action is dropped (ViZDoom's is all zeros).
    """
    env = _cached_env(task)
    policy = make_policy(task.policy, task.env_name, env.action_space)
    policy.reset(episode_policy_rng(task.seed, task.index))
    env_seed = episode_env_seed(task.seed, task.index)
    observation, _ = env.reset(seed=env_seed)
    observations, actions, rewards, terminations, truncations, frames = [], [], [], [], [], []
    while True:
        if task.render:
            frames.append(env.render())
        action = policy.act(observation)
        next_observation, reward, terminated, truncated, _ = env.step(action)
        if task.record_frames:
            observations.append(observation)
        actions.append(action)
        rewards.append(reward)
        terminations.append(terminated)
        truncations.append(truncated)
        if terminated or truncated:
            break
        observation = next_observation
    layout = storage_layout(env.observation_space, env.action_space)
    return Episode(
        index=task.index,
        seed=env_seed,
        obs=np.asarray(observations, dtype=layout["obs_dtype"]).reshape(len(observations), *layout["obs_shape"]),
        action=np.asarray(actions, dtype=layout["action_dtype"]).reshape(len(actions), *layout["action_shape"]),
        reward=np.asarray(rewards, dtype=np.float32),
        terminated=np.asarray(terminations, dtype=bool),
        truncated=np.asarray(truncations, dtype=bool),
        frames=np.asarray(frames, dtype=np.uint8) if task.render else None,
    )
