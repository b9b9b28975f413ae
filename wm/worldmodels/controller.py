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
from wm.tfsetup import tensorflow

FEATURES = ("auto", "z", "zh", "zch")


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


class LinearActor:
    """C as the paper's single layer: raw = tanh(x W + b), with W and b in variables (no retracing per candidate)."""

    def __init__(self, layout: Any):
        tf = tensorflow()
        self.layout = layout
        self.weights = tf.Variable(tf.zeros([layout.input_dim, layout.outputs]), trainable=False)
        self.bias = tf.Variable(tf.zeros([layout.outputs]), trainable=False)

    def set_params(self, params: np.ndarray) -> None:
        weights, bias = split_params(self.layout, params)
        self.weights.assign(weights)
        self.bias.assign(bias)

    def __call__(self, x: Any) -> Any:
        tf = tensorflow()
        return tf.tanh(tf.matmul(x, self.weights) + self.bias)


@dataclass
class TrainingSetting:
    """What both controller-training algorithms (`wm.worldmodels.cmaes`, `wm.worldmodels.ppo`) need: the config, the world model, the controller's layout and the dream."""

    config: Any  # TrainControllerConfig
    seed: int
    env_id: str
    max_steps: int
    layout: Any  # wm.worldmodels.controller.ControllerLayout
    rules: Any  # DreamRules, or None when the MDN-RNN cannot score a dream (no reward and no done head)
    dream: Any  # wm.worldmodels.dream.batched.Dream, or None
    vae_path: str
    mdnrnn_path: str
