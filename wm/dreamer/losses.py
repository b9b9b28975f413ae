"""Objectives of the Dreamer family (DreamerV2, Hafner et al. 2021; Dreamer, Hafner et al. 2020).

Imagination indexing, time-major [H + 1, batch] for states and [H, batch] for transitions:

    s_0 --a_0--> s_1 --a_1--> ... --a_{H-1}--> s_H
    r_t, gamma_t   reward and discount of the transition s_t -> s_{t+1}, predicted at s_{t+1}
    v_t            the critic's value of s_t (t = 0 .. H)
    V_t            the lambda-return of s_t (t = 0 .. H - 1)
    w_t            the weight of step t: prod_{i < t} gamma_i (w_0 = 1), so that steps after a
                   predicted episode end count less
"""

from __future__ import annotations

from typing import Any

from wm.dreamer.distributions import categorical_kl, gaussian_kl, twohot_encode
from wm.tfsetup import tensorflow

tf = tensorflow()


def lambda_returns(reward: Any, value: Any, discount: Any, lambda_: float) -> Any:
    """TD(lambda) returns (DreamerV2 eq. 4): V_t = r_t + gamma_t ((1 - lambda) v_{t+1} + lambda V_{t+1}), V_H = v_H.

    reward, discount [H, batch]; value [H + 1, batch]. Returns V [H, batch]. H is static (a Python
    loop, unrolled when traced).
    """
    horizon = reward.shape[0]
    following = value[-1]  # V_H = v_H
    returns = []
    for t in reversed(range(horizon)):
        following = reward[t] + discount[t] * ((1.0 - lambda_) * value[t + 1] + lambda_ * following)
        returns.append(following)
    return tf.stack(returns[::-1], axis=0)


def replay_lambda_returns(reward: Any, terminated: Any, has_next: Any, boot: Any, gamma: float, lambda_: float) -> tuple[Any, Any]:
    """lambda-returns along the replay's own windows (DreamerV3's replay value loss), batch-major [B, L].

    reward r_t, terminated and has_next as in a training batch (wm.dreamer.agent); boot B_t, the imagined
    lambda-return from the posterior state of x_t. Where x_{t+1} follows in the window,
    R_t = r_t + gamma (1 - terminated_t) ((1 - lambda) B_{t+1} + lambda R_{t+1}); where the episode ends
    after a_t, R_t = r_t; elsewhere (a window's or a truncated episode's last step) R_t = B_t.
    Returns (R [B, L], weights [B, L]): weight 1 where R_t holds a real step, 0 where it is B_t alone.
    """
    length = reward.shape[1]
    continues = gamma * (1.0 - tf.cast(terminated, reward.dtype))
    ended = tf.cast(terminated, tf.bool)
    following = None
    returns = []
    for t in reversed(range(length)):
        current = tf.where(ended[:, t], reward[:, t], boot[:, t])
        if following is not None:
            recursive = reward[:, t] + continues[:, t] * ((1.0 - lambda_) * boot[:, t + 1] + lambda_ * following)
            current = tf.where(has_next[:, t], recursive, current)
        returns.append(current)
        following = current
    weights = tf.cast(tf.logical_or(has_next, ended), reward.dtype)
    return tf.stack(returns[::-1], axis=1), weights


def trajectory_weights(discount: Any) -> Any:
    """w_t = prod_{i < t} gamma_i for t = 0 .. H - 1 from discount [H, batch]; no gradient flows through it."""
    discount = tf.stop_gradient(discount)
    return tf.math.cumprod(tf.concat([tf.ones_like(discount[:1]), discount[:-1]], axis=0), axis=0)


def _kl(q: Any, p: Any, latent: str) -> Any:
    """KL(q || p) per element of the batch: categorical logits, or (mean, std) pairs of Gaussians."""
    if latent == "categorical":
        return categorical_kl(q, p)
    return gaussian_kl(q[0], q[1], p[0], p[1])


def _stop(params: Any) -> Any:
    return tf.nest.map_structure(tf.stop_gradient, params)


