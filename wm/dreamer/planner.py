"""PlaNet's planner (Hafner et al. 2019): the cross-entropy method over action sequences in the RSSM.

From the current posterior state, `candidates` action sequences of `horizon` steps are drawn from a
per-step distribution, rolled out through the transition predictor, and scored by their predicted
return sum_t (prod_{i<t} c_i) r_t (c the predicted probability that the episode goes on, so that
rewards after a predicted end do not count). The `top` best refit the distribution; after
`iterations` rounds the first action of the distribution's mode is taken, and the planner starts
again at the next step (PlaNet: horizon 12, 10 iterations, 1000 candidates, top 100).

Bounded actions: a diagonal Gaussian per step in [-1, 1] (mean 0, std 1 at the start), samples
clipped. Discrete actions: a categorical per step (uniform at the start), refit to the elites'
action frequencies; the plan's first action is the most frequent one.
"""

from __future__ import annotations

from typing import Any, Callable

from wm.tfsetup import tensorflow

tf = tensorflow()


def cem_plan(
    step: Callable[[Any, Any, Any], tuple[Any, Any, Any]],
    start: dict[str, Any],
    action_kind: str,
    action_dim: int,
    horizon: int,
    iterations: int,
    candidates: int,
    top: int,
    seed: Any,
) -> Any:
    """The first action [A] of the plan from `start` (a state of batch 1).

    `step(states, actions [N, A], seed)` returns (next states, rewards [N], continue probabilities [N]).
    """
    states0 = {name: tf.repeat(value, candidates, axis=0) for name, value in start.items()}
    if action_kind == "categorical":
        logits = tf.zeros([horizon, action_dim])
    else:
        mean, std = tf.zeros([horizon, action_dim]), tf.ones([horizon, action_dim])
    for iteration in range(iterations):
        round_seed = tf.random.experimental.stateless_fold_in(seed, iteration)
        sample_seed, model_seed = tf.unstack(tf.random.experimental.stateless_split(round_seed, 2))
        if action_kind == "categorical":
            index = tf.random.stateless_categorical(logits, candidates, sample_seed)  # [H, N]
            actions = tf.one_hot(tf.transpose(index), action_dim)  # [N, H, A]
        else:
            noise = tf.random.stateless_normal([candidates, horizon, action_dim], sample_seed)
            actions = tf.clip_by_value(mean[None] + std[None] * noise, -1.0, 1.0)
        returns = predicted_returns(step, states0, actions, model_seed)
        elite = tf.gather(actions, tf.math.top_k(returns, top).indices)  # [top, H, A]
        if action_kind == "categorical":
            frequency = tf.reduce_mean(elite, axis=0)  # [H, A]
            logits = tf.math.log(frequency + 1e-6)
        else:
            mean, variance = tf.nn.moments(elite, axes=[0])
            std = tf.sqrt(variance + 1e-12)
    if action_kind == "categorical":
        return tf.one_hot(tf.argmax(logits[0]), action_dim)
    return mean[0]


def predicted_returns(step: Callable[[Any, Any, Any], tuple[Any, Any, Any]], states: dict[str, Any], actions: Any, seed: Any) -> Any:
    """sum_t (prod_{i<t} c_i) r_t [N] of action sequences [N, H, A] from states [N, ..]."""
    total = tf.zeros([tf.shape(actions)[0]])
    alive = tf.ones([tf.shape(actions)[0]])
    for t in range(actions.shape[1]):
        states, reward, continues = step(states, actions[:, t], tf.random.experimental.stateless_fold_in(seed, t))
        total += alive * reward
        alive *= continues
    return total
