"""Environments created by name: `carracing`, `doom-takecover`, `fake-pixels`, or any gymnasium id.

All are headless (no window, no display server). Importing this module imports no environment
library; gymnasium, Box2D and ViZDoom load when an environment is made.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from wm.errors import ArtifactError, UsageError


@dataclass(frozen=True)
class EnvInfo:
    """A named environment of wm: its factory, episode limit and its random policy."""

    name: str
    description: str
    factory: str  # "module:function", imported when the environment is made
    default_max_steps: int
    random_policy: str  # what `--policy random` means here
    action_names: tuple[str, ...] = ()  # names of discrete actions, for tables


ENVIRONMENTS: dict[str, EnvInfo] = {
    info.name: info
    for info in (
        EnvInfo(
            "carracing",
            "gymnasium CarRacing-v3, HUD cropped, 64x64x3 frames, continuous [steer, gas, brake]",
            "wm.envs.carracing:make_carracing",
            1000,
            "brownian",
        ),
        EnvInfo(
            "doom-takecover",
            "ViZDoom VizdoomTakeCover-v1, 64x64x3 frames, actions left / nothing / right",
            "wm.envs.doom:make_doom_takecover",
            2100,
            "held",
            ("left", "nothing", "right"),
        ),
        EnvInfo(
            "fake-pixels",
            "small deterministic 64x64x3 pixel environment for tests, actions left / nothing / right",
            "wm.envs.fake:make_fake_pixels",
            1000,
            "held",
            ("left", "nothing", "right"),
        ),
    )
}

# A gymnasium id with no time limit of its own gets this one.
FALLBACK_MAX_STEPS = 1000


def _gymnasium_spec(name: str) -> Any | None:
    import gymnasium as gym

    try:
        return gym.spec(name)
    except gym.error.Error:
        return None


def known_environments_sentence() -> str:
    """The known names, for error messages."""
    names = ", ".join(ENVIRONMENTS)
    return f"known environments: {names}, or any gymnasium id such as CartPole-v1 or Pendulum-v1"


def check_env_name(name: str) -> None:
    """Raise UsageError (listing the known names) unless `name` can be made."""
    if name in ENVIRONMENTS or _gymnasium_spec(name) is not None:
        return
    raise UsageError(f"Unknown environment '{name}'; {known_environments_sentence()}.")


def default_max_steps(name: str) -> int:
    """The episode step limit used when --max-steps is not given."""
    if name in ENVIRONMENTS:
        return ENVIRONMENTS[name].default_max_steps
    spec = _gymnasium_spec(name)
    if spec is not None and spec.max_episode_steps:
        return int(spec.max_episode_steps)
    return FALLBACK_MAX_STEPS


def random_policy_name(name: str) -> str:
    """The random process `--policy random` uses for this environment."""
    return ENVIRONMENTS[name].random_policy if name in ENVIRONMENTS else "uniform"


def make_env(name: str, max_steps: int | None = None, **kwargs: Any) -> Any:
    """Create environment `name` with an episode limit of `max_steps` (its default if None)."""
    check_env_name(name)
    limit = default_max_steps(name) if max_steps is None else int(max_steps)
    if name in ENVIRONMENTS:
        module, function = ENVIRONMENTS[name].factory.split(":")
        return getattr(importlib.import_module(module), function)(max_steps=limit, **kwargs)
    import gymnasium as gym

    # Headless: pygame draws render_mode="rgb_array" frames without looking for a display (else SDL prints an error).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    return gym.make(name, max_episode_steps=limit, **kwargs)



def frames_per_step(artifact: Any) -> int:
    """How many frames one recorded (or acted) step of an artifact spans: its --action-repeat, 1 for files without one."""
    return int(artifact.attr("action_repeat", 1))


def check_frames_per_step(recording: Any, repeat: int, name: str, agent: str, ending: str) -> None:
    """ArtifactError unless `recording` holds one step every `repeat` frames, the step of `agent`."""
    found = frames_per_step(recording)
    if found != repeat:
        raise ArtifactError(f"{name} holds one step every {found} frames, but {agent} acts every {repeat}{ending}")


def action_name(name: str, action: int) -> str:
    """A discrete action's name in environment `name` ('left'), or its number ('2') where it has none."""
    names = ENVIRONMENTS[name].action_names if name in ENVIRONMENTS else ()
    return names[action] if action < len(names) else str(action)
