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


# ---- DreamerV3's robustness pieces ----


def test_symlog_and_symexp_are_inverse_and_match_their_formulas():
    x = np.array([-1e6, -20.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 3.0, 1e6])
    np.testing.assert_allclose(distributions.symlog(tf.constant(x)).numpy(), np.sign(x) * np.log(1 + np.abs(x)), rtol=1e-12)
    np.testing.assert_allclose(distributions.symexp(distributions.symlog(tf.constant(x))).numpy(), x, rtol=1e-9)
    np.testing.assert_allclose(distributions.symlog(distributions.symexp(tf.constant(x[2:-2]))).numpy(), x[2:-2], rtol=1e-9, atol=1e-15)


def test_twohot_bins_are_symmetric_symexp_spaced_with_a_zero_bin():
    bins = distributions.twohot_bins(255).numpy()
    assert bins.shape == (255,) and bins[127] == 0.0 and np.all(np.diff(bins) > 0)
    np.testing.assert_allclose(bins, -bins[::-1])
    assert bins[-1] == pytest.approx(np.expm1(20.0), rel=1e-6)
    np.testing.assert_allclose(np.log1p(np.abs(bins)) * np.sign(bins), np.linspace(-20, 20, 255), atol=2e-6)


@pytest.mark.parametrize("count", [255, 2, 6])
def test_twohot_encoding_puts_weight_on_the_two_neighbouring_bins_and_keeps_the_value(count):
    bins = distributions.twohot_bins(count)
    b = bins.numpy().astype(np.float64)
    values = np.array([0.0, 0.3, -2.7, 17.0, 1234.5, -0.01, b[0], b[-1], 1e12, -1e12], np.float32)
    encoded = distributions.twohot_encode(tf.constant(values), bins).numpy()
    assert encoded.shape == (len(values), count)
    np.testing.assert_allclose(encoded.sum(-1), 1.0, rtol=1e-6)
    assert np.all((encoded > 0).sum(-1) <= 2)
    for value, row in zip(values, encoded):
        expected = np.zeros(count)
        clipped = float(np.clip(value, b[0], b[-1]))
        k = min(max(np.searchsorted(b, clipped, side="right"), 1), count - 1)  # the bin above
        w = (clipped - b[k - 1]) / (b[k] - b[k - 1])
        expected[k - 1], expected[k] = 1 - w, w
        np.testing.assert_allclose(row, expected, atol=2e-5)
        # The expectation is the value, up to float32 weights times the bins' spacing.
        assert (row * b).sum() == pytest.approx(clipped, rel=1e-4, abs=1e-4 + 2e-6 * (b[k] - b[k - 1]))


def test_twohot_mean_is_the_expectation_and_exactly_zero_for_uniform_probabilities():
    bins = distributions.twohot_bins(255)
    assert distributions.twohot_mean(tf.zeros([3, 255]), bins).numpy().tolist() == [0.0, 0.0, 0.0]
    logits = np.random.default_rng(0).normal(size=(4, 255)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = (probs.astype(np.float64) * bins.numpy()).sum(-1)
    np.testing.assert_allclose(distributions.twohot_mean(tf.constant(logits), bins).numpy(), expected, rtol=1e-4)
    # Logits that are the log of a two-hot encoding give back the encoded value.
    target = tf.constant([5.0, -40.0, 0.25])
    encoded = distributions.twohot_encode(target, bins)
    np.testing.assert_allclose(distributions.twohot_mean(tf.math.log(encoded + 1e-30), bins).numpy(), target.numpy(), rtol=1e-4)


def test_twohot_loss_is_the_cross_entropy_with_the_encoding():
    bins = distributions.twohot_bins(7)
    logits = tf.Variable(np.random.default_rng(1).normal(size=(3, 7)).astype(np.float32))
    target = tf.constant([0.5, -3.0, 100.0])
    log_probs = tf.nn.log_softmax(logits).numpy()
    expected = -(distributions.twohot_encode(target, bins).numpy() * log_probs).sum(-1)
    with tf.GradientTape() as tape:
        loss = distributions.twohot_loss(logits, target, bins)
        total = tf.reduce_sum(loss)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)
    # Its gradient is softmax - twohot: zero once the head predicts the encoding.
    np.testing.assert_allclose(tape.gradient(total, logits).numpy(),
                               np.exp(log_probs) - distributions.twohot_encode(target, bins).numpy(), atol=1e-6)


