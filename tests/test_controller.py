"""Controller math and the dream: counter-based noise, controller layouts and action maps, batched vs
one-at-a-time dreams, the gymnasium dream environment, resumable CMA-ES, GAE and the PPO objective."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wm import rng
from wm.actions import controller_env_action, controller_memory_input
from wm.worldmodels.controller import controller_layout, split_params

DOOM_SPACE = json.dumps({"type": "Discrete", "n": 3, "start": 0})
CAR_SPACE = json.dumps({"type": "Box", "shape": [3], "dtype": "float32", "low": [-1.0, 0.0, 0.0], "high": 1.0})


# --- counter-based random numbers ---------------------------------------------------------------


def test_tensorflow_and_numpy_draws_are_identical():
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    keys = rng.keys_from_seeds(3, [(i,) for i in range(5)])
    counters = np.array([0, 1, 7, 7, 123456], np.uint32)
    for stream, shape in ((0, ()), (3, (4, 5)), (9, (6,))):
        np.testing.assert_array_equal(rng.uniform(tf.constant(keys), tf.constant(counters), stream, shape).numpy(),
                                      rng.numpy_uniform(keys, counters, stream, shape))
        np.testing.assert_allclose(rng.normal(tf.constant(keys), tf.constant(counters), stream, shape).numpy(),
                                   rng.numpy_normal(keys, counters, stream, shape), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(rng.fold_in(tf.constant(keys), tf.constant(counters)).numpy(), rng.numpy_fold_in(keys, counters))


def test_draws_have_the_right_moments_and_differ_between_keys_steps_and_streams():
    keys = rng.keys_from_seeds(0, [(i,) for i in range(2000)])
    u = rng.numpy_uniform(keys, 5, 1, (50,))
    assert 0 < u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    normal = rng.numpy_normal(keys, 5, 1, (50,))
    assert abs(normal.mean()) < 0.01 and abs(normal.std() - 1) < 0.01
    assert abs(np.mean(normal**4) - 3) < 0.1  # Gaussian kurtosis
    # Neighbouring elements, steps, streams and keys are uncorrelated.
    for other in (u[:, 1:], rng.numpy_uniform(keys, 6, 1, (50,))[:, :-1], rng.numpy_uniform(keys, 5, 2, (50,))[:, :-1]):
        assert abs(np.corrcoef(u[:, :-1].ravel(), other.ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.02


def test_a_row_does_not_depend_on_the_rest_of_the_batch():
    keys = rng.keys_from_seeds(1, [(i,) for i in range(10)])
    whole = rng.numpy_uniform(keys, 3, 4, (8,))
    np.testing.assert_array_equal(whole[[7, 2]], rng.numpy_uniform(keys[[7, 2]], 3, 4, (8,)))


# --- the controller -----------------------------------------------------------------------------


def test_parameter_counts_match_the_paper():
    car = controller_layout("carracing", CAR_SPACE, latent_dim=32, units=256)
    doom = controller_layout("doom-takecover", DOOM_SPACE, latent_dim=64, units=512)
    assert (car.features, car.outputs, car.bias, car.num_params) == ("zh", 3, True, 867)
    assert (doom.features, doom.outputs, doom.bias, doom.num_params) == ("zch", 1, False, 1088)
    assert controller_layout("carracing", CAR_SPACE, 32, 256, features="z").num_params == 32 * 3 + 3


def test_flat_parameters_split_into_weights_and_bias():
    car = controller_layout("carracing", CAR_SPACE, latent_dim=2, units=3)
    params = np.arange(car.num_params, dtype=np.float32)
    weights, bias = split_params(car, params)
    assert weights.shape == (5, 3) and weights[1, 0] == 3 and list(bias) == [15, 16, 17]
    x = np.linspace(-1, 1, 5).astype(np.float32)
    np.testing.assert_allclose(np.tanh(x @ weights + bias), np.tanh([sum(x[i] * params[i * 3 + j] for i in range(5)) + params[15 + j] for j in range(3)]), rtol=1e-6)


def test_action_maps_and_their_tensorflow_twins():
    from wm.actions import tf_controller_env_action, tf_controller_memory_input
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    doom = controller_layout("doom-takecover", DOOM_SPACE, 4, 4)
    raw = np.array([[-0.9], [-0.34], [-0.33], [0.0], [0.33], [0.34], [1.0]], np.float32)
    assert [controller_env_action(doom, r) for r in raw] == [0, 0, 1, 1, 1, 2, 2]  # left / nothing / right by thirds
    np.testing.assert_array_equal(tf_controller_env_action(doom, tf.constant(raw)).numpy(), [0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(tf_controller_memory_input(doom, tf_controller_env_action(doom, tf.constant(raw))).numpy(),
                                  np.stack([controller_memory_input(doom, controller_env_action(doom, r)) for r in raw]))
    car = controller_layout("carracing", CAR_SPACE, 4, 4)
    raw = np.array([[-0.5, -1.0, -0.2], [0.3, 0.5, 0.7]], np.float32)
    expected = np.array([[-0.5, 0.0, 0.0], [0.3, 0.75, 0.7]], np.float32)  # steer, (gas + 1) / 2, clip(brake, 0, 1)
    np.testing.assert_allclose(np.stack([controller_env_action(car, r) for r in raw]), expected, atol=1e-6)
    np.testing.assert_allclose(tf_controller_env_action(car, tf.constant(raw)).numpy(), expected, atol=1e-6)


# --- dreams ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(chain):
    from wm.worldmodels.dream.world import load_world_model

    return load_world_model(chain["vae"], chain["mdnrnn"])


def _dream(world, **rules):
    from wm.worldmodels.dream.batched import Dream
    from wm.worldmodels.dream.rules import dream_rules

    settings = {"temperature": 1.15, "max_steps": 30, "reward": "survival", **rules}
    return Dream(world.mdnrnn, world.initial_mu, world.initial_logvar, dream_rules(world.mdnrnn, **settings))


@pytest.mark.parametrize("rules", [{}, {"sample_done": True}, {"reward": "head"}])
def test_the_batched_dream_matches_one_dream_at_a_time(world, rules):
    dream = _dream(world, **rules)
    layout = controller_layout(world.env_id, world.action_space_json, world.latent_dim, world.units)
    params = np.random.default_rng(0).normal(0, 1.0, (5, layout.num_params)).astype(np.float32)
    candidate = np.repeat(np.arange(5), 3)
    keys = rng.keys_from_seeds(0, [(i,) for i in range(15)])
    returns, lengths = dream.run_linear(layout, params, candidate, keys)
    one_returns, one_lengths = dream.run_one_at_a_time(layout, params, candidate, keys)
    np.testing.assert_array_equal(lengths, one_lengths)
    np.testing.assert_allclose(returns, one_returns, rtol=1e-4, atol=1e-4)
    assert len(set(lengths.tolist())) > 1  # dreams end at different steps: dropping finished ones was exercised
    # The same dreams in another batch (other company, other order) give the same results.
    subset = [11, 3, 7]
    sub_returns, sub_lengths = dream.run_linear(layout, params, candidate[subset], keys[subset])
    np.testing.assert_array_equal(sub_lengths, lengths[subset])
    np.testing.assert_allclose(sub_returns, returns[subset], rtol=1e-4, atol=1e-4)


def test_survival_reward_is_the_dream_length_and_the_cap_holds(world):
    dream = _dream(world, done_threshold=0.999)  # the tiny death head rarely fires: most dreams hit the cap
    layout = controller_layout(world.env_id, world.action_space_json, world.latent_dim, world.units)
    keys = rng.keys_from_seeds(2, [(i,) for i in range(8)])
    returns, lengths = dream.run_linear(layout, np.zeros((1, layout.num_params), np.float32), np.zeros(8, np.int64), keys)
    np.testing.assert_array_equal(returns, lengths)
    assert lengths.max() <= 30


def test_the_dream_environment_passes_gymnasiums_checker(chain):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import wm.worldmodels.dream  # noqa: F401  (registers wm/Dream-v0)

    env = gym.make("wm/Dream-v0", vae=str(chain["vae"]), mdnrnn=str(chain["mdnrnn"]), temperature=1.15, max_steps=50)
    check_env(env.unwrapped, skip_render_check=False)
    first, _ = env.reset(seed=4)
    again, _ = env.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (8 + 16 + 16,) and first.dtype == np.float32
    pixels = gym.make("wm.worldmodels.dream:wm/Dream-v0", vae=str(chain["vae"]), mdnrnn=str(chain["mdnrnn"]), observation="pixels", render_mode="rgb_array")
    check_env(pixels.unwrapped)
    frame, _ = pixels.reset(seed=0)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_the_dream_environment_follows_the_batched_dream(world):
    """The gymnasium env stepped by hand with a controller gives the batched dream's return for the same key."""
    from wm.worldmodels.dream.env import DreamEnv

    layout = controller_layout(world.env_id, world.action_space_json, world.latent_dim, world.units)
    env = DreamEnv(world=world, temperature=1.15, max_steps=30, reward="survival")
    params = np.random.default_rng(5).normal(0, 1.0, layout.num_params).astype(np.float32)
    weights, bias = split_params(layout, params)
    observation, _ = env.reset(seed=9)
    total, done = 0.0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(controller_env_action(layout, np.tanh(observation @ weights + bias)))
        total += reward
        done = terminated or truncated
    returns, _ = _dream(world).run_linear(layout, params[None], np.zeros(1, np.int64), env._key)
    assert total == pytest.approx(float(returns[0]))


