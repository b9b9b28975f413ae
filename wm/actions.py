"""Every conversion between an environment's actions and what a model reads or writes, in one place.

Three forms of an action meet here:
    environment   what `env.step` takes: an index (Discrete) or a float vector within [low, high] (Box);
    model input   what a network reads: one-hot [A] for a discrete action; for a Box, the vector itself
                  (the World Models MDN-RNN) or rescaled to [-1, 1] (Dreamer's agent);
    raw output    what the World Models controller C writes: tanh outputs in [-1, 1], mapped to the
                  environment's action by its layout's `action_map` (DoomTakeCover's thirds, argmax,
                  CarRacing's steer/gas/brake, or a rescaled Box).

NumPy functions take one action or a batch as noted; the `tf_` twins take batches inside compiled code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wm.tfsetup import tensorflow

THIRD = 1.0 / 3.0  # DoomTakeCover: raw < -1/3 is left, raw > 1/3 is right, nothing in between (the original code)


def memory_inputs(actions: np.ndarray, action_dim: int, discrete: bool) -> np.ndarray:
    """Environment actions [T] or [T, ...] as the MDN-RNN reads them: [T, action_dim] float32, one-hot when discrete."""
    actions = np.asarray(actions)
    if discrete:
        return np.eye(action_dim, dtype=np.float32)[actions.astype(np.int64).reshape(-1)]
    return actions.reshape(len(actions), -1).astype(np.float32)


def controller_memory_input(layout: Any, action: Any) -> np.ndarray:
    """One environment action of a controller's environment as the MDN-RNN reads it: [action_dim] float32."""
    return memory_inputs(np.asarray(action)[None], layout.action_dim, layout.discrete)[0]


def tf_controller_memory_input(layout: Any, action: Any) -> Any:
    """TensorFlow twin of `controller_memory_input` for a batch of environment actions -> [n, action_dim] float32."""
    tf = tensorflow()
    if layout.discrete:
        return tf.one_hot(action, layout.action_dim, dtype=tf.float32)
    return tf.cast(action, tf.float32)


def controller_env_action(layout: Any, raw: np.ndarray) -> Any:
    """The environment action for one raw controller output [outputs] in [-1, 1]."""
    raw = np.asarray(raw, np.float64)
    if layout.action_map == "thirds":
        return 0 if raw[0] < -THIRD else 2 if raw[0] > THIRD else 1
    if layout.action_map == "argmax":
        return int(np.argmax(raw))
    if layout.action_map == "carracing":
        return np.array([raw[0], (raw[1] + 1.0) / 2.0, np.clip(raw[2], 0.0, 1.0)], np.float32)
    low, high = np.asarray(layout.low), np.asarray(layout.high)
    return (low + (raw + 1.0) / 2.0 * (high - low)).astype(np.float32)


def tf_controller_env_action(layout: Any, raw: Any) -> Any:
    """TensorFlow twin of `controller_env_action` for raw outputs [n, outputs]: int64 [n] (discrete) or float32 [n, d]."""
    tf = tensorflow()
    if layout.action_map == "thirds":
        return tf.where(raw[:, 0] < -THIRD, tf.constant(0, tf.int64), tf.where(raw[:, 0] > THIRD, tf.constant(2, tf.int64), tf.constant(1, tf.int64)))
    if layout.action_map == "argmax":
        return tf.argmax(raw, axis=-1)
    if layout.action_map == "carracing":
        return tf.stack([raw[:, 0], (raw[:, 1] + 1.0) / 2.0, tf.clip_by_value(raw[:, 2], 0.0, 1.0)], axis=-1)
    low, high = tf.constant(layout.low, tf.float32), tf.constant(layout.high, tf.float32)
    return low + (raw + 1.0) / 2.0 * (high - low)


def dreamer_model_action(action: np.ndarray, kind: str, action_dim: int, low: np.ndarray | None, high: np.ndarray | None) -> np.ndarray:
    """Stored actions [..] (indices) or [.., A] (in the space's bounds) as Dreamer's agent reads them, [.., A] float32.

    Discrete indices become one-hot; bounded actions are mapped from [low, high] to [-1, 1].
    """
    if kind == "categorical":
        return np.eye(action_dim, dtype=np.float32)[np.asarray(action, dtype=np.int64)]
    action = np.asarray(action, dtype=np.float32)
    return (2.0 * (action - low) / (high - low) - 1.0).astype(np.float32)


def dreamer_env_action(action: np.ndarray, kind: str, low: Any, high: Any) -> Any:
    """One action of Dreamer's agent [A] (one-hot, or in [-1, 1]) as the environment's (an index, or within [low, high])."""
    if kind == "categorical":
        return int(np.argmax(action))
    return (low + (np.clip(action, -1.0, 1.0) + 1.0) / 2.0 * (high - low)).astype(np.float32)
