"""PPO (Schulman et al. 2017) for a controller trained inside the dream, as in the seed document on
PPO with a learned world model: an actor-critic on the controller's input x = [z, h] (or [z, c, h]),
by default with that document's actor widths 256-256-128-64 (its critic's attention layer is left
out: the input is one vector, not a sequence).

Symbols (per step t of one dream):
    r_t       reward; d_t = 1 if the dream ended after step t (then s_{t+1} is the next dream's start)
    V(s)      the critic's value
    delta_t   = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)
    A_t       generalised advantage estimate (Schulman et al. 2016): delta_t + gamma lambda (1 - d_t) A_{t+1}
    rho_t     = pi(a_t | s_t) / pi_old(a_t | s_t), the probability ratio
    L_clip    = -E[min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)]   (the clipped surrogate, eps = 0.2)

The policy acts in the controller's raw output space, so that its actions become environment
actions exactly as the linear controller's do (`wm.models.controller`): for a discrete action space
a categorical over the actions (index i is sent as the raw output i - 1 for DoomTakeCover's thirds,
or as a one-hot for argmax); for a Box a diagonal Gaussian u ~ N(mean, std), clipped to [-1, 1].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from wm.tfsetup import keras, tensorflow

tf = tensorflow()
keras = keras()


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and value targets [T, n] from rewards, values V(s_t), dones [T, n] and V(s_T) [n]."""
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards, dtype=np.float64)
    next_advantage = np.zeros(rewards.shape[1:], np.float64)
    next_value = np.asarray(last_values, np.float64)
    for t in reversed(range(steps)):
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * alive * next_value - values[t]
        next_advantage = delta + gamma * lam * alive * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


def clipped_surrogate(log_prob: Any, old_log_prob: Any, advantages: Any, clip: float) -> Any:
    """L_clip: the negated mean of min(rho A, clip(rho, 1 - eps, 1 + eps) A)."""
    ratio = tf.exp(log_prob - old_log_prob)
    return -tf.reduce_mean(tf.minimum(ratio * advantages, tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip) * advantages))


@keras.saving.register_keras_serializable(package="wm")
class ActorCritic(keras.Model):
    """Separate actor and critic MLPs (tanh layers of the given widths) on the controller's input x [batch, inputs]."""

    def __init__(self, input_dim: int, actions: int, discrete: bool, hidden: tuple[int, ...] = (256, 256, 128, 64), **kwargs: Any):
        super().__init__(**kwargs)
        self.input_dim, self.actions, self.discrete, self.hidden = input_dim, actions, discrete, tuple(int(h) for h in hidden)

        def mlp(outputs: int, name: str, scale: float) -> Any:
            layers = [keras.Input((input_dim,))]
            layers += [keras.layers.Dense(width, activation="tanh", kernel_initializer=keras.initializers.Orthogonal(math.sqrt(2))) for width in self.hidden]
            layers.append(keras.layers.Dense(outputs, kernel_initializer=keras.initializers.Orthogonal(scale)))
            return keras.Sequential(layers, name=name)

        self.actor = mlp(actions, "actor", 0.01)
        self.critic = mlp(1, "critic", 1.0)
        self.log_std = None if discrete else self.add_weight(shape=(actions,), initializer=keras.initializers.Constant(-0.5), name="log_std")

    def call(self, x: Any) -> tuple[Any, Any]:
        """(actor output [batch, actions]: logits or Gaussian means, value [batch])."""
        return self.actor(x), tf.squeeze(self.critic(x), -1)

    def log_prob_entropy(self, output: Any, action: Any) -> tuple[Any, Any]:
        """log pi(a | s) [batch] and the entropy [batch] of the policy for actor outputs `output`."""
        if self.discrete:
            log_p = tf.nn.log_softmax(output)
            chosen = tf.reduce_sum(tf.one_hot(tf.cast(action, tf.int32), self.actions) * log_p, axis=-1)
            return chosen, -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)
        std = tf.exp(self.log_std)
        standardized = (action - output) / std
        log_prob = tf.reduce_sum(-0.5 * tf.square(standardized) - self.log_std - 0.5 * math.log(2 * math.pi), axis=-1)
        entropy = tf.reduce_sum(self.log_std + 0.5 * math.log(2 * math.pi * math.e)) * tf.ones_like(log_prob)
        return log_prob, entropy

    def sample(self, output: Any, seed: Any) -> Any:
        """An action per row: an index [batch] (discrete) or u [batch, actions] (continuous, before clipping)."""
        if self.discrete:
            return tf.random.stateless_categorical(output, 1, seed, dtype=tf.int32)[:, 0]
        return output + tf.exp(self.log_std) * tf.random.stateless_normal(tf.shape(output), seed)

    def mode(self, output: Any) -> Any:
        """The most likely action: argmax index, or the Gaussian mean."""
        return tf.argmax(output, axis=-1, output_type=tf.int32) if self.discrete else output

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "actions": self.actions, "discrete": self.discrete, "hidden": list(self.hidden)}


def build_actor_critic(**config: Any) -> ActorCritic:
    """A built ActorCritic (weights created) from its config."""
    model = ActorCritic(**config)
    model(tf.zeros((1, config["input_dim"])))
    return model


def raw_output(layout: Any, model: ActorCritic, action: Any) -> Any:
    """A policy action as the controller's raw output [batch, outputs], which the layout maps to the environment."""
    if not model.discrete:
        return tf.clip_by_value(action, -1.0, 1.0)
    if layout.action_map == "thirds":
        return tf.cast(action, tf.float32)[:, None] - 1.0
    return tf.one_hot(action, layout.outputs)