# --- CMA-ES and PPO math -------------------------------------------------------------------------


def test_cmaes_resumed_by_replay_continues_exactly():
    from wm.worldmodels.cmaes import ResumableCMAES

    def fitness(candidates):
        return -np.sum((candidates - 0.3) ** 2, axis=1)

    straight = ResumableCMAES(20, 0.1, 8, seed=4)
    told = []
    for _ in range(6):
        told.append(fitness(straight.ask()))
        straight.tell(told[-1])
        np.random.seed(123)  # other code touching NumPy's global generator must not matter
    resumed = ResumableCMAES(20, 0.1, 8, seed=4)
    resumed.replay(np.stack(told), straight.mean, "test")
    np.testing.assert_array_equal(resumed.ask(), straight.ask())
    assert straight.mean.sum() > 0.5  # it moves towards the optimum at 0.3 per coordinate


def test_gae_matches_the_direct_sum():
    """A_t = sum_l (gamma lambda)^l delta_{t+l} within an episode, with delta_t = r_t + gamma V(s_{t+1}) (1 - d_t) - V(s_t)."""
    from wm.worldmodels.ppo import gae

    generator = np.random.default_rng(0)
    steps, n, gamma, lam = 7, 3, 0.9, 0.8
    rewards, values = generator.normal(size=(steps, n)), generator.normal(size=(steps, n))
    dones = (generator.random((steps, n)) < 0.25).astype(np.float64)
    last = generator.normal(size=n)
    advantages, targets = gae(rewards, values, dones, last, gamma, lam)
    next_values = np.vstack([values[1:], last[None]])
    deltas = rewards + gamma * next_values * (1 - dones) - values
    for t in range(steps):
        for i in range(n):
            expected, factor = 0.0, 1.0
            for later in range(t, steps):
                expected += factor * deltas[later, i]
                if dones[later, i]:
                    break
                factor *= gamma * lam
            assert advantages[t, i] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(targets, advantages + values, rtol=1e-5, atol=1e-5)


