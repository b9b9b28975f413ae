"""Losses of the World Models V and M models, and the metrics used to judge them.

Symbols: x an image in [0, 1] [batch, 64, 64, 3]; mu, logvar the VAE posterior [batch, latent];
z a latent [.., latent]; y a done (death) label; w the weight of a positive example.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wm.worldmodels import mixture
from wm.tfsetup import tensorflow

tf = tensorflow()


def gaussian_kl(mu: Any, logvar: Any) -> Any:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example [batch]: -1/2 sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * tf.reduce_sum(1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=-1)


def vae_loss(x: Any, reconstruction: Any, mu: Any, logvar: Any, kl_tolerance: float) -> dict[str, Any]:
    """The World Models VAE loss (Ha & Schmidhuber 2018, A.1; the reference code's free bits).

    Per image: L = sum over pixels of (x - x_hat)^2 + max(KL, kl_tolerance * latent_dim);
    returned as batch means: `loss` (L), `reconstruction` (summed squared error) and `kl` (the raw KL,
    before the floor).
    """
    latent_dim = tf.cast(tf.shape(mu)[-1], x.dtype)
    squared_error = tf.reduce_sum(tf.square(x - reconstruction), axis=[1, 2, 3])  # [batch]
    kl = gaussian_kl(mu, logvar)  # [batch]
    per_image = squared_error + tf.maximum(kl, kl_tolerance * latent_dim)
    return {"loss": tf.reduce_mean(per_image), "reconstruction": tf.reduce_mean(squared_error), "kl": tf.reduce_mean(kl)}


def masked_mean(values: Any, mask: Any) -> Any:
    """Mean of `values` [batch, time, ...] over the steps where mask [batch, time] is 1."""
    mask = tf.cast(mask, values.dtype)
    while len(mask.shape) < len(values.shape):
        mask = mask[..., None]
    count = tf.reduce_sum(mask * tf.ones_like(values))
    return tf.reduce_sum(values * mask) / tf.maximum(count, 1.0)


def mixture_nll(z_next: Any, logits: Any, mu: Any, log_sigma: Any, mask: Any) -> tuple[Any, Any]:
    """Negative log-likelihood of z_{t+1} under the MDN's mixture (World Models eq. in A.2).

    z_next [batch, time, latent]; mixture params [batch, time, latent, K]; mask [batch, time] is 1
    where z_{t+1} exists. Returns (mean over valid steps and dimensions, mean per dimension [latent]).
    """
    nll = -mixture.log_prob(z_next, logits, mu, log_sigma)  # [batch, time, latent]
    weights = tf.cast(mask, nll.dtype)[..., None]
    per_dimension = tf.reduce_sum(nll * weights, axis=[0, 1]) / tf.maximum(tf.reduce_sum(weights), 1.0)
    return tf.reduce_mean(per_dimension), per_dimension


def done_loss(logits: Any, done: Any, mask: Any, positive_weight: float) -> Any:
    """Weighted binary cross-entropy of the done (death) head.

    Each valid step has weight w = positive_weight for y = 1 and 1 for y = 0 (deaths are rare; the
    reference doom model weighted them x10); the loss is sum(w * BCE) / sum(w) over valid steps, so
    it stays on the scale of an ordinary BCE whatever the weight.
    """
    done = tf.cast(done, logits.dtype)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=done, logits=logits)
    weights = tf.cast(mask, logits.dtype) * (1.0 + (positive_weight - 1.0) * done)
    return tf.reduce_sum(weights * bce) / tf.maximum(tf.reduce_sum(weights), 1e-8)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties count 1/2.

    Computed from ranks (Mann-Whitney U) in O(n log n); NaN when one class is missing.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # Average ranks over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + end - 1) + 1.0
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def precision_recall(probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """Precision and recall of `probabilities > threshold` (NaN where undefined)."""
    predicted = np.asarray(probabilities).ravel() > threshold
    labels = np.asarray(labels, dtype=bool).ravel()
    true_positive = float((predicted & labels).sum())
    precision = true_positive / predicted.sum() if predicted.any() else float("nan")
    recall = true_positive / labels.sum() if labels.any() else float("nan")
    return float(precision), float(recall)
