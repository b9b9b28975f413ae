"""`wm train-dreamer` end to end on the tiny preset: artifacts, resume after SIGKILL, determinism, bad input."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import error_line, fails_cleanly, read_all, run_wm, sigkill_when


def _train(tmp_path, name, *extra, env="CartPole-v1", preset="tiny"):
    out = tmp_path / name
    result = run_wm("train-dreamer", "--env", env, "--preset", preset, "--out", str(out), *extra)
    assert result.returncode == 0, result.stderr
    return out


# Agents several tests read, trained once per test worker: (env, preset, extra options) -> path.
_TRAINED = {}
_EXTRA = {
    "CartPole-v1": ("--keep", "best"),
    "fake-pixels": ("--action-repeat", "2"),
    "Pendulum-v1": ("--eval-action", "sample", "--eval-both", "--max-steps", "50", "--train-max-steps", "100"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    def get(env, preset):
        key = (env, preset)
        if key not in _TRAINED:
            _TRAINED[key] = _train(tmp_path_factory.mktemp("trained"), "dreamer.h5", *_EXTRA.get(env, ()), env=env, preset=preset)
        return _TRAINED[key]

    return get


# DreamerV2 on discrete actions; DreamerV3's pieces (tiny-v3) on pixels and on bounded actions.
@pytest.mark.parametrize("env,preset", [("CartPole-v1", "tiny"), ("fake-pixels", "tiny-v3"), ("Pendulum-v1", "tiny-v3")])
def test_tiny_run_writes_the_agent_the_replay_and_the_curves(trained, env, preset):
    out = trained(env, preset)
    tmp_path = out.parent
    with h5py.File(out, "r") as f:
        assert f.attrs["wm_kind"] == "dreamer" and f.attrs["env_id"] == env
        assert f.attrs["env_steps"] >= 300 and f.attrs["updates"] > 0
        assert len(f["history/eval_return_mean"]) == 2  # after 150 steps, and the final one
        assert f["history/eval_env_steps"][-1] == f.attrs["env_steps"]
        shape = json.loads(f.attrs["agent_shape_json"])
        assert shape["image"] == (env == "fake-pixels")
        v3 = preset == "tiny-v3"
        assert (shape["twohot_bins"], shape["norm"], shape["symlog"]) == ((255, "layer", env != "fake-pixels") if v3 else (0, "none", False))
        assert json.loads(f.attrs["learning_json"])["kl_mode"] == ("free-bits" if v3 else "balance")
        if env != "CartPole-v1":  # trained with --keep best, checked in the evaluate test
            assert f.attrs["kept"] == "last" and f.attrs["kept_evaluation"] == 1
        repeat = 2 if env == "fake-pixels" else 1
        assert shape["action_repeat"] == f.attrs["action_repeat"] == repeat
        if env == "Pendulum-v1":  # --eval-action sample --eval-both: the scored return is the sampled one, the mode's beside it
            np.testing.assert_array_equal(f["history/eval_return_mean"][:], f["history/eval_sample_return_mean"][:])
            assert not np.allclose(f["history/eval_mode_return_mean"][:], f["history/eval_sample_return_mean"][:])
            # --train-max-steps 100: training episodes of 100 steps, evaluations still cut at --max-steps 50
            assert f.attrs["max_steps"] == 50 and f.attrs["train_max_steps"] == 100
            np.testing.assert_array_equal(f["history/eval_length_mean"][:], 50)
            assert set(f["history/episode_length"][:]) == {100}
        else:
            assert "history/eval_mode_return_mean" not in f
    replay = tmp_path / "dreamer.replay.h5"
    with h5py.File(replay, "r") as f:
        assert f.attrs["wm_kind"] == "replay" and "partial_committed_episodes" not in f.attrs
        assert f.attrs["action_repeat"] == repeat
        assert f["reward"].shape[0] == f["episode/length"][:].sum()
        assert f["reward"].shape[0] >= 300
    assert (tmp_path / "dreamer.logs" / "learning.png").exists()
    assert (tmp_path / "dreamer.logs" / "metrics.jsonl").exists()
    assert not (tmp_path / "dreamer.ckpt").exists()
    inspected = run_wm("inspect", str(replay))
    assert inspected.returncode == 0, inspected.stderr


@pytest.mark.slow  # the SIGKILL test below also compares two runs of one seed (one of them resumed), in the default run
def test_same_seed_same_agent(tmp_path):
    a = read_all(_train(tmp_path / "a", "dreamer.h5"))
    b = read_all(_train(tmp_path / "b", "dreamer.h5"))
    for name in a:
        if "seconds" not in name:  # wall times
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_sigkilled_run_resumes_to_the_same_agent(tmp_path):
    """DreamerV3's pieces on, and --keep best: the return statistics, the slow critic and the best agent are resumed too."""
    settings = ["--checkpoint-seconds", "0", "--keep", "best", "--eval-every", "100"]
    fresh = read_all(_train(tmp_path / "fresh", "dreamer.h5", *settings, preset="tiny-v3"))
    out = tmp_path / "killed" / "dreamer.h5"
    checkpoint = tmp_path / "killed" / "dreamer.ckpt" / "checkpoint.h5"

    def far_enough():
        try:
            with h5py.File(checkpoint, "r") as f:
                return json.loads(f.attrs["state_json"])["updates"] >= 3
        except (OSError, KeyError):
            return False

    args = ["train-dreamer", "--env", "CartPole-v1", "--preset", "tiny-v3", *settings, "--out", str(out)]
    sigkill_when(args, far_enough)
    assert not out.exists()
    result = run_wm(*args)
    assert result.returncode == 0, result.stderr
    assert "Resuming from" in result.stderr
    resumed = read_all(out)
    for name in fresh:
        if "seconds" not in name:  # wall times
            np.testing.assert_array_equal(resumed[name], fresh[name], err_msg=name)


