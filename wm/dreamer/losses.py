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

from wm.dreamer.distributions import categorical_kl, gaussian_kl
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


def trajectory_weights(discount: Any) -> Any:
    """w_t = prod_{i < t} gamma_i for t = 0 .. H - 1 from discount [H, batch]; no gradient flows through it."""
    discount = tf.stop_gradient(discount)
    return tf.math.cumprod(tf.concat([tf.ones_like(discount[:1]), discount[:-1]], axis=0), axis=0)


def kl_balance(posterior: Any, prior: Any, latent: str, alpha: float, free_nats: float) -> dict[str, Any]:
    """KL balancing (DreamerV2 eq. 2 and its algorithm 2): alpha KL(sg(q) || p) + (1 - alpha) KL(q || sg(p)).

    posterior, prior: logits [.., S, C] ("categorical") or (mean, std) pairs [.., D] ("gaussian").
    The first term trains the prior towards the posterior, the second the posterior towards the
    prior. Each term's batch mean is floored at `free_nats` (DreamerV2's free averaging), which stops
    its gradient once the KL is below it. Returns `loss` and the plain KL(q || p) `kl` (batch mean).
    """

    def kl(q: Any, p: Any) -> Any:
        if latent == "categorical":
            return categorical_kl(q, p)
        return gaussian_kl(q[0], q[1], p[0], p[1])

    stop = lambda params: tf.nest.map_structure(tf.stop_gradient, params)  # noqa: E731
    prior_term = tf.reduce_mean(kl(stop(posterior), prior))
    posterior_term = tf.reduce_mean(kl(posterior, stop(prior)))
    loss = alpha * tf.maximum(prior_term, free_nats) + (1.0 - alpha) * tf.maximum(posterior_term, free_nats)
    return {"loss": loss, "kl": tf.stop_gradient(posterior_term)}


def critic_loss(value: Any, returns: Any, weights: Any) -> Any:
    """The critic's regression on the stop-gradient lambda-returns (DreamerV2 eq. 5), discount-weighted.

    value [H, batch] is v(s_t) for t = 0 .. H - 1 from the trained critic; returns V [H, batch];
    weights w [H, batch]. Loss = mean over t, batch of w_t * (v_t - sg(V_t))^2 / 2.
    """
    return tf.reduce_mean(tf.stop_gradient(weights) * 0.5 * tf.square(value - tf.stop_gradient(returns)))


def actor_loss(
    log_prob: Any, entropy: Any, returns: Any, baseline: Any, weights: Any, rho: float, eta: float
) -> dict[str, Any]:
    """The actor's objective (DreamerV2 eq. 6), discount-weighted and negated into a loss.

    log_prob [H, batch] is log pi(a_t | s_t) of the imagined actions, entropy [H, batch] of pi(. | s_t),
    returns V [H, batch] (with gradients through the dynamics when rho < 1), baseline v(s_t) [H, batch]
    from the target critic. Per step: rho * log_prob * sg(V_t - v_t) (REINFORCE) + (1 - rho) * V_t
    (dynamics backpropagation) + eta * entropy; loss = -mean(w_t * that).
    """
    advantage = tf.stop_gradient(returns - baseline)
    objective = rho * log_prob * advantage + (1.0 - rho) * returns + eta * entropy
    loss = -tf.reduce_mean(tf.stop_gradient(weights) * objective)
    return {"loss": loss, "entropy": tf.reduce_mean(entropy), "advantage": tf.reduce_mean(advantage)}
