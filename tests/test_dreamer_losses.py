"""The Dreamer objectives against direct, obviously-correct computations."""

import numpy as np
import pytest

from wm.tfsetup import tensorflow

tf = tensorflow()

from wm.dreamer import distributions, losses  # noqa: E402


def _numpy_lambda_returns(reward, value, discount, lam):
    horizon, batch = reward.shape
    returns = np.zeros((horizon, batch))
    for b in range(batch):
        following = value[horizon, b]
        for t in range(horizon - 1, -1, -1):
            following = reward[t, b] + discount[t, b] * ((1 - lam) * value[t + 1, b] + lam * following)
            returns[t, b] = following
    return returns


def test_lambda_returns_match_a_plain_backwards_loop():
    rng = np.random.default_rng(0)
    reward, value = rng.normal(size=(15, 7)), rng.normal(size=(16, 7))
    discount = 0.99 * (rng.random((15, 7)) > 0.1)
    got = losses.lambda_returns(tf.constant(reward), tf.constant(value), tf.constant(discount), 0.95).numpy()
    np.testing.assert_allclose(got, _numpy_lambda_returns(reward, value, discount, 0.95), rtol=1e-12)


def test_lambda_returns_at_the_ends_of_lambda():
    rng = np.random.default_rng(1)
    reward, value, discount = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), np.full((4, 3), 0.9)
    one_step = losses.lambda_returns(tf.constant(reward), tf.constant(value), tf.constant(discount), 0.0).numpy()
    np.testing.assert_allclose(one_step, reward + 0.9 * value[1:], rtol=1e-12)
    monte_carlo = losses.lambda_returns(tf.constant(reward), tf.constant(value), tf.constant(discount), 1.0).numpy()
    expected = sum(0.9**i * reward[i] for i in range(4)) + 0.9**4 * value[4]
    np.testing.assert_allclose(monte_carlo[0], expected, rtol=1e-12)


def test_trajectory_weights_are_the_products_of_earlier_discounts():
    discount = np.array([[0.5], [0.9], [0.0], [0.8]])
    np.testing.assert_allclose(losses.trajectory_weights(tf.constant(discount)).numpy()[:, 0], [1.0, 0.5, 0.45, 0.0])


