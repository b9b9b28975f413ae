"""The CEM planner on small problems whose best plan is known."""

import numpy as np

from wm.tfsetup import tensorflow

tf = tensorflow()

from wm.dreamer.planner import cem_plan, predicted_returns  # noqa: E402

SEED = tf.constant([5, 6])


def _line_step(states, actions, seed):
    """A point on a line moved by the action; reward -(x - 0.7)^2; the episode always goes on."""
    position = states["x"] + actions[:, 0]
    return {"x": position}, -tf.square(position - 0.7), tf.ones_like(position)


def test_bounded_actions_move_towards_the_target():
    action = cem_plan(_line_step, {"x": tf.zeros([1])}, "bounded", 1, horizon=3, iterations=8, candidates=500, top=50, seed=SEED)
    assert abs(float(action[0]) - 0.7) < 0.1


def _choice_step(states, actions, seed):
    """Reward 1 for action 2 of 3, and an end predicted after action 0."""
    reward = actions[:, 2]
    return states, reward, 1.0 - actions[:, 0]


def test_discrete_actions_pick_the_rewarded_one():
    action = cem_plan(_choice_step, {"x": tf.zeros([1])}, "categorical", 3, horizon=5, iterations=5, candidates=200, top=20, seed=SEED).numpy()
    np.testing.assert_array_equal(action, [0.0, 0.0, 1.0])


def test_predicted_returns_stop_counting_after_a_predicted_end():
    actions = tf.constant([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],   # reward, end, (not counted)
                           [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])  # reward, reward, nothing
    returns = predicted_returns(_choice_step, {"x": tf.zeros([2])}, actions, SEED).numpy()
    np.testing.assert_allclose(returns, [1.0, 2.0])
