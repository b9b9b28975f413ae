"""Distributions of the Dreamer family, on tensorflow-probability (this is the one module that imports it).

Symbols: logits [.., S, C] of S categorical variables with C classes each (DreamerV2: 32 x 32);
mean, std [.., D] of a diagonal Gaussian (Dreamer, PlaNet).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wm.tfsetup import tensorflow

tf = tensorflow()


def tfp_distributions() -> Any:
    """`tensorflow_probability.distributions`, imported on first use (it costs a second or two)."""
    import tensorflow_probability as tfp

    return tfp.distributions


def symlog(x: Any) -> Any:
    """sign(x) ln(1 + |x|) (DreamerV3 eq. 9): compresses large magnitudes, the identity near 0."""
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def symexp(x: Any) -> Any:
    """sign(x) (e^|x| - 1), the inverse of `symlog`."""
    return tf.sign(x) * tf.math.expm1(tf.abs(x))


def twohot_bins(count: int) -> Any:
    """`count` bin centres symmetric around 0: symexp of evenly spaced points in [-20, 20] (DreamerV3's heads).

    An odd count has a bin at exactly 0 (DreamerV3: 255 bins). float32 [count].
    """
    points = np.linspace(-20.0, 20.0, count)
    if count % 2:
        points[count // 2] = 0.0
    return tf.constant(np.sign(points) * np.expm1(np.abs(points)), tf.float32)


def twohot_encode(x: Any, bins: Any) -> Any:
    """The two-hot encoding of values x [..] on sorted bins [K]: [.., K], summing to 1, with expectation x.

    The weight goes to the two bins either side of x, in proportion to how close each is; a value
    outside the bins puts all of it on the nearest end bin.
    """
    count = bins.shape[0]
    x = tf.clip_by_value(x, bins[0], bins[-1])
    above = tf.clip_by_value(tf.searchsorted(bins, tf.reshape(x, [-1]), side="right"), 1, count - 1)
    above = tf.reshape(above, tf.shape(x))
    below = above - 1
    low, high = tf.gather(bins, below), tf.gather(bins, above)
    weight_high = (x - low) / (high - low)
    return tf.one_hot(below, count) * (1.0 - weight_high)[..., None] + tf.one_hot(above, count) * weight_high[..., None]


def twohot_mean(logits: Any, bins: Any) -> Any:
    """The expected value sum_k softmax(logits)_k bins_k [..] of a two-hot head's logits [.., K].

    Summed from the outside bins inwards in pairs (-b, +b), so that uniform probabilities over
    symmetric bins give exactly 0 (a plain left-to-right sum leaves rounding error of order e^20 * eps).
    """
    weighted = tf.nn.softmax(logits, axis=-1) * bins
    count = bins.shape[0]
    half = count // 2
    pairs = weighted[..., :half][..., ::-1] + weighted[..., count - half:]
    middle = weighted[..., half] if count % 2 else 0.0
    return tf.reduce_sum(pairs, axis=-1) + middle


def twohot_loss(logits: Any, target: Any, bins: Any) -> Any:
    """-sum_k twohot(target)_k log softmax(logits)_k [..]: the cross-entropy of a two-hot head against targets [..]."""
    return -tf.reduce_sum(tf.stop_gradient(twohot_encode(target, bins)) * tf.nn.log_softmax(logits, axis=-1), axis=-1)


def unimix_logits(logits: Any, mix: float) -> Any:
    """Logits of (1 - mix) softmax(logits) + mix / C over the last axis [.., C] (DreamerV3's 1% uniform mix).

    Every class keeps a probability of at least mix / C, so KLs and log-probabilities stay finite.
    mix = 0 returns the logits unchanged.
    """
    if mix == 0:
        return logits
    probs = (1.0 - mix) * tf.nn.softmax(logits, axis=-1) + mix / tf.cast(tf.shape(logits)[-1], logits.dtype)
    return tf.math.log(probs)


def straight_through_sample(logits: Any, seed: Any = None) -> Any:
    """One-hot samples of categoricals [.., S, C] whose gradient is that of the probabilities (DreamerV2 eq. 7).

    Forward: the one-hot sample. Backward: d sample / d logits = d softmax(logits) / d logits,
    because sample + probs - stop_gradient(probs) has the sample's value and the probabilities' gradient.
    """
    probs = tf.nn.softmax(logits, axis=-1)
    flat = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
    if seed is None:
        index = tf.random.categorical(flat, 1)[:, 0]
    else:
        index = tf.random.stateless_categorical(flat, 1, seed)[:, 0]
    sample = tf.reshape(tf.one_hot(index, tf.shape(logits)[-1], dtype=logits.dtype), tf.shape(logits))
    return sample + probs - tf.stop_gradient(probs)


def categorical_kl(q_logits: Any, p_logits: Any) -> Any:
    """KL(q || p) of S independent categoricals [.., S, C], summed over the S variables: [..]."""
    q_log = tf.nn.log_softmax(q_logits, axis=-1)
    p_log = tf.nn.log_softmax(p_logits, axis=-1)
    return tf.reduce_sum(tf.exp(q_log) * (q_log - p_log), axis=[-2, -1])


def gaussian_kl(q_mean: Any, q_std: Any, p_mean: Any, p_std: Any) -> Any:
    """KL(q || p) of two diagonal Gaussians [.., D], summed over D: [..]."""
    variance_ratio = tf.square(q_std / p_std)
    mean_term = tf.square((q_mean - p_mean) / p_std)
    return 0.5 * tf.reduce_sum(variance_ratio + mean_term - 1.0 - tf.math.log(variance_ratio), axis=-1)


def action_distribution(kind: str, params: Any, unimix: float = 0.0) -> Any:
    """The actor's distribution over actions from its raw output `params`.

    - "categorical": params are logits [.., A], mixed with `unimix` of the uniform distribution
      (`unimix_logits`); samples are one-hot with straight-through gradients.
    - "bounded": params [.., 2A] give a Gaussian truncated to [-1, 1] (DreamerV2's continuous actor):
      mean tanh(m), std 2 sigmoid(s / 2) + 0.1; samples are reparameterised. The stage maps [-1, 1]
      to the environment's bounds.
    """
    tfd = tfp_distributions()
    if kind == "categorical":
        return _StraightThroughCategorical(unimix_logits(params, unimix))
    if kind == "bounded":
        mean, raw_std = tf.split(params, 2, axis=-1)
        std = 2.0 * tf.sigmoid(raw_std / 2.0) + 0.1
        return tfd.Independent(tfd.TruncatedNormal(tf.tanh(mean), std, -1.0, 1.0), reinterpreted_batch_ndims=1)
    raise ValueError(f"unknown action distribution {kind!r}; known: categorical, bounded")


class _StraightThroughCategorical:
    """A one-hot categorical over actions [.., A] with straight-through samples (the parts the actor uses)."""

    def __init__(self, logits: Any):
        self.logits = logits

    def sample(self, seed: Any = None) -> Any:
        """A one-hot sample [.., A] with straight-through gradients."""
        return straight_through_sample(self.logits[..., None, :], seed)[..., 0, :]

    def log_prob(self, one_hot: Any) -> Any:
        """log pi(a) of one-hot actions [..]."""
        return tf.reduce_sum(one_hot * tf.nn.log_softmax(self.logits, axis=-1), axis=-1)

    def entropy(self) -> Any:
        """The entropy [..] in nats."""
        log_probs = tf.nn.log_softmax(self.logits, axis=-1)
        return -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)

    def mode(self) -> Any:
        """The most likely action, one-hot."""
        return tf.one_hot(tf.argmax(self.logits, axis=-1), tf.shape(self.logits)[-1], dtype=self.logits.dtype)
