"""Policies that act in an environment during rollouts.

A policy is any object with `reset(rng)` (called at the start of each episode with that episode's
own random generator) and `act(observation) -> action`. Rollout workers build their policy from a
`PolicySpec` (a name plus JSON-able keyword arguments), so that the spec can cross process and Ray
boundaries; a trained controller registers itself in `POLICY_FACTORIES` the same way.

Random processes (the reference implementations' data collection):
- `brownian` (carracing, after the PyTorch reimplementation): a_0 uniform in the action box, then
  a_{t+1} = clip(a_t + sqrt(dt) * N(0, I), low, high) with dt = 1/50;
- `held` (doom-takecover, after the original): a uniformly drawn discrete action held for a
  uniformly drawn 1 to 10 steps;
- `uniform`: a fresh uniform action every step;
- `random`: whichever of these the environment uses by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from wm.dreamer.policy import DreamerPolicy
from wm.envs import random_policy_name
from wm.errors import UsageError


class Policy(Protocol):
    """What a rollout worker needs from a policy."""

    def reset(self, rng: np.random.Generator) -> None:
        """Start a new episode, drawing all randomness from `rng`."""

    def act(self, observation: Any) -> Any:
        """The action for `observation`."""


@dataclass(frozen=True)
class PolicySpec:
    """A picklable recipe for a policy: its registered name and keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def sample_uniform(space: Any, rng: np.random.Generator) -> Any:
    """One uniform action from a Discrete or Box space using `rng` (normal where a Box is unbounded)."""
    import gymnasium.spaces as spaces

    if isinstance(space, spaces.Discrete):
        return int(space.start + rng.integers(space.n))
    if isinstance(space, spaces.Box):
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        bounded = np.isfinite(low) & np.isfinite(high)
        value = np.where(bounded, rng.uniform(np.where(bounded, low, 0), np.where(bounded, high, 1)), rng.normal(size=space.shape))
        return value.astype(space.dtype)
    raise UsageError(f"Random actions for {type(space).__name__} spaces are not supported.")


class UniformPolicy:
    """A fresh uniform action every step."""

    def __init__(self, action_space: Any):
        self.action_space = action_space
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def act(self, observation: Any) -> Any:
        return sample_uniform(self.action_space, self.rng)


class BrownianPolicy:
    """Brownian motion in a bounded action box: a_{t+1} = clip(a_t + sqrt(dt) N(0, I), low, high)."""

    def __init__(self, action_space: Any, dt: float = 1.0 / 50.0):
        import gymnasium.spaces as spaces

        if not isinstance(action_space, spaces.Box) or not np.all(np.isfinite(action_space.low)) or not np.all(np.isfinite(action_space.high)):
            raise UsageError("The brownian policy needs a bounded Box action space.")
        self.action_space = action_space
        self.dt = float(dt)
        self.rng = np.random.default_rng(0)
        self.action: np.ndarray | None = None

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.action = None

    def act(self, observation: Any) -> np.ndarray:
        space = self.action_space
        if self.action is None:
            self.action = sample_uniform(space, self.rng).astype(np.float64)
        else:
            step = np.sqrt(self.dt) * self.rng.standard_normal(space.shape)
            self.action = np.clip(self.action + step, space.low, space.high)
        return self.action.astype(space.dtype)


class HeldPolicy:
    """A uniform discrete action held for a uniform number of steps in [min_hold, max_hold]."""

    def __init__(self, action_space: Any, min_hold: int = 1, max_hold: int = 10):
        import gymnasium.spaces as spaces

        if not isinstance(action_space, spaces.Discrete):
            raise UsageError("The held policy needs a Discrete action space.")
        if not 1 <= min_hold <= max_hold:
            raise UsageError("The held policy needs 1 <= min_hold <= max_hold.")
        self.action_space = action_space
        self.min_hold, self.max_hold = int(min_hold), int(max_hold)
        self.rng = np.random.default_rng(0)
        self.remaining = 0
        self.action = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.remaining = 0

    def act(self, observation: Any) -> int:
        if self.remaining == 0:
            self.action = sample_uniform(self.action_space, self.rng)
            self.remaining = int(self.rng.integers(self.min_hold, self.max_hold + 1))
        self.remaining -= 1
        return self.action


class ConstantPolicy:
    """The same action at every step (`wm fidelity` compares dreams and real episodes under each one)."""

    def __init__(self, action_space: Any, action: Any = 0):
        import gymnasium.spaces as spaces

        if not isinstance(action_space, spaces.Discrete):
            raise UsageError("The constant policy needs a Discrete action space.")
        if not action_space.contains(int(action)):
            raise UsageError(f"The constant action {action} is not in the action space {action_space}.")
        self.action = int(action)

    def reset(self, rng: np.random.Generator) -> None:
        pass

    def act(self, observation: Any) -> int:
        return self.action


PolicyFactory = Callable[..., Policy]

POLICY_FACTORIES: dict[str, PolicyFactory] = {
    "uniform": lambda env_name, action_space, **kw: UniformPolicy(action_space, **kw),
    "brownian": lambda env_name, action_space, **kw: BrownianPolicy(action_space, **kw),
    "held": lambda env_name, action_space, **kw: HeldPolicy(action_space, **kw),
    "constant": lambda env_name, action_space, **kw: ConstantPolicy(action_space, **kw),
}

RANDOM_POLICIES = ("random", "uniform", "brownian", "held")


def _controller_agent(env_name: str, action_space: Any, **kwargs: Any) -> Policy:
    from wm.worldmodels.policy import make_agent

    return make_agent(env_name, action_space, **kwargs)


# A trained controller acting through its world model (wm.worldmodels.policy); kwargs name the controller artifact.
POLICY_FACTORIES["controller"] = _controller_agent


def _dreamer_agent(env_name: str, action_space: Any, **kwargs: Any) -> Policy:
    return DreamerPolicy(env_name, action_space, **kwargs)


# A trained Dreamer agent (wm.dreamer.policy): its actor, or PlaNet's planner over its world model.
POLICY_FACTORIES["dreamer"] = _dreamer_agent


def make_policy(spec: PolicySpec, env_name: str, action_space: Any) -> Policy:
    """Build the policy `spec` names for an environment; `random` resolves to the env's own process."""
    name = random_policy_name(env_name) if spec.name == "random" else spec.name
    if name not in POLICY_FACTORIES:
        raise UsageError(f"Unknown policy '{spec.name}'; known policies: {', '.join(POLICY_FACTORIES)}.")
    try:
        return POLICY_FACTORIES[name](env_name, action_space, **spec.kwargs)
    except TypeError as exc:
        raise UsageError(f"Bad options for policy '{name}': {exc}.") from None