def test_unimix_mixes_one_percent_of_the_uniform_distribution():
    logits = np.array([[10.0, 0.0, -10.0, -30.0]])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    mixed = np.exp(distributions.unimix_logits(tf.constant(logits), 0.01).numpy())
    np.testing.assert_allclose(mixed, 0.99 * probs + 0.01 / 4, rtol=1e-9)
    assert mixed.min() >= 0.0025 - 1e-12
    assert distributions.unimix_logits(tf.constant(logits), 0.0).numpy().tolist() == logits.tolist()
    actor = distributions.action_distribution("categorical", tf.constant(logits), unimix=0.01)
    np.testing.assert_allclose(np.exp(actor.log_prob(tf.constant([[0.0, 0.0, 0.0, 1.0]], tf.float64)).numpy()), 0.99 * probs[0, 3] + 0.0025, rtol=1e-9)


def test_free_bits_floor_each_steps_kl_and_scale_the_two_directions():
    rng = np.random.default_rng(3)
    q, p = tf.Variable(rng.normal(size=(6, 4, 5))), tf.Variable(rng.normal(size=(6, 4, 5)))
    free = float(np.median(distributions.categorical_kl(q, p).numpy()))  # half the steps under the floor
    with tf.GradientTape(persistent=True) as tape:
        got = losses.kl_free_bits(q, p, "categorical", 0.5, 0.1, free_nats=free)
        per_step = distributions.categorical_kl(q, p)  # [6]
        above_floor = tf.reduce_mean(per_step * tf.cast(per_step > free, tf.float64))
    kl = per_step.numpy()
    assert got["loss"].numpy() == pytest.approx(0.6 * np.maximum(kl, free).mean(), rel=1e-12)
    assert got["kl"].numpy() == pytest.approx(kl.mean(), rel=1e-12)
    # Gradients: steps under the floor give none; the prior gets 0.5, the posterior 0.1 of the plain KL's.
    full_q, full_p = tape.gradient(above_floor, q).numpy(), tape.gradient(above_floor, p).numpy()
    np.testing.assert_allclose(tape.gradient(got["loss"], q).numpy(), 0.1 * full_q, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(tape.gradient(got["loss"], p).numpy(), 0.5 * full_p, rtol=1e-9, atol=1e-15)


def test_percentile_matches_numpy():
    x = np.random.default_rng(4).normal(size=(15, 37)) * 10
    for q in (0.0, 5.0, 50.0, 95.0, 100.0, 33.3):
        assert losses.percentile(tf.constant(x), q).numpy() == pytest.approx(np.percentile(x, q), rel=1e-12)


def test_return_normalisation_on_a_known_sequence():
    # Returns 0, 1, ..., 100: P5 = 5 and P95 = 95; from (0, 0) with rate 0.5: low 2.5, high 47.5.
    returns = tf.constant(np.arange(101, dtype=np.float64).reshape(101, 1))
    low, high = losses.update_return_range(tf.constant(0.0, tf.float64), tf.constant(0.0, tf.float64), returns, 0.5, 5.0, 95.0)
    assert (low.numpy(), high.numpy()) == (pytest.approx(2.5), pytest.approx(47.5))
    assert losses.return_scale(low, high).numpy() == pytest.approx(45.0)
    # Ten more updates at rate 0.01 from there: an EMA towards (5, 95), by hand.
    lo, hi = 2.5, 47.5
    for _ in range(10):
        low, high = losses.update_return_range(low, high, returns, 0.01, 5.0, 95.0)
        lo, hi = 0.99 * lo + 0.01 * 5, 0.99 * hi + 0.01 * 95
    assert (low.numpy(), high.numpy()) == (pytest.approx(lo), pytest.approx(hi))
    # A spread under 1 is not blown up: the scale is floored at 1.
    assert losses.return_scale(tf.constant(0.2), tf.constant(0.5)).numpy() == 1.0


def test_actor_loss_with_a_return_scale_divides_the_advantage_and_the_returns():
    log_prob, entropy = tf.constant([[-0.5]]), tf.constant([[0.7]])
    returns, baseline, weights = tf.constant([[3.0]]), tf.constant([[2.5]]), tf.constant([[1.0]])
    scaled = losses.actor_loss(log_prob, entropy, returns, baseline, weights, rho=0.25, eta=0.1, scale=tf.constant(4.0))
    # 0.25 * -0.5 * 0.5 / 4 + 0.75 * 3 / 4 + 0.1 * 0.7
    assert scaled["loss"].numpy() == pytest.approx(-(0.25 * -0.5 * 0.5 / 4 + 0.75 * 3 / 4 + 0.07))


def test_critic_losses_with_a_slow_critic_regulariser():
    value, returns, slow = tf.constant([[1.0], [2.0]]), tf.constant([[3.0], [4.0]]), tf.constant([[0.0], [2.5]])
    weights = tf.constant([[1.0], [0.5]])
    got = losses.critic_loss(value, returns, weights, slow_value=slow, slow_reg=2.0).numpy()
    expected = np.mean([1.0 * (0.5 * 4 + 2.0 * 0.5 * 1), 0.5 * (0.5 * 4 + 2.0 * 0.5 * 0.25)])
    assert got == pytest.approx(expected)
    bins = distributions.twohot_bins(9)
    logits = tf.constant(np.random.default_rng(5).normal(size=(2, 1, 9)).astype(np.float32))
    ce = lambda target: distributions.twohot_loss(logits, target, bins).numpy()  # noqa: E731
    twohot = losses.twohot_critic_loss(logits, returns, weights, bins, slow_value=slow, slow_reg=2.0).numpy()
    assert twohot == pytest.approx(np.mean(weights.numpy() * (ce(returns) + 2.0 * ce(slow))), rel=1e-6)


def test_replay_lambda_returns_match_a_plain_loop_over_each_window():
    rng = np.random.default_rng(6)
    batch, length, gamma, lam = 5, 9, 0.97, 0.8
    reward, boot = rng.normal(size=(batch, length)), rng.normal(size=(batch, length))
    terminated = np.zeros((batch, length), bool)
    has_next = np.ones((batch, length), bool)
    has_next[:, -1] = False
    terminated[0, 3], has_next[0, 3] = True, False  # an episode ends by termination, the next one starts at 4
    has_next[1, 5] = False  # a truncated episode's last step
    terminated[2, -1] = True  # termination at the window's end
    returns, weights = losses.replay_lambda_returns(*map(tf.constant, (reward, terminated, has_next, boot)), gamma, lam)
    expected = np.zeros((batch, length))
    for b in range(batch):
        for t in range(length - 1, -1, -1):
            if has_next[b, t]:
                expected[b, t] = reward[b, t] + gamma * (1 - terminated[b, t]) * ((1 - lam) * boot[b, t + 1] + lam * expected[b, t + 1])
            elif terminated[b, t]:
                expected[b, t] = reward[b, t]
            else:
                expected[b, t] = boot[b, t]
    np.testing.assert_allclose(returns.numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(weights.numpy(), has_next | terminated)
    # lambda 1 on a window without ends is the discounted sum of its rewards bootstrapped from the last imagined return.
    returns, _ = losses.replay_lambda_returns(*map(tf.constant, (reward[3:4], terminated[3:4], has_next[3:4], boot[3:4])), gamma, 1.0)
    direct = sum(gamma**i * reward[3, i] for i in range(length - 1)) + gamma ** (length - 1) * boot[3, -1]
    assert returns.numpy()[0, 0] == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("weight", [1.0, 10.0])
def test_continue_loss_weighs_the_terminations(weight):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 6)).astype(np.float32)
    terminated = rng.random((4, 6)) < 0.3
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    direct = 0.0
    for logit_p, ended in zip(p.ravel(), terminated.ravel()):
        direct += weight * -np.log(1.0 - logit_p) if ended else -np.log(logit_p)
    direct /= logits.size
    got = float(losses.continue_loss(tf.constant(logits), tf.constant(terminated), weight))
    assert got == pytest.approx(direct, rel=1e-5)
