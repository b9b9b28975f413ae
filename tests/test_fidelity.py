"""The fidelity measures against direct computations: the two-sample KS test, the per-policy summary,
and open-loop prediction (horizon 1 equals the one-step metric; longer horizons equal a step-by-step
reference; batching does not change the result)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wm.worldmodels.fidelity import HeldOutEpisode, OpenLoop, PolicyComparison, kolmogorov_survival, ks_two_sample, open_loop


def test_kolmogorov_survival_at_the_textbook_critical_values():
    # The classic asymptotic critical values of the KS test: 1.36 at 5 %, 1.63 at 1 %.
    assert kolmogorov_survival(1.3581) == pytest.approx(0.05, abs=5e-4)
    assert kolmogorov_survival(1.6276) == pytest.approx(0.01, abs=2e-4)
    assert kolmogorov_survival(0.0) == 1.0 and kolmogorov_survival(5.0) < 1e-20


def test_ks_statistic_is_the_largest_gap_between_the_empirical_cdfs():
    generator = np.random.default_rng(0)
    a, b = generator.integers(0, 30, 40), generator.integers(5, 40, 25)  # ties inside and across samples
    brute = max(abs(np.mean(a <= x) - np.mean(b <= x)) for x in np.concatenate([a, b]))
    statistic, _ = ks_two_sample(a, b)
    assert statistic == pytest.approx(brute)
    assert ks_two_sample([1, 2, 3], [1, 2, 3])[0] == 0.0
    assert ks_two_sample([1, 2], [5, 6]) == (1.0, pytest.approx(kolmogorov_survival(1.0)))
    assert all(math.isnan(v) for v in ks_two_sample([], [1.0]))


def test_ks_p_value_agrees_with_a_permutation_test():
    generator = np.random.default_rng(1)
    a, b = generator.normal(0.0, 1.0, 80), generator.normal(0.35, 1.0, 80)
    statistic, p_value = ks_two_sample(a, b)
    pooled = np.concatenate([a, b])
    exceed = 0
    for _ in range(2000):
        shuffled = generator.permutation(pooled)
        exceed += ks_two_sample(shuffled[:80], shuffled[80:])[0] >= statistic - 1e-12
    assert p_value == pytest.approx(exceed / 2000, abs=0.04)


def test_policy_summary_against_hand_computed_values():
    comparison = PolicyComparison("left", real_length=np.array([100, 200, 300]), real_return=np.array([1.0, 2.0, 3.0]),
                                  dream_length=np.array([400, 400, 700, 900]), dream_return=np.array([4.0, 4.0, 7.0, 9.0]))
    s = comparison.summary()
    assert s["real_length_mean"] == 200 and s["dream_length_mean"] == 600
    assert s["length_ratio"] == 3.0
    assert s["real_length_std"] == pytest.approx(np.sqrt(20000 / 3))
    assert s["dream_return_mean"] == 6.0 and s["real_return_std"] == pytest.approx(np.sqrt(2 / 3))
    assert s["ks_statistic"] == 1.0  # every dream outlasts every real episode


# --- open-loop prediction -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    from wm.worldmodels.mdnrnn import build_mdnrnn
    from wm.tfsetup import keras

    keras().utils.set_random_seed(3)
    return build_mdnrnn(latent_dim=4, action_dim=3, units=8, num_mixtures=3, done_head=True, done_weight=10.0)


def _episodes(lengths, seed=0):
    generator = np.random.default_rng(seed)
    episodes = []
    for length in lengths:
        done = np.zeros(length, bool)
        done[-1] = True
        episodes.append(HeldOutEpisode(
            z=generator.normal(0, 1, (length, 4)).astype(np.float32),
            action=np.eye(3, dtype=np.float32)[generator.integers(0, 3, length)],
            done=done,
        ))
    return episodes


def test_open_loop_at_horizon_one_is_the_one_step_metric(model):
    from wm.worldmodels import mixture
    from wm.worldmodels.losses import roc_auc

    episodes = _episodes([9, 14, 6, 11])
    result = open_loop(model, episodes, horizon=4, temperature=1.15, seed=0)
    # Direct: every episode read whole from a zero state, each step scored on the real next z and done.
    nll_sum, transitions, scores, labels = 0.0, 0, [], []
    for episode in episodes:
        heads, _ = model(episode.z[None], episode.action[None])
        log_p = mixture.log_prob(episode.z[None, 1:], heads["logits"][:, :-1], heads["mu"][:, :-1], heads["log_sigma"][:, :-1]).numpy()
        nll_sum += -log_p.mean(axis=-1).sum()
        transitions += len(episode.z) - 1
        scores.append(1 / (1 + np.exp(-heads["done_logit"].numpy()[0])))
        labels.append(episode.done)
    one = result.at(1)
    assert one["transitions"] == transitions and one["deaths"] == 4
    assert one["nll"] == pytest.approx(nll_sum / transitions, rel=1e-5)
    assert one["done_auc"] == pytest.approx(roc_auc(np.concatenate(scores), np.concatenate(labels)), abs=1e-6)
    # Expected deaths: the head's probabilities with the death weight 10 taken out of the odds, summed.
    logits = np.log(np.concatenate(scores) / (1 - np.concatenate(scores)))
    assert one["predicted_deaths"] == pytest.approx(np.sum(1 / (1 + 10 * np.exp(-logits))), rel=1e-4)
    # Copy baseline at horizon 1: N(z_t, s^2) with s^2 the mean squared one-step delta per dimension.
    deltas = np.concatenate([np.square(e.z[1:] - e.z[:-1]) for e in episodes])
    assert one["copy_nll"] == pytest.approx(np.mean(0.5 * np.log(2 * np.pi * np.e * deltas.mean(axis=0))), rel=1e-5)
    # Pairs scored per horizon: (T - j) targets and (T - j + 1) done labels per episode.
    assert result.transitions.tolist() == [sum(max(0, len(e.z) - j) for e in episodes) for j in range(1, 5)]
    assert result.done_steps.tolist() == [sum(max(0, len(e.z) - j + 1) for e in episodes) for j in range(1, 5)]


def test_open_loop_rows_follow_a_step_by_step_reference(model):
    from wm import rng
    from wm.worldmodels import mixture
    from wm.worldmodels.dream.batched import STREAM_COMPONENT, STREAM_NOISE
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    episode = _episodes([20], seed=4)[0]
    k, horizon, tau = 7, 5, 1.3
    scorer = OpenLoop(model, [episode], horizon, tau, seed=5)
    nll, _ = scorer.score(scorer.gather([(0, k)]))
    # Reference: read z_0 .. z_{k-1} teacher-forced, then z_k, then the model's own draws, one call per step.
    _, state = model(episode.z[None, :k], episode.action[None, :k])
    key = rng.numpy_fold_in(rng.numpy_fold_in(rng.key_from_seed(np.random.SeedSequence(5))[None], [0]), [k])
    z = tf.constant(episode.z[k][None])
    for j in range(horizon):
        heads, state = model.step(z, tf.constant(episode.action[k + j][None]), state)
        expected = -mixture.log_prob(episode.z[None, k + j + 1], heads["logits"], heads["mu"], heads["log_sigma"]).numpy().mean()
        assert nll[0, j] == pytest.approx(expected, rel=1e-4), j
        uniform = rng.uniform(tf.constant(key), j, STREAM_COMPONENT, (4, 3))
        noise = rng.normal(tf.constant(key), j, STREAM_NOISE, (4,))
        z = mixture.sample_from_noise(heads["logits"], heads["mu"], heads["log_sigma"], tau, uniform, noise)


def test_open_loop_does_not_depend_on_batching(model):
    episodes = _episodes([12, 7, 15], seed=2)
    whole = open_loop(model, episodes, horizon=6, temperature=1.0, seed=9)
    pieces = open_loop(model, episodes, horizon=6, temperature=1.0, seed=9, rows_per_batch=5)
    np.testing.assert_allclose(whole.nll, pieces.nll, rtol=1e-5)
    np.testing.assert_allclose(whole.done_auc, pieces.done_auc, rtol=1e-6)
    other_seed = open_loop(model, episodes, horizon=6, temperature=1.0, seed=10)
    assert other_seed.nll[0] == pytest.approx(whole.nll[0], rel=1e-6)  # horizon 1 reads only real z
    assert not np.allclose(other_seed.nll[1:], whole.nll[1:])  # later horizons read the model's own draws