def test_clipped_surrogate_matches_the_formula():
    from wm.worldmodels.ppo import clipped_surrogate
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    log_prob = np.log(np.array([0.5, 0.9, 0.1, 0.3]))
    old = np.log(np.array([0.4, 0.5, 0.3, 0.3]))
    advantages = np.array([1.0, 2.0, -1.0, 0.5])
    expected = []
    for lp, lo, a in zip(log_prob, old, advantages):
        ratio = np.exp(lp - lo)  # 1.25 (clipped to 1.2 for a > 0), 1.8 (-> 1.2), 0.33 (a < 0: min keeps the clipped 0.8), 1.0
        expected.append(min(ratio * a, np.clip(ratio, 0.8, 1.2) * a))
    value = clipped_surrogate(tf.constant(log_prob), tf.constant(old), tf.constant(advantages), 0.2).numpy()
    assert value == pytest.approx(-np.mean(expected))


@pytest.mark.parametrize("discrete", [True, False])
def test_policy_log_probability_and_entropy(discrete):
    from wm.worldmodels.ppo import build_actor_critic
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    model = build_actor_critic(input_dim=4, actions=3, discrete=discrete, hidden=(8,))
    output = tf.constant(np.random.default_rng(1).normal(size=(5, 3)), tf.float32)
    if discrete:
        action = tf.constant([0, 2, 1, 1, 0])
        log_prob, entropy = model.log_prob_entropy(output, action)
        p = tf.nn.softmax(output).numpy()
        np.testing.assert_allclose(log_prob.numpy(), np.log(p[np.arange(5), action.numpy()]), rtol=1e-5)
        np.testing.assert_allclose(entropy.numpy(), -(p * np.log(p)).sum(-1), rtol=1e-5)
    else:
        action = output + 0.3
        log_prob, entropy = model.log_prob_entropy(output, action)
        std = np.exp(-0.5)
        expected = 3 * (-0.5 * (0.3 / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))  # 3 independent dimensions
        np.testing.assert_allclose(log_prob.numpy(), expected, rtol=1e-5)
        np.testing.assert_allclose(entropy.numpy(), 3 * (0.5 * np.log(2 * np.pi * np.e) + np.log(std)), rtol=1e-5)
