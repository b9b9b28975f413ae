"""Environments by name, their preprocessing and action mapping, and the random policies."""

from __future__ import annotations

import numpy as np
import pytest

from wm.envs import check_env_name, default_max_steps, make_env
from wm.envs.policies import BrownianPolicy, HeldPolicy, PolicySpec, make_policy
from wm.errors import UsageError


@pytest.mark.parametrize("name", ["carracing", "doom-takecover", "fake-pixels"])
def test_pixel_environments_give_64x64_uint8_frames(name):
    env = make_env(name, max_steps=5)
    observation, _ = env.reset(seed=1)
    assert observation.shape == (64, 64, 3) and observation.dtype == np.uint8
    assert env.observation_space.contains(observation)
    steps = 0
    done = False
    while not done:
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        done = terminated or truncated
    assert steps <= 5
    env.close()


def test_carracing_is_continuous_and_doom_has_three_actions():
    car = make_env("carracing")
    assert car.action_space.shape == (3,) and car.action_space.low.tolist() == [-1, 0, 0]
    car.close()
    doom = make_env("doom-takecover")
    assert doom.action_space.n == 3
    doom.close()


def test_doom_actions_press_left_nothing_right():
    env = make_env("doom-takecover")
    base = env.unwrapped
    names = [button.name for button in base.game.get_available_buttons()]
    pressed = [
        {name for name, bit in zip(names, base.button_map[env._to_wrapper_action[action]]) if bit}
        for action in range(3)
    ]
    assert pressed == [{"MOVE_LEFT"}, set(), {"MOVE_RIGHT"}]
    env.close()


def test_gymnasium_ids_and_limits():
    env = make_env("CartPole-v1")
    assert env.observation_space.shape == (4,)
    env.close()
    assert default_max_steps("CartPole-v1") == 500
    assert default_max_steps("carracing") == 1000 and default_max_steps("doom-takecover") == 2100


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(UsageError, match="Unknown environment 'Doom'; known environments: carracing, doom-takecover, fake-pixels"):
        check_env_name("Doom")


def test_fake_env_is_deterministic_and_ends_with_a_zero_frame():
    def play(seed):
        env = make_env("fake-pixels")
        frames = [env.reset(seed=seed)[0]]
        done = False
        while not done:
            frame, _, terminated, truncated, _ = env.step(2)
            frames.append(frame)
            done = terminated or truncated
        return np.stack(frames)

    a, b = play(3), play(3)
    assert np.array_equal(a, b) and not np.array_equal(a[:5], play(4)[:5])
    assert not a[-1].any() and a[-2].any()


def test_action_repeat_holds_the_action_sums_the_rewards_and_stops_where_the_episode_ends():
    from wm.envs.repeat import ActionRepeat

    plain, repeated = make_env("CartPole-v1", max_steps=10), ActionRepeat(make_env("CartPole-v1", max_steps=10), 3)
    plain.reset(seed=4)
    observation, _ = repeated.reset(seed=4)
    for step in range(4):  # frames 3, 6, 9, then the limit at 10
        expected_reward, done = 0.0, False
        for _ in range(3):
            expected, reward, terminated, truncated, _ = plain.step(1 - step % 2)
            expected_reward += reward
            done = terminated or truncated
            if done:
                break
        observation, reward, terminated, truncated, _ = repeated.step(1 - step % 2)
        np.testing.assert_array_equal(observation, expected)
        assert reward == expected_reward and (terminated or truncated) == done
    assert done and reward == 1.0  # the last step held its action one frame: the episode's limit came first
    with pytest.raises(ValueError):
        ActionRepeat(plain, 0)


def test_brownian_policy_stays_in_bounds_and_moves_by_sqrt_dt_steps():
    env = make_env("carracing")
    policy = BrownianPolicy(env.action_space, dt=1 / 50)
    policy.reset(np.random.default_rng(0))
    actions = np.array([policy.act(None) for _ in range(2000)])
    assert (actions >= env.action_space.low).all() and (actions <= env.action_space.high).all()
    steering_steps = np.diff(actions[:, 0])
    free = np.abs(actions[1:, 0]) < 0.9  # away from the clip, increments are N(0, dt)
    assert np.std(steering_steps[free]) == pytest.approx(np.sqrt(1 / 50), rel=0.15)
    env.close()


def test_held_policy_holds_each_action_one_to_ten_steps():
    import gymnasium as gym

    policy = HeldPolicy(gym.spaces.Discrete(3))
    policy.reset(np.random.default_rng(0))
    rng_draws = np.random.default_rng(0)
    actions, holds = [], []
    for _ in range(50):  # replay the policy's own draws: (action, hold length) pairs
        action = int(rng_draws.integers(3))
        hold = int(rng_draws.integers(1, 11))
        actions += [action] * hold
        holds.append(hold)
    produced = [policy.act(None) for _ in range(len(actions))]
    assert produced == actions
    assert min(holds) >= 1 and max(holds) <= 10 and len(set(holds)) > 5


def test_random_policy_resolves_per_environment():
    env = make_env("carracing")
    assert isinstance(make_policy(PolicySpec("random"), "carracing", env.action_space), BrownianPolicy)
    env.close()
    import gymnasium as gym

    assert isinstance(make_policy(PolicySpec("random"), "doom-takecover", gym.spaces.Discrete(3)), HeldPolicy)
    with pytest.raises(UsageError, match="needs a Discrete action space"):
        make_policy(PolicySpec("held"), "carracing", gym.spaces.Box(-1, 1, (3,)))


def test_doom_engine_does_not_write_its_ini_into_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env = make_env("doom-takecover", max_steps=3)
    env.reset(seed=0)
    env.step(1)
    env.close()
    assert not (tmp_path / "_vizdoom.ini").exists()
    assert (tmp_path / "cache" / "wm" / "vizdoom" / "_vizdoom.ini").exists()
