"""Gymnasium spaces to and from JSON, for artifact attributes (no pickle anywhere).

Only the spaces the stages handle are supported: `Box` (bounds stored as a scalar when uniform) and
`Discrete`. Anything else is refused with a clear message rather than stored lossily.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from wm.errors import UsageError


def _bound_to_json(bound: np.ndarray) -> Any:
    flat = np.asarray(bound).ravel()
    if flat.size and (flat == flat[0]).all():
        return _number(flat[0])
    return [_number(x) for x in flat]


def _number(x: Any) -> Any:
    value = x.item() if hasattr(x, "item") else x
    if isinstance(value, float) and not np.isfinite(value):
        return "inf" if value > 0 else "-inf"
    return value


def space_to_dict(space: Any) -> dict[str, Any]:
    """A JSON-compatible description of a Box or Discrete space."""
    import gymnasium.spaces as spaces

    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _bound_to_json(space.low),
            "high": _bound_to_json(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise UsageError(f"Spaces of type {type(space).__name__} are not supported; wm handles Box and Discrete spaces.")


def space_to_json(space: Any) -> str:
    """`space_to_dict` as a JSON string."""
    return json.dumps(space_to_dict(space), sort_keys=True)


def _bound_from_json(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    def parse(x: Any) -> float:
        return float(x) if isinstance(x, str) else x

    if isinstance(value, list):
        return np.asarray([parse(x) for x in value], dtype=dtype).reshape(shape)
    return np.full(shape, parse(value), dtype=dtype)


def space_from_json(text: str | dict[str, Any]) -> Any:
    """Rebuild a gymnasium space from `space_to_json` output."""
    import gymnasium.spaces as spaces

    data = json.loads(text) if isinstance(text, str) else text
    if data["type"] == "Box":
        shape = tuple(data["shape"])
        dtype = np.dtype(data["dtype"])
        return spaces.Box(
            low=_bound_from_json(data["low"], shape, dtype),
            high=_bound_from_json(data["high"], shape, dtype),
            shape=shape,
            dtype=dtype,
        )
    if data["type"] == "Discrete":
        return spaces.Discrete(data["n"], start=data.get("start", 0))
    raise UsageError(f"Unsupported space type {data['type']!r} in artifact.")


def is_image_space(space: Any) -> bool:
    """True for [H, W, 3] uint8 Box spaces (stored and shown as image stacks)."""
    import gymnasium.spaces as spaces

    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3


def storage_layout(observation_space: Any, action_space: Any) -> dict[str, Any]:
    """How one step is stored: row shapes and dtypes of `obs` and `action` in a rollouts artifact.

    Frames (uint8) stay uint8, other observations are float32; discrete actions are int64 scalars,
    continuous ones float32 vectors.
    """
    import gymnasium.spaces as spaces

    discrete = isinstance(action_space, spaces.Discrete)
    return {
        "obs_shape": tuple(observation_space.shape),
        "obs_dtype": np.dtype(np.uint8) if observation_space.dtype == np.uint8 else np.dtype(np.float32),
        "action_shape": () if discrete else (int(np.prod(action_space.shape)),),
        "action_dtype": np.dtype(np.int64) if discrete else np.dtype(np.float32),
    }
