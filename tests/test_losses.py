"""Every loss and metric against a direct, obviously-correct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wm.worldmodels import losses, mixture
from wm.tfsetup import tensorflow

tf = tensorflow()


def test_vae_loss_matches_a_direct_per_image_computation():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, 64, 64, 3)).astype(np.float32)
    reconstruction = rng.uniform(size=(5, 64, 64, 3)).astype(np.float32)
    mu = rng.normal(size=(5, 4)).astype(np.float32)
    logvar = rng.normal(size=(5, 4)).astype(np.float32)
    mu[0] = 0.0  # image 0 has a KL below the floor, so max(KL, tolerance * z) picks the floor
    logvar[0] = 0.01
    kl_tolerance = 0.5
    expected_loss, expected_error, expected_kl = [], [], []
    for i in range(5):
        error = sum(float(x[i].ravel()[k] - reconstruction[i].ravel()[k]) ** 2 for k in range(64 * 64 * 3))
        kl = sum(-0.5 * (1 + logvar[i, j] - mu[i, j] ** 2 - math.exp(logvar[i, j])) for j in range(4))
        expected_loss.append(error + max(kl, kl_tolerance * 4))
        expected_error.append(error)
        expected_kl.append(kl)
    assert expected_kl[0] < kl_tolerance * 4 < max(expected_kl)
    result = losses.vae_loss(tf.constant(x), tf.constant(reconstruction), tf.constant(mu), tf.constant(logvar), kl_tolerance)
    assert float(result["loss"]) == pytest.approx(np.mean(expected_loss), rel=1e-5)
    assert float(result["reconstruction"]) == pytest.approx(np.mean(expected_error), rel=1e-5)
    assert float(result["kl"]) == pytest.approx(np.mean(expected_kl), rel=1e-5)


def _random_mixture(rng, shape, k):
    logits = rng.normal(size=(*shape, k)).astype(np.float32) * 2
    mu = rng.normal(size=(*shape, k)).astype(np.float32)
    log_sigma = rng.normal(size=(*shape, k)).astype(np.float32) * 0.5
    return logits, mu, log_sigma


def test_mixture_log_prob_matches_a_direct_sum_and_tfp_mixture_same_family():
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    rng = np.random.default_rng(1)
    logits, mu, log_sigma = _random_mixture(rng, (3, 7, 6), 5)
    x = rng.normal(size=(3, 7, 6)).astype(np.float32) * 2
    ours = mixture.log_prob(tf.constant(x), tf.constant(logits), tf.constant(mu), tf.constant(log_sigma)).numpy()

    reference = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=tfd.Normal(loc=mu, scale=np.exp(log_sigma)),
    ).log_prob(x).numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)

    b, t, d = 1, 4, 2
    pi = np.exp(logits[b, t, d]) / np.exp(logits[b, t, d]).sum()
    sigma = np.exp(log_sigma[b, t, d])
    density = sum(pi[k] * np.exp(-0.5 * ((x[b, t, d] - mu[b, t, d, k]) / sigma[k]) ** 2) / (sigma[k] * math.sqrt(2 * math.pi)) for k in range(5))
    assert ours[b, t, d] == pytest.approx(math.log(density), rel=1e-5)


def test_mixture_log_prob_stays_finite_far_in_the_tails():
    logits = tf.constant([[0.0, 0.0]])
    mu = tf.constant([[0.0, 1.0]])
    log_sigma = tf.constant([[-3.0, -3.0]])
    value = mixture.log_prob(tf.constant([200.0]), logits, mu, log_sigma).numpy()
    # A naive log(sum(pi * exp(...))) underflows to log(0) = -inf here.
    assert np.isfinite(value).all() and value[0] < -1e5


def test_mixture_nll_averages_only_the_steps_with_a_next_latent():
    rng = np.random.default_rng(2)
    logits, mu, log_sigma = _random_mixture(rng, (2, 3, 4), 5)
    z_next = rng.normal(size=(2, 3, 4)).astype(np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    mean, per_dimension = losses.mixture_nll(*(tf.constant(a) for a in (z_next, logits, mu, log_sigma, mask)))
    log_p = mixture.log_prob(*(tf.constant(a) for a in (z_next, logits, mu, log_sigma))).numpy()
    expected = np.array([-np.mean([log_p[b, t, d] for b in range(2) for t in range(3) if mask[b, t]]) for d in range(4)])
    np.testing.assert_allclose(per_dimension.numpy(), expected, rtol=1e-5)
    assert float(mean) == pytest.approx(expected.mean(), rel=1e-5)


def test_done_loss_is_the_weighted_bce_over_valid_steps():
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 1.5, 4.0]], np.float32)
    done = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
    valid = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    weight = 10.0
    numerator = denominator = 0.0
    for b in range(2):
        for t in range(3):
            if not valid[b, t]:
                continue
            p = 1 / (1 + math.exp(-logits[b, t]))
            bce = -(done[b, t] * math.log(p) + (1 - done[b, t]) * math.log(1 - p))
            w = weight if done[b, t] else 1.0
            numerator += w * bce
            denominator += w
    value = losses.done_loss(tf.constant(logits), tf.constant(done), tf.constant(valid), weight)
    assert float(value) == pytest.approx(numerator / denominator, rel=1e-5)


def test_roc_auc_counts_ordered_pairs_with_ties_as_half():
    rng = np.random.default_rng(3)
    scores = np.round(rng.uniform(size=200), 1)  # many ties
    labels = rng.uniform(size=200) < 0.3
    positives, negatives = scores[labels], scores[~labels]
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in positives for n in negatives]
    assert losses.roc_auc(scores, labels) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert losses.roc_auc(np.array([0.9, 0.1]), np.array([True, False])) == 1.0
    assert math.isnan(losses.roc_auc(np.array([0.3, 0.2]), np.array([False, False])))


def test_precision_and_recall_at_one_half():
    precision, recall = losses.precision_recall(np.array([0.9, 0.8, 0.2, 0.6, 0.1]), np.array([1, 0, 1, 1, 0]))
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 3)


def test_temperature_near_zero_collapses_to_the_most_likely_components_mean():
    rng = np.random.default_rng(4)
    logits, mu, log_sigma = _random_mixture(rng, (6,), 5)
    draws = [
        mixture.sample(tf.constant(logits), tf.constant(mu), tf.constant(log_sigma), 1e-6, tf.constant([7, i], tf.int64)).numpy()
        for i in range(5)
    ]
    expected = mu[np.arange(6), logits.argmax(-1)]
    for draw in draws:
        np.testing.assert_allclose(draw, expected, atol=1e-2)


def test_temperature_one_samples_the_mixture_itself():
    rng = np.random.default_rng(5)
    logits, mu, log_sigma = _random_mixture(rng, (3,), 5)
    n = 200_000
    tiled = [tf.constant(np.broadcast_to(a, (n, *a.shape)).copy()) for a in (logits, mu, log_sigma)]
    draws = mixture.sample(*tiled, 1.0, tf.constant([1, 2], tf.int64)).numpy()  # [n, 3]
    pi = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    mean = (pi * mu).sum(-1)
    variance = (pi * (np.exp(2 * log_sigma) + mu**2)).sum(-1) - mean**2
    assert (np.abs(draws.mean(0) - mean) < 4 * np.sqrt(variance / n)).all(), (draws.mean(0), mean)
    np.testing.assert_allclose(draws.var(0), variance, rtol=0.03)
    tf_mean, tf_variance = mixture.moments(*(tf.constant(a) for a in (logits, mu, log_sigma)))
    np.testing.assert_allclose(tf_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(tf_variance.numpy(), variance, rtol=1e-4)


def test_temperature_scales_logits_and_variance_as_specified():
    logits, log_sigma = tf.constant([1.0, 3.0]), tf.constant([0.0, -1.0])
    tempered_logits, tempered_log_sigma = mixture.temper(logits, log_sigma, 2.0)
    np.testing.assert_allclose(tempered_logits.numpy(), [0.5, 1.5])
    np.testing.assert_allclose(np.exp(tempered_log_sigma.numpy()), np.exp([0.0, -1.0]) * math.sqrt(2.0), rtol=1e-6)


def test_sampling_is_a_function_of_the_seed():
    rng = np.random.default_rng(6)
    params = [tf.constant(a) for a in _random_mixture(rng, (4, 8), 5)]
    first = mixture.sample(*params, 1.15, tf.constant([3, 9], tf.int64)).numpy()
    again = mixture.sample(*params, 1.15, tf.constant([3, 9], tf.int64)).numpy()
    other = mixture.sample(*params, 1.15, tf.constant([3, 10], tf.int64)).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_a_weighted_done_head_is_calibrated_by_taking_the_log_weight_off_its_logit():
    """Deaths weighted w: the loss is minimised at logit = log(w p / (1 - p)); the MDN-RNN removes log w again."""
    from wm.worldmodels.losses import done_loss
    from wm.worldmodels.mdnrnn import build_mdnrnn

    labels = tf.constant([[1.0] * 3 + [0.0] * 97])  # a death rate p = 0.03
    logit = tf.Variable(0.0)

    @tf.function
    def fit():
        for _ in tf.range(3000):  # plain gradient descent on the one logit
            with tf.GradientTape() as tape:
                loss = done_loss(tf.fill([1, 100], logit), labels, tf.ones([1, 100]), positive_weight=10.0)
            logit.assign_sub(1.0 * tape.gradient(loss, logit))

    fit()
    assert float(logit) == pytest.approx(np.log(10 * 0.03 / 0.97), abs=1e-3)
    model = build_mdnrnn(latent_dim=2, action_dim=3, units=4, done_head=True, done_weight=10.0)
    assert float(model.calibrated_done_probability(tf.constant(float(logit)))) == pytest.approx(0.03, abs=1e-4)


def test_the_one_guard_names_the_loss_and_only_folders_that_exist(tmp_path):
    from wm.errors import TrainingDiverged
    from wm.training import check_finite

    values = {"loss": np.float32(1.0), "kl": np.array([0.5, 0.2]), "finite": True}
    check_finite(values, name="s", where="step 1", checkpoint_folder=tmp_path / "none", advice="a")
    assert "finite" not in values
    with pytest.raises(TrainingDiverged) as caught:
        check_finite({"loss": np.nan, "kl": np.array([0.1, np.inf]), "nll": 1.0}, name="train-x", where="epoch 2, batch 3",
                     checkpoint_folder=tmp_path / "missing.ckpt", advice="lower it")
    assert str(caught.value) == ("train-x: loss, kl became NaN or infinite at epoch 2, batch 3; training stopped and no checkpoint "
                                 "had been written yet (lower it).")
    (tmp_path / "x.ckpt").mkdir()
    with pytest.raises(TrainingDiverged, match=r"a gradient became NaN .* kept in .*x\.ckpt"):
        check_finite({"loss": 1.0, "finite": np.bool_(False)}, name="s", where="w", checkpoint_folder=tmp_path / "x.ckpt", advice="a")