def test_an_observation_space_no_network_takes(tmp_path):
    message = fails_cleanly(tmp_path, "train-dreamer", "--env", "FrozenLake-v1", "--preset", "tiny")
    assert "neither network takes" in message


def test_a_prefill_from_another_environment(tmp_path):
    rollouts = tmp_path / "pixels.h5"
    assert run_wm("rollout", "--env", "fake-pixels", "--episodes", "2", "--max-steps", "20", "--backend", "serial", "--out", str(rollouts)).returncode == 0
    message = fails_cleanly(tmp_path, "train-dreamer", "--env", "CartPole-v1", "--preset", "tiny", "--prefill", str(rollouts))
    assert "cannot fill the replay of CartPole-v1" in message
    vectors = tmp_path / "cartpole.h5"
    assert run_wm("rollout", "--env", "CartPole-v1", "--episodes", "2", "--backend", "serial", "--out", str(vectors)).returncode == 0
    message = fails_cleanly(tmp_path, "train-dreamer", "--env", "CartPole-v1", "--preset", "tiny", "--action-repeat", "2", "--prefill", str(vectors))
    assert "holds one step every 1 frames, but this run's agent acts every 2" in message


def test_resuming_with_other_network_shapes_is_refused(tmp_path):
    out = tmp_path / "dreamer.h5"
    checkpoint = tmp_path / "dreamer.ckpt" / "checkpoint.h5"
    args = ["train-dreamer", "--env", "CartPole-v1", "--preset", "tiny", "--checkpoint-seconds", "0", "--out", str(out)]
    sigkill_when(args, checkpoint.exists)
    result = run_wm(*args, "--deter", "32")
    assert result.returncode == 2
    assert "unfinished training run with other settings" in error_line(result)
    assert checkpoint.exists()


def test_a_diverging_loss_stops_and_names_the_loss(tmp_path):
    out = tmp_path / "dreamer.h5"
    result = run_wm("train-dreamer", "--env", "CartPole-v1", "--preset", "tiny", "--model-lr", "1e30", "--out", str(out))
    assert result.returncode == 1, result.stderr
    line = error_line(result)
    assert "became" in line and "training stopped" in line
    assert not out.exists()


