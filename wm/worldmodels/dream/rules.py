"""The rules of a dream: temperature, step cap, reward and when a dream ends (no TensorFlow needed to read them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wm.errors import ConfigError


@dataclass(frozen=True)
class DreamRules:
    """How a dream is scored and ended."""

    temperature: float
    max_steps: int
    reward: str  # "survival" or "head"
    done: str  # "threshold", "sample" or "none"
    done_threshold: float = 0.5
    # "sample": a dream ends with probability sigmoid(logit - done_offset). The offset is log(w) of the
    # death weight w the head was trained with, so that deaths are drawn with the unweighted probability.
    done_offset: float = 0.0


def check_temperature(temperature: float | None, name: str = "temperature") -> None:
    """Raise ConfigError unless the temperature is a finite positive number (None means "the default" and passes).

    The one check every stage that dreams uses: tau divides the mixture logits and its square root
    scales the noise, so zero, negative, NaN and infinite values make no dream.
    """
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"'{name}' must be a finite positive number (it divides the mixture logits); got {temperature}.")


def rule_options(trained: DreamRules | None, *, temperature: float | None, sample_done: bool | None,
                 done_threshold: float | None, max_steps: int | None, env_max_steps: int) -> dict[str, Any]:
    """Dream rule settings for `dream_rules`: each value given, else the controller's training rule, else the default."""
    def pick(mine: Any, theirs: Any, default: Any) -> Any:
        return mine if mine is not None else (theirs if trained is not None else default)

    return {
        "temperature": pick(temperature, getattr(trained, "temperature", None), 1.0),
        "sample_done": pick(sample_done, getattr(trained, "done", None) == "sample", False),
        "done_threshold": pick(done_threshold, getattr(trained, "done_threshold", None), 0.5),
        "max_steps": pick(max_steps, getattr(trained, "max_steps", None), env_max_steps),
    }


def dream_rules(
    mdnrnn: Any, *, temperature: float, max_steps: int, reward: str = "auto", sample_done: bool = False,
    done_threshold: float = 0.5,
) -> DreamRules:
    """The rules for a dream of this MDN-RNN; `auto` reward is the reward head if it has one, else survival."""
    check_temperature(temperature)
    if reward == "auto":
        reward = "head" if mdnrnn.reward_head else "survival"
    if reward == "head" and not mdnrnn.reward_head:
        raise ConfigError("The dream's reward is the MDN-RNN's reward head, but this MDN-RNN has none; train it with --reward-head true.")
    if reward == "survival" and not mdnrnn.done_head:
        raise ConfigError("A survival reward needs an MDN-RNN with a done head (train it with --done-head true), or dreams never end.")
    done = ("sample" if sample_done else "threshold") if mdnrnn.done_head else "none"
    offset = math.log(float(getattr(mdnrnn, "done_weight", 1.0))) if done == "sample" else 0.0
    return DreamRules(float(temperature), int(max_steps), reward, done, float(done_threshold), offset)
