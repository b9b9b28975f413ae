"""The World Models controller C (Ha & Schmidhuber 2018, section 2.3): one linear layer.

    z      a VAE latent                                   [.., latent]
    h, c   the MDN-RNN's LSTM hidden and cell state       [.., units]
    x      the controller's input: [z, h] or [z, c, h]    [.., inputs]
    a      = tanh(W x + b), the raw output                [.., outputs]

At step t the controller sees z_t and the state (h_t, c_t) *before* the MDN-RNN has read z_t: it
summarises z_0..z_{t-1} and a_0..a_{t-1}. Then a_t is chosen and the MDN-RNN reads [z_t, a_t].

The raw output becomes an environment action by the layout's `action_map`:
- `carracing`: 3 outputs with bias; steering a0 in [-1, 1], gas (a1 + 1) / 2, brake clip(a2, 0, 1).
  With [z, h], z = 32 and 256 units: 288 * 3 + 3 = 867 parameters, as published.
- `thirds` (Discrete(3) left / nothing / right, DoomTakeCover): 1 output, no bias; a < -1/3 is
  left, a > 1/3 right, anything between nothing. With [z, c, h], z = 64 and 512 units: 1,088.
- `box`: a Box action space: tanh scaled to [low, high].
- `argmax`: Discrete(n): n outputs, the largest wins.

This module is NumPy plus a few TensorFlow twins of the same maps for compiled dream loops; the
layout itself imports nothing heavy.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from wm.errors import ConfigError

FEATURES = ("auto", "z", "zh", "zch")
THIRD = 1.0 / 3.0


@dataclass(frozen=True)
class ControllerLayout:
    """What a controller reads and how its outputs become actions."""

    latent_dim: int
    units: int
    features: str  # "z", "zh" or "zch": which of z, c, h are concatenated, in that order
    outputs: int
    bias: bool
    action_map: str  # "carracing", "thirds", "box" or "argmax"
    action_dim: int  # size of the MDN-RNN's action input (one-hot size for discrete actions)
    low: tuple[float, ...] = ()  # Box bounds, for action_map "box"
    high: tuple[float, ...] = ()

    @property
    def input_dim(self) -> int:
        """Size of x = [z, (c), (h)]."""
        return self.latent_dim + self.units * (("c" in self.features) + ("h" in self.features))

    @property
    def num_params(self) -> int:
        """Entries of W [inputs, outputs] plus b [outputs] if there is a bias."""
        return self.input_dim * self.outputs + (self.outputs if self.bias else 0)

    @property
    def discrete(self) -> bool:
        return self.action_map in ("thirds", "argmax")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ControllerLayout":
        data = json.loads(text)
        data["low"], data["high"] = tuple(data.get("low", ())), tuple(data.get("high", ()))
        return cls(**data)


def controller_layout(env_id: str, action_space_json: str, latent_dim: int, units: int, features: str = "auto") -> ControllerLayout:
    """The paper's controller for an environment and V/M sizes; `features` overrides [z, h] / [z, c, h]."""
    space = json.loads(action_space_json)
    if features not in FEATURES:
        raise ConfigError(f"'features' must be one of {', '.join(FEATURES)}; got {features!r}.")
    if space["type"] == "Discrete" and int(space["n"]) == 3:
        layout = dict(outputs=1, bias=False, action_map="thirds", action_dim=3, default_features="zch")
    elif space["type"] == "Discrete":
        n = int(space["n"])
        layout = dict(outputs=n, bias=True, action_map="argmax", action_dim=n, default_features="zh")
    elif space["type"] == "Box":
        size = int(math.prod(space["shape"]))
        if env_id == "carracing":
            layout = dict(outputs=3, bias=True, action_map="carracing", action_dim=3, default_features="zh")
        else:
            from wm.envs.spaces import space_from_json

            box = space_from_json(space)
            if not (np.isfinite(box.low).all() and np.isfinite(box.high).all()):
                raise ConfigError(f"A controller needs a bounded action space; {env_id} has {action_space_json}.")
            layout = dict(
                outputs=size, bias=True, action_map="box", action_dim=size, default_features="zh",
                low=tuple(float(x) for x in box.low.ravel()), high=tuple(float(x) for x in box.high.ravel()),
            )
    else:
        raise ConfigError(f"A controller cannot act in the action space {action_space_json} of {env_id}.")
    default = layout.pop("default_features")
    return ControllerLayout(latent_dim=latent_dim, units=units, features=default if features == "auto" else features, **layout)