def test_evaluate_scores_the_actor_and_the_planner_with_fresh_seeds(tmp_path, trained):
    out = trained("CartPole-v1", "tiny")  # with --keep best
    with h5py.File(out, "r") as f:
        best = int(f.attrs["best_evaluation"])
        assert f.attrs["kept"] == "best" and f.attrs["kept_return_mean"] == max(f["history/eval_return_mean"][:])
        assert f.attrs["kept_return_mean"] == f["history/eval_return_mean"][best]
        assert ("other_agent" in f) == (best != len(f["history/eval_return_mean"]) - 1)
    runs = (("actor", ["--actor-action", "sample"]), ("cem", ["--cem-candidates", "40", "--cem-top", "4", "--cem-iterations", "2", "--cem-horizon", "3"]))
    for planner, extra in runs:
        evaluation = tmp_path / f"eval-{planner}.h5"
        result = run_wm("evaluate", "--dreamer", str(out), "--planner", planner, "--episodes", "3", "--backend", "serial",
                        "--out", str(evaluation), *extra)
        assert result.returncode == 0, result.stderr
        with h5py.File(evaluation, "r") as f, h5py.File(out, "r") as agent:
            assert f.attrs["algo"] == ("dreamer" if planner == "actor" else "planet-cem")
            assert f.attrs["actor_action"] == ("sample" if planner == "actor" else "mode")
            assert len(f["episode/return"]) == 3
            assert not set(f["episode/seed"][:].tolist()) & set(agent["training_env_seeds"][:].tolist())
        assert "3 real episodes" in result.stdout
        assert "Scoring the best evaluated agent of" in result.stderr
    message = fails_cleanly(tmp_path, "evaluate", "--dreamer", str(out), "--planner", "cem", "--actor-action", "sample")
    assert message == "Error: --actor-action applies to --planner actor; with --planner cem the planner chooses the actions."


@pytest.mark.parametrize("agent, episodes, bound", [
    # Its 100-episode score is -140.1; a random policy scores about -1,200.
    ("dreamer-pendulum-v3.h5", 4, -400),
    # Its 100-episode score is 500.0 +- 0.0; a random policy scores about 22.
    ("dreamer-cartpole-v3.h5", 4, 475),
    # Its 100-episode score is 695.1 +- 472.9 (747.0 on these 20 episodes, about 1 minute); the random process scores about
    # 300 +- 130, so its mean of 20 episodes stays far below 450.
    ("dreamer-doom-takecover-v3.h5", 20, 450),
])
def test_the_shipped_agents_score_what_the_readme_says(tmp_path, agent, episodes, bound):
    """The README's Dreamer agents (artifacts/pretrained/) on fresh seeds."""
    evaluation = tmp_path / "evaluation.h5"
    result = run_wm("evaluate", "--dreamer", str(Path(__file__).resolve().parents[1] / "artifacts/pretrained" / agent), "--episodes",
                    str(episodes), "--seed", "5", "--backend", "serial", "--out", str(evaluation))
    assert result.returncode == 0, result.stderr
    with h5py.File(evaluation, "r") as f:
        assert f["episode/return"][:].mean() > bound, f["episode/return"][:]


def test_a_video_of_a_vector_observation_agent_shows_what_the_environment_draws(tmp_path):
    """CartPole observes 4 numbers; --video replays the episodes through env.render() instead."""
    from PIL import Image

    video = tmp_path / "cartpole.gif"
    result = run_wm("evaluate", "--dreamer", str(Path(__file__).resolve().parents[1] / "artifacts/pretrained/dreamer-cartpole-v3.h5"),
                    "--episodes", "2", "--max-steps", "30", "--seed", "5", "--backend", "serial", "--video", str(video),
                    "--out", str(tmp_path / "evaluation.h5"))
    assert result.returncode == 0, result.stderr
    assert "XDG_RUNTIME_DIR" not in result.stderr  # headless rendering asks for no display
    gif = Image.open(video)
    # CartPole draws 600x400, shrunk by 2; two columns 2 pixels apart under a 14-pixel caption; 30 steps, every 2nd kept
    assert gif.size == (2 * 300 + 2, 200 + 14) and 2 <= gif.n_frames <= 15
    frames = []
    for k in range(gif.n_frames):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("RGB"), np.int16))
    assert any(np.abs(frame - frames[0]).max() > 0 for frame in frames[1:])  # the cart or the pole moves
    assert (frames[0][14:] < 100).all(axis=-1).sum() > 500  # the black cart is drawn