def test_categorical_and_gaussian_kl_match_their_formulas():
    rng = np.random.default_rng(2)
    q_logits, p_logits = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    q = np.exp(q_logits) / np.exp(q_logits).sum(-1, keepdims=True)
    p = np.exp(p_logits) / np.exp(p_logits).sum(-1, keepdims=True)
    expected = (q * np.log(q / p)).sum(axis=(-2, -1))
    np.testing.assert_allclose(distributions.categorical_kl(tf.constant(q_logits), tf.constant(p_logits)).numpy(), expected, rtol=1e-10)

    qm, pm = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    qs, ps = rng.uniform(0.2, 2, (3, 6)), rng.uniform(0.2, 2, (3, 6))
    expected = (np.log(ps / qs) + (qs**2 + (qm - pm) ** 2) / (2 * ps**2) - 0.5).sum(-1)
    got = distributions.gaussian_kl(*map(tf.constant, (qm, qs, pm, ps))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def _kl_gradients(latent, alpha, free_nats, seed=3):
    rng = np.random.default_rng(seed)
    if latent == "categorical":
        q, p = tf.Variable(rng.normal(size=(8, 4, 5))), tf.Variable(rng.normal(size=(8, 4, 5)))
        posterior, prior, variables = q, p, [q, p]
    else:
        qm, qs = tf.Variable(rng.normal(size=(8, 6))), tf.Variable(rng.uniform(0.5, 2, (8, 6)))
        pm, ps = tf.Variable(rng.normal(size=(8, 6))), tf.Variable(rng.uniform(0.5, 2, (8, 6)))
        posterior, prior, variables = (qm, qs), (pm, ps), [qm, qs, pm, ps]
    with tf.GradientTape(persistent=True) as tape:
        balanced = losses.kl_balance(posterior, prior, latent, alpha, free_nats)
        if latent == "categorical":
            plain = tf.reduce_mean(distributions.categorical_kl(posterior, prior))
        else:
            plain = tf.reduce_mean(distributions.gaussian_kl(*posterior, *prior))
    return balanced, plain, tape.gradient(balanced["loss"], variables), tape.gradient(plain, variables), len(variables) // 2


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_kl_balancing_splits_the_gradient_alpha_to_the_prior_and_the_rest_to_the_posterior(latent):
    balanced, plain, got, full, n_posterior = _kl_gradients(latent, alpha=0.8, free_nats=0.0)
    # Both terms have the value of KL(q || p); only their gradients differ.
    np.testing.assert_allclose(balanced["loss"].numpy(), plain.numpy(), rtol=1e-12)
    np.testing.assert_allclose(balanced["kl"].numpy(), plain.numpy(), rtol=1e-12)
    for g, f in zip(got[:n_posterior], full[:n_posterior]):
        np.testing.assert_allclose(g.numpy(), 0.2 * f.numpy(), rtol=1e-9, atol=1e-15)
    for g, f in zip(got[n_posterior:], full[n_posterior:]):
        np.testing.assert_allclose(g.numpy(), 0.8 * f.numpy(), rtol=1e-9, atol=1e-15)


def test_free_nats_floor_the_kl_and_stop_its_gradient():
    balanced, plain, got, _, _ = _kl_gradients("categorical", alpha=0.8, free_nats=1e6)
    assert balanced["loss"].numpy() == pytest.approx(1e6)
    assert all(g is None or np.all(g.numpy() == 0) for g in got)


def test_straight_through_samples_are_one_hot_with_the_gradient_of_the_probabilities():
    logits = tf.Variable(np.random.default_rng(4).normal(size=(6, 32, 32)).astype(np.float32))
    weights = tf.constant(np.random.default_rng(5).normal(size=(6, 32, 32)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        sample = distributions.straight_through_sample(logits, seed=tf.constant([1, 2]))
        through_sample = tf.reduce_sum(sample * weights)
        through_probs = tf.reduce_sum(tf.nn.softmax(logits) * weights)
    values = sample.numpy()
    assert set(np.unique(np.round(values, 6))) <= {0.0, 1.0}
    np.testing.assert_allclose(values.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(through_sample, logits).numpy(), tape.gradient(through_probs, logits).numpy(), rtol=1e-5, atol=1e-7)
    again = distributions.straight_through_sample(logits, seed=tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(np.round(values), np.round(again))


def test_critic_and_actor_losses_on_a_hand_made_trajectory():
    # Two imagined steps of one trajectory, the second after a predicted end (discount 0).
    value = tf.Variable([[1.0], [2.0]])  # v(s_0), v(s_1) from the trained critic
    returns = tf.Variable([[3.0], [4.0]])  # V_0, V_1
    discount = tf.constant([[0.0], [0.9]])  # gamma_0 = 0: s_1 lies after the end, so w_1 = 0
    weights = losses.trajectory_weights(discount)
    with tf.GradientTape() as tape:
        critic = losses.critic_loss(value, returns, weights)
    # mean of w * (v - V)^2 / 2 = (1 * 4 / 2 + 0 * 4 / 2) / 2 = 1
    assert critic.numpy() == pytest.approx(1.0)
    np.testing.assert_allclose(tape.gradient(critic, value).numpy(), [[-1.0], [0.0]])  # (v - V) w / 2 steps

    log_prob = tf.Variable([[-0.5], [-1.5]])
    entropy = tf.constant([[0.7], [0.2]])
    baseline = tf.constant([[2.5], [1.0]])
    with tf.GradientTape(persistent=True) as tape:
        actor = losses.actor_loss(log_prob, entropy, returns, baseline, weights, rho=0.25, eta=0.1)
    # step 0: 0.25 * -0.5 * (3 - 2.5) + 0.75 * 3 + 0.1 * 0.7 = 2.2575; step 1 has weight 0
    assert actor["loss"].numpy() == pytest.approx(-2.2575 / 2)
    np.testing.assert_allclose(tape.gradient(actor["loss"], log_prob).numpy(), [[-0.25 * 0.5 / 2], [0.0]])
    np.testing.assert_allclose(tape.gradient(actor["loss"], returns).numpy(), [[-0.75 / 2], [0.0]])  # dynamics backprop
    assert tape.gradient(actor["loss"], value) is None


def test_action_distributions():
    categorical = distributions.action_distribution("categorical", tf.constant([[0.0, 1.0, -1.0]]))
    sample = categorical.sample(seed=tf.constant([0, 1])).numpy()
    assert sample.shape == (1, 3) and sample.sum() == pytest.approx(1.0)
    probs = np.exp([0.0, 1.0, -1.0]) / np.exp([0.0, 1.0, -1.0]).sum()
    assert categorical.entropy().numpy()[0] == pytest.approx(-(probs * np.log(probs)).sum(), rel=1e-6)
    assert categorical.log_prob(tf.constant([[0.0, 1.0, 0.0]])).numpy()[0] == pytest.approx(np.log(probs[1]), rel=1e-6)

    bounded = distributions.action_distribution("bounded", tf.zeros([5, 4]))
    values = bounded.sample(seed=tf.constant([0, 1])).numpy()
    assert values.shape == (5, 2) and np.all(np.abs(values) <= 1.0)
    assert bounded.log_prob(tf.constant(values)).shape == (5,)