def split_params(layout: ControllerLayout, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A flat parameter vector (as CMA-ES sees it) as W [inputs, outputs] and b [outputs] (zeros without bias)."""
    params = np.asarray(params, np.float32)
    if params.shape != (layout.num_params,):
        raise ValueError(f"expected {layout.num_params} controller parameters, got shape {params.shape}")
    weights = params[: layout.input_dim * layout.outputs].reshape(layout.input_dim, layout.outputs)
    bias = params[layout.input_dim * layout.outputs :] if layout.bias else np.zeros(layout.outputs, np.float32)
    return weights, bias


def features(layout: ControllerLayout, z: Any, h: Any, c: Any, concat: Any = np.concatenate) -> Any:
    """x = [z, (c), (h)] along the last axis (NumPy by default; pass tf.concat for tensors)."""
    parts = [z] + ([c] if "c" in layout.features else []) + ([h] if "h" in layout.features else [])
    return concat(parts, axis=-1)


def env_action(layout: ControllerLayout, raw: np.ndarray) -> Any:
    """The environment action for one raw output a [outputs] in [-1, 1]."""
    raw = np.asarray(raw, np.float64)
    if layout.action_map == "thirds":
        return 0 if raw[0] < -THIRD else 2 if raw[0] > THIRD else 1
    if layout.action_map == "argmax":
        return int(np.argmax(raw))
    if layout.action_map == "carracing":
        return np.array([raw[0], (raw[1] + 1.0) / 2.0, np.clip(raw[2], 0.0, 1.0)], np.float32)
    low, high = np.asarray(layout.low), np.asarray(layout.high)
    return (low + (raw + 1.0) / 2.0 * (high - low)).astype(np.float32)


def model_action(layout: ControllerLayout, action: Any) -> np.ndarray:
    """An environment action as the MDN-RNN reads it: [action_dim] float32 (one-hot when discrete)."""
    if layout.discrete:
        return np.eye(layout.action_dim, dtype=np.float32)[int(action)]
    return np.asarray(action, np.float32).reshape(layout.action_dim)


def tf_env_action(layout: ControllerLayout, raw: Any) -> Any:
    """TensorFlow twin of `env_action` for raw outputs [n, outputs]: int64 [n] (discrete) or float32 [n, d]."""
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    if layout.action_map == "thirds":
        return tf.where(raw[:, 0] < -THIRD, tf.constant(0, tf.int64), tf.where(raw[:, 0] > THIRD, tf.constant(2, tf.int64), tf.constant(1, tf.int64)))
    if layout.action_map == "argmax":
        return tf.argmax(raw, axis=-1)
    if layout.action_map == "carracing":
        return tf.stack([raw[:, 0], (raw[:, 1] + 1.0) / 2.0, tf.clip_by_value(raw[:, 2], 0.0, 1.0)], axis=-1)
    low, high = tf.constant(layout.low, tf.float32), tf.constant(layout.high, tf.float32)
    return low + (raw + 1.0) / 2.0 * (high - low)


def tf_model_action(layout: ControllerLayout, action: Any) -> Any:
    """TensorFlow twin of `model_action` for a batch of environment actions -> [n, action_dim] float32."""
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    if layout.discrete:
        return tf.one_hot(action, layout.action_dim, dtype=tf.float32)
    return tf.cast(action, tf.float32)
