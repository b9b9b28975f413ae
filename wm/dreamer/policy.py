"""A trained Dreamer agent as a rollout policy (`wm evaluate --dreamer`, `wm rollout --policy dreamer`).

It keeps the RSSM's posterior state along the episode and acts with the actor's most likely action
(`planner="actor"`; a sample of it with `actor_action="sample"`) or PlaNet's cross-entropy planning
over the world model (`planner="cem"`).
An agent trained with --action-repeat K chooses on every K-th frame and holds that action in between.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wm.actions import dreamer_env_action
from wm.errors import UsageError
from wm.io.artifact import open_artifact
from wm.tfsetup import tensorflow


class DreamerPolicy:
    """`reset(rng)` / `act(observation)` over a `dreamer` artifact."""

    def __init__(self, env_name: str, action_space: Any, dreamer: str, planner: str = "actor", actor_action: str = "mode",
                 cem_horizon: int = 12, cem_iterations: int = 10, cem_candidates: int = 1000, cem_top: int = 100):
        from wm.dreamer.agent import agent_from_artifact

        self.tf = tensorflow()
        with open_artifact(dreamer, "dreamer") as artifact:
            if artifact.attr("env_id") != env_name:
                raise UsageError(f"{dreamer} was trained in {artifact.attr('env_id')}, not {env_name}.")
            self.agent = agent_from_artifact(artifact)
        if planner not in ("actor", "cem"):
            raise UsageError(f"Unknown planner '{planner}'; known: actor, cem.")
        if actor_action not in ("mode", "sample"):
            raise UsageError(f"Unknown actor action '{actor_action}'; known: mode, sample.")
        self.planner, self.cem = planner, (int(cem_horizon), int(cem_iterations), int(cem_candidates), int(cem_top))
        self.sample = actor_action == "sample"
        self.low, self.high = getattr(action_space, "low", None), getattr(action_space, "high", None)

    def reset(self, rng: np.random.Generator) -> None:
        """A new episode: zero state, the step seeds drawn from `rng`."""
        self.state = self.agent.rssm.initial(1)
        self.previous = self.tf.zeros([1, self.agent.shape.action_dim])
        self.base_seed = rng.integers(0, 2**30, size=2).astype(np.int32)
        self.t = 0  # the agent's steps
        self.frame = 0

    def act(self, observation: Any) -> Any:
        """The action for `observation`, in the environment's form (the held one between the agent's steps)."""
        self.frame += 1
        if (self.frame - 1) % self.agent.shape.action_repeat:
            return self.held
        self.held = self._choose(observation)
        return self.held

    def _choose(self, observation: Any) -> Any:
        tf = self.tf
        seed = tf.constant(self.base_seed + np.array([0, self.t], np.int32))
        self.t += 1
        observation = tf.constant(np.asarray(observation)[None])
        if self.planner == "actor":
            action, self.state = self.agent.act(observation, self.state, self.previous, seed, self.sample)
        else:
            action, self.state = self.agent.plan(observation, self.state, self.previous, seed, *self.cem)
        self.previous = action
        return dreamer_env_action(action.numpy()[0], self.agent.shape.action_kind, self.low, self.high)