def test_contradictory_or_out_of_range_v3_options_are_refused(tmp_path):
    from wm.config import resolve_config
    from wm.errors import ConfigError
    from wm.stages.train_dreamer import TrainDreamerConfig

    message = fails_cleanly(tmp_path, "train-dreamer", "--preset", "tiny-v3", "--twohot-bins", "1")
    assert message == "Error: 'twohot_bins' must be 0 (off) or at least 2; got 1."
    for settings, words in (
        ({"return_low": 95.0, "return_high": 5.0}, "0 <= return_low < return_high <= 100"),
        ({"return_high": 101.0}, "0 <= return_low < return_high <= 100"),
        ({"unimix": 1.0}, "'unimix' must lie in [0, 1)"),
        ({"unimix": 0.01, "latent": "gaussian"}, "with --latent gaussian there are none"),
        ({"kl_dyn_scale": 0.3}, "with --kl-mode balance"),
        ({"return_rate": 0.0}, "'return_rate' must lie in (0, 1]"),
        ({"slow_critic_rate": 1.5}, "'slow_critic_rate' must lie in [0, 1]"),
        ({"replay_value_scale": -0.3}, "'replay_value_scale' must be 0 or more"),
        ({"terminal_weight": -1.0}, "'terminal_weight' must be 0 or more"),
        ({"eval_both": True, "planner": "cem"}, "with --planner cem the plan acts"),
    ):
        with pytest.raises(ConfigError, match=None) as error:
            resolve_config(TrainDreamerConfig, explicit=settings)
        assert words in str(error.value), (settings, str(error.value))
    assert "'norm'" in fails_cleanly(tmp_path, "train-dreamer", "--preset", "tiny", "--set", "norm=batch")


def test_evaluate_needs_exactly_one_of_controller_and_dreamer(tmp_path):
    assert "exactly one of --controller" in fails_cleanly(tmp_path, "evaluate")


@pytest.mark.parametrize("pipeline", ["dreamer-cartpole"])  # dreamer-pendulum differs only in its settings
def test_dreamer_recipes_run_end_to_end_on_the_tiny_preset(tmp_path, pipeline):
    result = run_wm("run", pipeline, "--preset", "tiny", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert list(manifest["steps"]) == ["train-dreamer", "evaluate"]
    with h5py.File(tmp_path / "evaluation.h5", "r") as f:
        assert f.attrs["algo"] == "dreamer" and len(f["episode/return"]) == 2


def test_dream_shows_a_recorded_episode_next_to_the_rssms_imagination(tmp_path, trained):
    out = trained("fake-pixels", "tiny-v3")
    video = tmp_path / "imagined.gif"
    result = run_wm("dream", "--dreamer", str(out), "--steps", "10", "--scale", "1", "--out", str(video))
    assert result.returncode == 0, result.stderr
    import imageio.v3 as iio

    frames = iio.imread(video)
    assert frames.shape[0] == 10 and frames.shape[2] > 2 * 64  # two labelled columns (the replay's first episode has 11 steps)
    vector = trained("CartPole-v1", "tiny")
    assert "nothing to decode" in fails_cleanly(tmp_path, "dream", "--dreamer", str(vector), out_name="x.gif")
    frames = tmp_path / "pixels.h5"  # one step a frame, but the agent acts every 2 frames (--action-repeat 2)
    assert run_wm("rollout", "--env", "fake-pixels", "--episodes", "1", "--max-steps", "20", "--backend", "serial", "--out", str(frames)).returncode == 0
    assert "compare it with its own replay" in fails_cleanly(tmp_path, "dream", "--dreamer", str(out), "--compare", str(frames), out_name="z.gif")
    assert "Give --vae and --mdnrnn" in fails_cleanly(tmp_path, "dream", out_name="y.gif")


def test_an_agent_with_action_repeat_chooses_every_kth_frame_and_holds_its_action(trained):
    from wm.dreamer.policy import DreamerPolicy
    from wm.envs import make_env

    env = make_env("fake-pixels")
    policy = DreamerPolicy("fake-pixels", env.action_space, dreamer=str(trained("fake-pixels", "tiny-v3")))  # --action-repeat 2
    policy.reset(np.random.default_rng(0))
    observation, _ = env.reset(seed=0)
    actions = []
    for _ in range(40):
        actions.append(int(policy.act(observation)))
        observation, *_ = env.step(actions[-1])
    assert actions[0::2] == actions[1::2] and policy.t == 20
    assert len(set(actions)) > 1  # the held actions still change (the agent's choices are not all one action)
