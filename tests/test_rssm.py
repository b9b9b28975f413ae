"""The RSSM: shapes through observation and imagination, resets at episode starts, seeded determinism."""

import numpy as np
import pytest

from wm.tfsetup import tensorflow

tf = tensorflow()

from wm.dreamer.networks import Decoder, Encoder  # noqa: E402
from wm.dreamer.rssm import RSSM  # noqa: E402

SEED = tf.constant([3, 4])


def _rssm(latent):
    return RSSM(latent, deter=16, stoch=4 if latent == "categorical" else 6, classes=5, hidden=12)


def _sequences(batch=3, time=7, embed=10, actions=2):
    rng = np.random.default_rng(0)
    return (
        tf.constant(rng.normal(size=(batch, time, embed)), tf.float32),
        tf.constant(rng.normal(size=(batch, time, actions)), tf.float32),
    )


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_shapes_through_observation_and_imagination(latent):
    rssm = _rssm(latent)
    embed, action = _sequences()
    is_first = tf.zeros([3, 7], tf.bool)
    posterior, prior = rssm.observe(embed, action, is_first, SEED)
    assert posterior["deter"].shape == (3, 7, 16) and prior["stoch"].shape == (3, 7, rssm.stoch_size)
    assert rssm.features(posterior).shape == (3, 7, rssm.feature_size)
    np.testing.assert_array_equal(posterior["deter"].numpy(), prior["deter"].numpy())  # the same h_t

    start = {name: tf.reshape(value, [21] + value.shape[2:].as_list()) for name, value in posterior.items()}
    policy = lambda feat, seed: tf.tanh(tf.reduce_sum(feat, -1, keepdims=True)) * tf.ones([1, 2])  # noqa: E731
    states, actions = rssm.imagine(policy, start, horizon=15, seed=SEED)
    assert states["deter"].shape == (16, 21, 16) and states["stoch"].shape == (16, 21, rssm.stoch_size)
    assert actions.shape == (15, 21, 2)
    np.testing.assert_array_equal(states["deter"][0].numpy(), start["deter"].numpy())
    if latent == "categorical":
        stoch = states["stoch"].numpy().reshape(16, 21, 4, 5)
        np.testing.assert_allclose(stoch.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_an_episode_start_resets_the_state(latent):
    rssm = _rssm(latent)
    embed, action = _sequences(batch=1, time=5)
    is_first = tf.constant([[True, False, False, True, False]])
    posterior, _ = rssm.observe(embed, action, is_first, SEED)
    # From step 3 on, the sequence is a new episode: the same as observing steps 3.. from a zero state
    # with the same per-step seeds (step t folds t into the seed).
    fresh = rssm.initial(1)
    for t in (3, 4):
        previous_action = action[:, t] * (0.0 if t == 3 else 1.0)
        step_post, _ = rssm.obs_step(fresh, previous_action, embed[:, t], tf.random.experimental.stateless_fold_in(SEED, t))
        np.testing.assert_allclose(posterior["deter"][:, t].numpy(), step_post["deter"].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(posterior["stoch"][:, t].numpy(), step_post["stoch"].numpy(), rtol=1e-5, atol=1e-6)
        fresh = step_post


def test_same_seed_same_states_other_seed_other_states():
    rssm = _rssm("categorical")
    embed, action = _sequences()
    is_first = tf.zeros([3, 7], tf.bool)
    a, _ = rssm.observe(embed, action, is_first, SEED)
    b, _ = rssm.observe(embed, action, is_first, SEED)
    c, _ = rssm.observe(embed, action, is_first, tf.constant([9, 9]))
    np.testing.assert_array_equal(a["stoch"].numpy(), b["stoch"].numpy())
    assert not np.array_equal(a["stoch"].numpy(), c["stoch"].numpy())


@pytest.mark.parametrize("image", [True, False])
def test_encoder_and_decoder_shapes(image):
    observation = tf.zeros([2, 64, 64, 3], tf.uint8) if image else tf.zeros([2, 4])
    encoder = Encoder(image, depth=4, units=8, layers=2)
    decoder = Decoder(image, depth=4, units=8, layers=2, observation_dim=4)
    embed = encoder(observation)
    assert embed.shape == ((2, 2 * 2 * 32) if image else (2, 8))
    feat = tf.zeros([2, 11])
    assert decoder(feat).shape == ((2, 64, 64, 3) if image else (2, 4))
    assert decoder.log_likelihood(feat, observation).shape == (2,)
