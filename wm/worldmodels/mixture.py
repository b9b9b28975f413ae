"""Mixture-density math of the MDN-RNN: one mixture of K Gaussians per latent dimension.

Symbols (World Models, Ha & Schmidhuber 2018, section A.2):
    pi_k     mixture weights, from `logits` by softmax           [..., latent, K]
    mu_k     component means                                      [..., latent, K]
    sigma_k  component standard deviations, as `log_sigma`        [..., latent, K]
    tau      temperature: logits / tau, sigma * sqrt(tau)

Every sampler in wm (dreams, GIFs, the batched dream) goes through `sample_from_noise`,
so temperature means the same thing everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from wm.tfsetup import tensorflow

tf = tensorflow()

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def split_params(raw: Any, num_mixtures: int) -> tuple[Any, Any, Any]:
    """Split the MDN head's output [..., latent * 3K] into (logits, mu, log_sigma), each [..., latent, K]."""
    shape = tf.shape(raw)
    latent_dim = raw.shape[-1] // (3 * num_mixtures)
    grouped = tf.reshape(raw, tf.concat([shape[:-1], [latent_dim, 3 * num_mixtures]], axis=0))
    logits, mu, log_sigma = tf.split(grouped, 3, axis=-1)
    return logits, mu, log_sigma


def log_prob(x: Any, logits: Any, mu: Any, log_sigma: Any) -> Any:
    """log p(x) per latent dimension, [..., latent], for x [..., latent].

    log sum_k pi_k N(x | mu_k, sigma_k), computed as a log-sum-exp of
    log_softmax(logits)_k - (x - mu_k)^2 / (2 sigma_k^2) - log sigma_k - log sqrt(2 pi),
    so that no term is exponentiated before the maximum is taken out (paper eq. in A.2).
    """
    x = tf.expand_dims(x, -1)  # [..., latent, 1]
    log_pi = tf.nn.log_softmax(logits, axis=-1)
    standardized = (x - mu) * tf.exp(-log_sigma)
    log_normal = -0.5 * tf.square(standardized) - log_sigma - LOG_SQRT_2PI
    return tf.reduce_logsumexp(log_pi + log_normal, axis=-1)


def temper(logits: Any, log_sigma: Any, temperature: Any) -> tuple[Any, Any]:
    """Apply temperature tau: logits / tau and sigma * sqrt(tau) (log_sigma + log(tau) / 2)."""
    temperature = tf.cast(temperature, logits.dtype)
    return logits / temperature, log_sigma + 0.5 * tf.math.log(temperature)


def sample(logits: Any, mu: Any, log_sigma: Any, temperature: Any, seed: Any) -> Any:
    """Draw x [..., latent] from the mixture at temperature tau (stateless: same seed, same draw).

    As tau -> 0 this tends to the mean of the most likely component; at tau = 1 it samples the
    mixture itself. `seed` is a [2] integer tensor; the draw is `sample_from_noise` on uniform and
    normal noise made from it.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    uniform = tf.random.stateless_uniform(tf.shape(logits), seed=seeds[0], minval=1e-20, maxval=1.0, dtype=logits.dtype)
    noise = tf.random.stateless_normal(tf.shape(mu)[:-1], seed=seeds[1], dtype=mu.dtype)
    return sample_from_noise(logits, mu, log_sigma, temperature, uniform, noise)


def sample_from_noise(logits: Any, mu: Any, log_sigma: Any, temperature: Any, uniform: Any, noise: Any) -> Any:
    """The mixture draw at temperature tau, from given noise: uniform (0, 1) [..., latent, K], normal [..., latent].

    A component is chosen per latent dimension with the Gumbel-max trick on the tempered logits,
    then x = mu_k + sigma_k * sqrt(tau) * eps. Batched dreams pass per-dream counter-based noise
    (`wm.rng`) so that a dream's draws do not depend on the rest of the batch.
    """
    logits, log_sigma = temper(logits, log_sigma, temperature)
    gumbel = -tf.math.log(-tf.math.log(uniform))
    choice = tf.one_hot(tf.argmax(logits + gumbel, axis=-1), tf.shape(logits)[-1], dtype=logits.dtype)
    chosen_mu = tf.reduce_sum(choice * mu, axis=-1)
    chosen_sigma = tf.exp(tf.reduce_sum(choice * log_sigma, axis=-1))
    return chosen_mu + chosen_sigma * noise


def moments(logits: Any, mu: Any, log_sigma: Any) -> tuple[Any, Any]:
    """Mean and variance of the mixture per latent dimension (for tests and summaries)."""
    pi = tf.nn.softmax(logits, axis=-1)
    mean = tf.reduce_sum(pi * mu, axis=-1)
    second = tf.reduce_sum(pi * (tf.exp(2.0 * log_sigma) + tf.square(mu)), axis=-1)
    return mean, second - tf.square(mean)