def kl_balance(posterior: Any, prior: Any, latent: str, alpha: float, free_nats: float) -> dict[str, Any]:
    """KL balancing (DreamerV2 eq. 2 and its algorithm 2): alpha KL(sg(q) || p) + (1 - alpha) KL(q || sg(p)).

    posterior, prior: logits [.., S, C] ("categorical") or (mean, std) pairs [.., D] ("gaussian").
    The first term trains the prior towards the posterior, the second the posterior towards the
    prior. Each term's batch mean is floored at `free_nats` (DreamerV2's free averaging), which stops
    its gradient once the KL is below it. Returns `loss` and the plain KL(q || p) `kl` (batch mean).
    """

    prior_term = tf.reduce_mean(_kl(_stop(posterior), prior, latent))
    posterior_term = tf.reduce_mean(_kl(posterior, _stop(prior), latent))
    loss = alpha * tf.maximum(prior_term, free_nats) + (1.0 - alpha) * tf.maximum(posterior_term, free_nats)
    return {"loss": loss, "kl": tf.stop_gradient(posterior_term)}


def kl_free_bits(posterior: Any, prior: Any, latent: str, dyn_scale: float, rep_scale: float, free_nats: float) -> dict[str, Any]:
    """DreamerV3's KL loss (its eq. 5): dyn_scale max(free, KL(sg(q) || p)) + rep_scale max(free, KL(q || sg(p))).

    As `kl_balance`, but the free-nats floor ("free bits") applies to each step's KL [..] before the
    mean, not to the batch mean: steps whose KL is already below it give no gradient, the others do.
    DreamerV3: dyn_scale 0.5, rep_scale 0.1, free 1 nat. Returns `loss` and the plain KL(q || p) `kl`.
    """

    dynamics = _kl(_stop(posterior), prior, latent)
    representation = _kl(posterior, _stop(prior), latent)
    loss = dyn_scale * tf.reduce_mean(tf.maximum(dynamics, free_nats)) + rep_scale * tf.reduce_mean(tf.maximum(representation, free_nats))
    return {"loss": loss, "kl": tf.stop_gradient(tf.reduce_mean(representation))}


def percentile(x: Any, q: float) -> Any:
    """The q-th percentile (0..100) of all of x's values, linearly interpolated between order statistics (numpy's default)."""
    return _sorted_percentile(tf.sort(tf.reshape(x, [-1])), q)


def _sorted_percentile(values: Any, q: float) -> Any:
    position = (q / 100.0) * tf.cast(tf.size(values) - 1, values.dtype)
    low = tf.cast(tf.floor(position), tf.int32)
    high = tf.minimum(low + 1, tf.size(values) - 1)
    fraction = position - tf.floor(position)
    return tf.gather(values, low) * (1.0 - fraction) + tf.gather(values, high) * fraction


def update_return_range(low: Any, high: Any, returns: Any, rate: float, low_percentile: float, high_percentile: float) -> tuple[Any, Any]:
    """DreamerV3's return normalisation statistics: EMAs (rate `rate`) of the returns' low and high percentiles.

    low' = (1 - rate) low + rate P_low(returns), the same for high. The advantage is then divided by
    `return_scale(low', high')` (DreamerV3: percentiles 5 and 95, rate 0.01).
    """
    values = tf.sort(tf.reshape(tf.stop_gradient(returns), [-1]))  # sorted once for both percentiles
    new_low = (1.0 - rate) * low + rate * _sorted_percentile(values, low_percentile)
    new_high = (1.0 - rate) * high + rate * _sorted_percentile(values, high_percentile)
    return new_low, new_high


def return_scale(low: Any, high: Any, limit: float = 1.0) -> Any:
    """max(limit, high - low): returns spread over less than `limit` are not scaled up (DreamerV3: limit 1)."""
    return tf.maximum(limit, high - low)


def continue_loss(logits: Any, terminated: Any, terminal_weight: float = 1.0) -> Any:
    """The discount head's loss: mean over steps of w_t * BCE(sigmoid(logit_t), 1 - terminated_t).

    logits and terminated [..]; w_t is `terminal_weight` where the transition ends the episode, 1 elsewhere,
    so that rare terminations (a cart leaving the track once in hundreds of episodes) count more. The mean
    divides by the number of steps, not by the weights: with weight 1 it is the plain mean cross-entropy.
    """
    terminated = tf.cast(terminated, tf.float32)
    per_step = tf.nn.sigmoid_cross_entropy_with_logits(labels=1.0 - terminated, logits=logits)
    if terminal_weight == 1.0:
        return tf.reduce_mean(per_step)
    return tf.reduce_mean((1.0 + (terminal_weight - 1.0) * terminated) * per_step)


def critic_loss(value: Any, returns: Any, weights: Any, slow_value: Any = None, slow_reg: float = 0.0) -> Any:
    """The critic's regression on the stop-gradient lambda-returns (DreamerV2 eq. 5), discount-weighted.

    value [H, batch] is v(s_t) for t = 0 .. H - 1 from the trained critic; returns V [H, batch];
    weights w [H, batch]. Loss = mean over t, batch of w_t * (v_t - sg(V_t))^2 / 2. With a slow
    critic's values `slow_value` [H, batch], w_t * slow_reg * (v_t - sg(slow_t))^2 / 2 is added.
    """
    squared = tf.square(value - tf.stop_gradient(returns))
    if slow_value is not None:
        squared += slow_reg * tf.square(value - tf.stop_gradient(slow_value))
    return tf.reduce_mean(tf.stop_gradient(weights) * 0.5 * squared)  # DreamerV2's order of operations, to the bit


def twohot_critic_loss(logits: Any, returns: Any, weights: Any, bins: Any, slow_value: Any = None, slow_reg: float = 0.0) -> Any:
    """The two-hot critic's loss (DreamerV3): mean of w_t (CE(logits_t, twohot(sg V_t)) + slow_reg CE(logits_t, twohot(sg slow_t))).

    logits [H, batch, K] over `bins` [K]; returns, weights and slow_value [H, batch] as in `critic_loss`.
    """
    target = twohot_encode(tf.stop_gradient(returns), bins)
    if slow_value is not None:  # one cross-entropy against the sum of the two targets: the same loss, one log-softmax
        target += slow_reg * twohot_encode(tf.stop_gradient(slow_value), bins)
    per_step = -tf.reduce_sum(tf.stop_gradient(target) * tf.nn.log_softmax(logits, axis=-1), axis=-1)
    return tf.reduce_mean(tf.stop_gradient(weights) * per_step)


def actor_loss(
    log_prob: Any, entropy: Any, returns: Any, baseline: Any, weights: Any, rho: float, eta: float, scale: Any = None
) -> dict[str, Any]:
    """The actor's objective (DreamerV2 eq. 6), discount-weighted and negated into a loss.

    log_prob [H, batch] is log pi(a_t | s_t) of the imagined actions, entropy [H, batch] of pi(. | s_t),
    returns V [H, batch] (with gradients through the dynamics when rho < 1), baseline v(s_t) [H, batch]
    from the target critic. Per step: rho * log_prob * sg(V_t - v_t) (REINFORCE) + (1 - rho) * V_t
    (dynamics backpropagation) + eta * entropy; loss = -mean(w_t * that). With `scale` (DreamerV3's
    return normalisation, `return_scale`) the advantage and the returns are divided by sg(scale).
    """
    advantage = tf.stop_gradient(returns - baseline)
    if scale is not None:
        scale = tf.stop_gradient(scale)
        advantage, returns = advantage / scale, returns / scale
    objective = rho * log_prob * advantage + (1.0 - rho) * returns + eta * entropy
    loss = -tf.reduce_mean(tf.stop_gradient(weights) * objective)
    return {"loss": loss, "entropy": tf.reduce_mean(entropy), "advantage": tf.reduce_mean(advantage)}
