"""Stages train-controller and evaluate, rollouts with a controller, and `wm run` over the full World
Models recipes: artifacts, resume after SIGKILL, fresh evaluation seeds, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import error_line, fails_cleanly, run_stage, run_wm, sigkill_when
from wm.io.artifact import open_artifact
from wm.io.inspect import evaluation_sentence

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def controllers(chain, tmp_path_factory):
    """A CMA-ES controller trained in the dream, one trained in the real environment, and a PPO one (tiny settings)."""
    folder = tmp_path_factory.mktemp("controllers")
    world = {"vae": chain["vae"], "mdnrnn": chain["mdnrnn"]}
    paths = {name: folder / f"{name}.h5" for name in ("dream", "real", "ppo")}
    run_stage("train-controller", paths["dream"], world, backend="serial", temperature=1.15)
    run_stage("train-controller", paths["real"], world, backend="serial", dream=False)
    run_stage("train-controller", paths["ppo"], world, algo="ppo")
    return paths


def test_a_cmaes_controller_artifact_holds_parameters_history_and_its_world_model(controllers, chain):
    with open_artifact(controllers["dream"], "controller") as controller, open_artifact(chain["vae"], "vae") as vae:
        f = controller.file
        assert controller.attr("algo") == "cmaes" and controller.attr("trained_in") == "dream"
        layout = json.loads(controller.attr("layout_json"))
        assert layout["features"] == "zch" and f["params/mean"].shape == f["params/best"].shape == (8 + 2 * 16,)
        for key in ("population_best", "population_mean", "population_worst", "cmaes_sigma", "mean_params_real_return", "mean_params_dream_return"):
            assert f[f"history/{key}"].shape == (3,)
        real = f["history/mean_params_real_return"][:]
        assert np.isnan(real[0]) and np.isfinite(real[1:]).all()  # scored every 2 generations and at the end
        assert controller.attr("vae_fingerprint") == vae.fingerprint and "vae/00000" in f and "mdnrnn/00000" in f
        assert len(f["training_env_seeds"]) == 2 * 2  # two scorings of the mean, 2 real episodes each
        assert json.loads(controller.attr("dream_rules_json"))["temperature"] == 1.15
    logs = controllers["dream"].parent / "dream.logs"
    assert (logs / "learning.png").stat().st_size > 1000 and len((logs / "metrics.jsonl").read_text().splitlines()) == 3
    assert not (controllers["dream"].parent / "dream.ckpt").exists()


def test_a_real_environment_controller_records_every_seed_it_met(controllers):
    with open_artifact(controllers["real"], "controller") as controller:
        assert controller.attr("trained_in") == "real"
        # 3 generations x 2 rollouts (the same seeds for all candidates of a generation) + 2 scorings x 2 episodes
        assert len(set(controller.file["training_env_seeds"][:].tolist())) == 3 * 2 + 2 * 2


def test_evaluation_uses_fresh_seeds_and_reports_real_and_dream_scores(controllers, tmp_path):
    out = tmp_path / "eval.h5"
    result = run_wm("evaluate", "--controller", str(controllers["real"]), "--preset", "tiny", "--episodes", "4",
                    "--video", str(tmp_path / "best.gif"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    with open_artifact(out, "evaluation") as evaluation, open_artifact(controllers["real"], "controller") as controller:
        seeds = set(evaluation.file["episode/seed"][:].tolist())
        assert len(seeds) == 4 and not seeds & set(controller.file["training_env_seeds"][:].tolist())
        returns = evaluation.file["episode/return"][:]
        assert evaluation.attr("mean_return") == pytest.approx(returns.mean())
        assert evaluation.file["dream/return"].shape == (4,) and np.isfinite(evaluation.attr("dream_mean_return"))
    assert "4 real episodes, return" in result.stdout and "in the dream" in result.stdout
    from PIL import Image

    video = Image.open(tmp_path / "best.gif")
    assert video.size == (2 * 192 + 2, 192 + 14) and video.n_frames > 5


def test_evaluation_seeds_skip_any_seed_used_in_training():
    from wm.episodes import episode_env_seed
    from wm.stages.evaluate import evaluation_seeds

    run_seed, indices = evaluation_seeds(0, 5, set())
    taken = {episode_env_seed(run_seed, 0), episode_env_seed(run_seed, 3)}
    _, avoiding = evaluation_seeds(0, 5, taken)
    assert indices == [0, 1, 2, 3, 4] and avoiding == [1, 2, 4, 5, 6]


def test_a_ppo_controller_is_evaluated_and_dreamed_with(controllers, chain, tmp_path):
    with open_artifact(controllers["ppo"], "controller") as controller:
        assert controller.attr("algo") == "ppo" and "policy/00000" in controller.file
        assert controller.file["history/ppo_policy_loss"].shape == (2,)
    result = run_stage("evaluate", tmp_path / "eval.h5", {"controller": controllers["ppo"]}, backend="serial")
    assert result.status == "written"
    with open_artifact(tmp_path / "eval.h5", "evaluation") as evaluation:  # what the agent did: its actions, counted per episode
        counts = evaluation.file["episode/action_counts"][:]
        np.testing.assert_array_equal(counts.sum(axis=1), evaluation.file["episode/length"][:])
    assert "; actions " in evaluation_sentence(tmp_path / "eval.h5")
    run_stage("dream", tmp_path / "dream.gif", {"vae": chain["vae"], "mdnrnn": chain["mdnrnn"], "controller": controllers["ppo"]})
    assert (tmp_path / "dream.gif").stat().st_size > 0


def test_rollouts_with_a_controller_extend_earlier_rollouts(controllers, chain, tmp_path):
    out = tmp_path / "more.h5"
    result = run_stage("rollout", out, {"controller": controllers["dream"], "extend": chain["rollouts"]}, preset=None,
                       env="fake-pixels", episodes=2, max_steps=30, policy="controller", controller_noise=0.2, backend="serial")
    assert result.status == "written"
    with open_artifact(out, "rollouts") as more, open_artifact(chain["rollouts"], "rollouts") as old:
        kept = old.file["episode/length"].shape[0]
        assert more.file["episode/length"].shape[0] == kept + 2 and more.attr("policy") == "held+controller"
        old_steps = old.file["reward"].shape[0]
        np.testing.assert_array_equal(more.file["obs"][:old_steps], old.file["obs"][:])
        assert not set(more.file["episode/seed"][kept:].tolist()) & set(old.file["episode/seed"][:].tolist())
        assert {ref["name"] for ref in more.inputs} == {"controller", "extend"}


# --- resume after SIGKILL -------------------------------------------------------------------------


def _generations_in(path: Path) -> int:
    try:
        with h5py.File(path, "r") as f:
            return f["arrays/fitness"].shape[0]
    except (OSError, KeyError):
        return 0


def _iterations_in(path: Path) -> int:
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["state_json"])["epoch"]
    except (OSError, KeyError):
        return 0


@pytest.mark.parametrize(
    "algo, extra, ready",
    [
        ("cmaes", ["--generations", "40", "--real-every", "0"], lambda path: _generations_in(path) >= 3),
        ("ppo", ["--ppo-iterations", "12"], lambda path: _iterations_in(path) >= 2),
    ],
)
def test_controller_training_resumes_after_sigkill_and_matches_an_uninterrupted_run(chain, tmp_path, algo, extra, ready):
    args = ["train-controller", "--vae", str(chain["vae"]), "--mdnrnn", str(chain["mdnrnn"]), "--preset", "tiny", "--algo", algo, *extra]
    killed = tmp_path / "killed" / "controller.h5"
    checkpoint = killed.parent / "controller.ckpt" / "checkpoint.h5"
    sigkill_when([*args, "--out", str(killed)], lambda: ready(checkpoint))
    assert not killed.exists()
    resumed = run_wm(*args, "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stderr
    straight = tmp_path / "straight" / "controller.h5"
    result = run_wm(*args, "--out", str(straight))
    assert result.returncode == 0, result.stderr
    with h5py.File(killed) as a, h5py.File(straight) as b:
        assert json.loads(a.attrs["history_json"])[-1].keys() == json.loads(b.attrs["history_json"])[-1].keys()
        names = ["params/mean", "params/best"] if algo == "cmaes" else [f"policy/{name}" for name in b["policy"]]
        for name in names:
            np.testing.assert_allclose(a[name][()], b[name][()], rtol=1e-5, atol=1e-6)


# --- bad input: one sentence, exit code 2, nothing overwritten ---------------------------------------


def test_a_controller_is_refused_in_an_environment_it_was_not_trained_for(controllers, tmp_path):
    message = fails_cleanly(tmp_path, "rollout", "--env", "carracing", "--policy", "controller", "--controller", str(controllers["dream"]), "--episodes", "1")
    assert "trained for fake-pixels, not carracing" in message


def test_a_controller_is_refused_with_a_world_model_it_was_not_trained_in(controllers, chain, tmp_path):
    other_mdnrnn = tmp_path / "other-mdnrnn.h5"
    run_stage("train-mdnrnn", other_mdnrnn, {"latents": chain["latents"]}, seed=3, epochs=1)
    message = fails_cleanly(tmp_path, "dream", "--vae", str(chain["vae"]), "--mdnrnn", str(other_mdnrnn), "--controller",
                             str(controllers["dream"]), out_name="d.gif")
    assert "trained with another MDN-RNN" in message


def test_a_vae_and_mdnrnn_of_different_latents_are_refused(chain, tmp_path):
    other_vae = tmp_path / "other-vae.h5"
    run_stage("train-vae", other_vae, {"rollouts": chain["rollouts"]}, seed=1, epochs=1)
    message = fails_cleanly(tmp_path, "train-controller", "--vae", str(other_vae), "--mdnrnn", str(chain["mdnrnn"]), "--preset", "tiny")
    assert "trained on latents made by another VAE" in message


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--temperature", "0"], "'temperature' must be a finite positive number"),
        (["--temperature", "-1.5"], "'temperature' must be a finite positive number"),
        (["--temperature", "nan"], "'temperature' must be a finite number"),
        (["--population", "1"], "'population' must be at least 2"),
        (["--algo", "ppo", "--real"], "PPO trains inside the dream only"),
    ],
)
def test_bad_training_settings_are_refused(chain, tmp_path, args, expected):
    message = fails_cleanly(tmp_path, "train-controller", "--vae", str(chain["vae"]), "--mdnrnn", str(chain["mdnrnn"]), "--preset", "tiny", *args)
    assert expected in message


def test_evaluate_refuses_a_nonpositive_temperature(controllers, tmp_path):
    message = fails_cleanly(tmp_path, "evaluate", "--controller", str(controllers["dream"]), "--temperature", "0")
    assert "'temperature' must be a finite positive number" in message


def test_run_refuses_an_unknown_stage_name(tmp_path):
    for option in ("--from-stage", "--to-stage"):
        result = run_wm("run", "doom-takecover", "--preset", "tiny", option, "train-controler", "--out", str(tmp_path / "run"))
        assert result.returncode == 2
        assert "'train-controler' is not a step of this pipeline" in error_line(result) and "Did you mean 'train-controller'" in error_line(result)
    assert not (tmp_path / "run").exists()


# --- wm fidelity and wm dream: the dream against the real environment, the dream of training ---------


def test_fidelity_compares_each_policy_in_the_dream_and_the_real_environment(controllers, tmp_path):
    out = tmp_path / "fidelity.h5"
    result = run_wm("fidelity", "--controller", str(controllers["dream"]), "--preset", "tiny", "--backend", "serial", "--out", str(out))
    assert result.returncode == 0, result.stderr
    with open_artifact(out, "fidelity") as fidelity, open_artifact(controllers["dream"], "controller") as controller:
        names = json.loads(fidelity.attr("policies_json"))
        assert names == ["random", "always left", "always nothing", "always right", "controller"]
        rules = json.loads(fidelity.attr("rules_json"))
        assert rules == json.loads(controller.attr("dream_rules_json")) | {"max_steps": 40}  # its training rules, the tiny cap
        summary = json.loads(fidelity.attr("summary_json"))
        for name in names:
            group = fidelity.file[f"policy/{name.replace(' ', '_')}"]
            real, dream = group["real_length"][:], group["dream_length"][:]
            assert len(real) == len(dream) == 3 and (dream <= 40).all() and (real <= 40).all()
            assert summary[name]["length_ratio"] == pytest.approx(dream.mean() / real.mean())
            assert not set(group["real_seed"][:].tolist()) & set(controller.file["training_env_seeds"][:].tolist())
        assert fidelity.file["open_loop/horizon"][:].tolist() == [1, 2, 3, 4, 5]
        assert sorted(json.loads(fidelity.attr("open_loop_json"))) == ["1", "2", "5"]
    assert (tmp_path / "fidelity.png").stat().st_size > 1000
    assert "Fidelity of the fake-pixels dream (tau 1.15" in result.stdout and "always right" in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--episodes", "0"], "'episodes' must be at least 1"),
        (["--horizons", "1,x"], "'horizons' must be comma-separated positive step counts"),
        (["--policies", "constant,dance"], "'policies' must list random and/or constant"),
        (["--temperature", "inf"], "'temperature' must be a finite number"),
    ],
)
def test_fidelity_refuses_bad_settings(chain, tmp_path, args, expected):
    message = fails_cleanly(tmp_path, "fidelity", "--vae", str(chain["vae"]), "--mdnrnn", str(chain["mdnrnn"]), "--preset", "tiny",
                            "--backend", "serial", *args)
    assert expected in message


def test_fidelity_refuses_a_horizon_longer_than_the_held_out_episodes(chain, tmp_path):
    message = fails_cleanly(tmp_path, "fidelity", "--vae", str(chain["vae"]), "--mdnrnn", str(chain["mdnrnn"]), "--preset", "tiny",
                            "--horizons", "1,40")
    assert "The longest horizon (40) must be shorter than the held-out episodes, which last at most 40 steps (the step cap)" in message


def test_fidelity_refuses_mismatched_inputs(controllers, chain, tmp_path):
    other_vae = tmp_path / "other-vae.h5"
    run_stage("train-vae", other_vae, {"rollouts": chain["rollouts"]}, seed=1, epochs=1)
    message = fails_cleanly(tmp_path, "fidelity", "--vae", str(other_vae), "--mdnrnn", str(chain["mdnrnn"]), "--preset", "tiny")
    assert "trained on latents made by another VAE" in message
    message = fails_cleanly(tmp_path, "fidelity", "--vae", str(chain["rollouts"]), "--mdnrnn", str(chain["mdnrnn"]), "--preset", "tiny")
    assert "rollouts" in message and "vae" in message
    message = fails_cleanly(tmp_path, "fidelity", "--mdnrnn", str(chain["mdnrnn"]), "--preset", "tiny")
    assert "Give --vae and --mdnrnn" in message
    other_mdnrnn = tmp_path / "other-mdnrnn.h5"
    run_stage("train-mdnrnn", other_mdnrnn, {"latents": chain["latents"]}, seed=3, epochs=1)
    message = fails_cleanly(tmp_path, "fidelity", "--vae", str(chain["vae"]), "--mdnrnn", str(other_mdnrnn), "--controller",
                            str(controllers["dream"]), "--preset", "tiny")
    assert "trained with another MDN-RNN" in message


def test_wm_dream_shows_the_very_dream_training_runs(controllers, chain, tmp_path, capsys):
    """Same code, randomness and rules: `wm dream --controller` lasts as long as the training path's dream with that key."""
    from wm.worldmodels.controller_artifact import dream_rules_of, layout_of
    from wm.worldmodels.dream.batched import Dream
    from wm.worldmodels.dream.rules import dream_rules
    from wm.worldmodels.dream.world import load_world_model
    from wm.stages.dream import view_keys

    world = load_world_model(chain["vae"], chain["mdnrnn"], with_vae=False)
    with open_artifact(controllers["dream"], "controller") as controller:
        rules, layout, mean = dream_rules_of(controller), layout_of(controller), controller.file["params/mean"][:]
    rules = dream_rules(world.mdnrnn, temperature=rules.temperature, max_steps=rules.max_steps, reward=rules.reward,
                        sample_done=True)  # sampled deaths: dreams of many lengths
    dream = Dream(world.mdnrnn, world.initial_mu, world.initial_logvar, rules)
    lengths = []
    for index in range(4):
        _, length = dream.run_linear(layout, mean[None], np.zeros(1, np.int64), view_keys(7, [index]))
        run_stage("dream", tmp_path / f"d{index}.gif", {"vae": chain["vae"], "mdnrnn": chain["mdnrnn"], "controller": controllers["dream"]},
                  seed=7, preset=None, sample_done=True, dream_index=index)
        assert f"dream {index} of seed 7: {int(length[0])} steps" in capsys.readouterr().err
        lengths.append(int(length[0]))
    assert len(set(lengths)) > 1, lengths  # the dreams differ, so the match above is not a coincidence


# --- wm run ---------------------------------------------------------------------------------------


def _statuses(folder: Path) -> dict[str, str]:
    return {name: step["status"] for name, step in json.loads((folder / "manifest.json").read_text())["steps"].items()}


def test_the_tiny_carracing_preset_runs_the_whole_chain(tmp_path):
    folder = tmp_path / "run"
    result = run_wm("run", "carracing", "--preset", "tiny", "--out", str(folder))
    assert result.returncode == 0, result.stderr
    assert list(_statuses(folder)) == ["rollout", "train-vae", "encode", "train-mdnrnn", "train-controller", "evaluate"]  # no dream rules: no fidelity
    assert set(_statuses(folder).values()) == {"written"}
    with open_artifact(folder / "controller.h5", "controller") as controller:
        assert controller.attr("env_id") == "carracing" and controller.attr("trained_in") == "real"
    assert "evaluate: carracing: 3 real episodes, return" in result.stdout


def test_the_tiny_doom_preset_runs_the_chain_and_a_round_then_reruns_only_what_changed(tmp_path):
    folder = tmp_path / "run"
    first = run_wm("run", "doom-takecover", "--preset", "tiny", "--out", str(folder), "--iterations", "1")
    assert first.returncode == 0, first.stderr
    steps = ["rollout", "train-vae", "encode", "train-mdnrnn", "fidelity", "train-controller", "evaluate", "fidelity-controller"]
    assert list(_statuses(folder))[:8] == steps and set(_statuses(folder).values()) == {"written"}
    with open_artifact(folder / "mdnrnn.h5", "mdnrnn") as mdnrnn:  # the recipe's settings reach the stage
        assert mdnrnn.config["units"] == 16 and mdnrnn.config["done_head"] and mdnrnn.attr("latent_dim") == 64
    with open_artifact(folder / "controller.h5", "controller") as controller:
        assert controller.attr("env_id") == "doom-takecover" and controller.attr("trained_in") == "dream"
    assert "evaluate: doom-takecover: 3 real episodes, return" in first.stdout
    # the fidelity tables of the world model and of the final controller
    assert "fidelity: Fidelity of the doom-takecover dream (tau 1.15" in first.stdout
    assert "fidelity-controller: Fidelity" in first.stdout and "\ncontroller " in first.stdout
    assert list(_statuses(folder))[8:] == ["rollout@2", "encode@2", "train-mdnrnn@2", "fidelity@2", "train-controller@2", "evaluate@2",
                                           "fidelity-controller@2"]
    with open_artifact(folder / "iter2" / "rollouts.h5", "rollouts") as more:
        assert more.attr("policy") == "held+controller" and more.file["episode/length"].shape[0] == 6
    again = run_wm("run", "doom-takecover", "--preset", "tiny", "--out", str(folder), "--to-stage", "evaluate")
    assert again.returncode == 0, again.stderr
    assert set(_statuses(folder)[name] for name in ("rollout", "train-vae", "train-controller", "evaluate")) == {"up-to-date"}
    changed = run_wm("run", "doom-takecover", "--preset", "tiny", "--out", str(folder), "--to-stage", "evaluate",
                     "--set", "train-controller.generations=4")
    assert changed.returncode == 0, changed.stderr
    statuses = _statuses(folder)
    assert [statuses[name] for name in ("rollout", "train-vae", "encode", "train-mdnrnn")] == ["up-to-date"] * 4
    assert statuses["train-controller"] == statuses["evaluate"] == "written"
    with open_artifact(folder / "controller.h5", "controller") as controller:
        assert len(json.loads(controller.attr("history_json"))) == 4
    forced = run_wm("run", "doom-takecover", "--preset", "tiny", "--out", str(folder), "--from-stage", "evaluate", "--to-stage", "evaluate",
                    "--set", "train-controller.generations=4", "--force")
    assert forced.returncode == 0, forced.stderr
    assert _statuses(folder)["evaluate"] == "written"


def test_the_pretrained_recipe_trains_in_the_shipped_world_model(tmp_path):
    folder = tmp_path / "run"
    result = run_wm("run", "doom-takecover-pretrained", "--preset", "tiny", "--out", str(folder))
    assert result.returncode == 0, result.stderr
    assert _statuses(folder) == {"train-controller": "written", "evaluate": "written", "fidelity-controller": "written"}
    with open_artifact(ROOT / "artifacts/pretrained/doom-takecover-mdnrnn.h5", "mdnrnn") as shipped, \
            open_artifact(folder / "controller.h5", "controller") as controller:
        assert controller.attr("mdnrnn_fingerprint") == shipped.fingerprint and controller.attr("trained_in") == "dream"
    assert "fidelity-controller: Fidelity" in result.stdout and "\nrandom " in result.stdout and "\ncontroller " in result.stdout
    with open_artifact(folder / "fidelity-controller.h5", "fidelity") as fidelity:  # both on the same seeds, both returns printed
        seeds = {name: fidelity.file[f"policy/{name}/real_seed"][:].tolist() for name in ("random", "controller")}
        returns = {name: fidelity.file[f"policy/{name}/real_return"][:] for name in ("random", "controller")}
    assert seeds["random"] == seeds["controller"]
    first = json.loads((folder / "manifest.json").read_text())["steps"]
    again = run_wm("run", "doom-takecover-pretrained", "--preset", "tiny", "--out", str(folder))
    assert again.returncode == 0, again.stderr
    steps = json.loads((folder / "manifest.json").read_text())["steps"]
    assert {name: step["status"] for name, step in steps.items()} == dict.fromkeys(first, "up-to-date")
    # the manifest keeps what writing each artifact took
    assert {name: step["written_seconds"] for name, step in steps.items()} == {name: step["wall_seconds"] for name, step in first.items()}
    assert f"(written in {first['evaluate']['wall_seconds']:.1f} s)" in again.stdout
    assert (f"On the same 3 real episodes the controller returns {returns['controller'].mean():.1f} ± {returns['controller'].std():.1f}, "
            f"the random process {returns['random'].mean():.1f} ± {returns['random'].std():.1f}.") in result.stdout


def test_a_missing_shipped_artifact_is_one_sentence(tmp_path, monkeypatch):
    import wm.recipe
    from wm.errors import UsageError

    monkeypatch.setattr(wm.recipe, "REPOSITORY", tmp_path)
    with pytest.raises(UsageError, match=r"doom-takecover-vae.h5 is missing: this pipeline starts from an artifact shipped"):
        wm.recipe.run_pipeline("doom-takecover-pretrained", preset="tiny", out=tmp_path / "run", seed=0, force=False)
    assert not (tmp_path / "run").exists()


def test_iterations_chain_each_round_to_the_previous_one():
    from wm.recipe import get_recipe

    steps = {step.name: step for step in get_recipe("doom-takecover").expand(2, retrain_vae=True)}
    assert list(steps)[8:] == [
        "rollout@2", "train-vae@2", "encode@2", "train-mdnrnn@2", "fidelity@2", "train-controller@2", "evaluate@2", "fidelity-controller@2",
        "rollout@3", "train-vae@3", "encode@3", "train-mdnrnn@3", "fidelity@3", "train-controller@3", "evaluate@3", "fidelity-controller@3",
    ]
    assert steps["fidelity@3"].inputs == {"vae": "train-vae@3", "mdnrnn": "train-mdnrnn@3"}
    assert steps["fidelity-controller@3"].inputs == {"controller": "train-controller@3"}
    assert steps["rollout@2"].inputs == {"controller": "train-controller", "extend": "rollout"}
    assert steps["rollout@3"].inputs == {"controller": "train-controller@2", "extend": "rollout@2"}
    assert steps["rollout@3"].settings["policy"] == "controller" and steps["rollout@3"].out == "iter3/rollouts.h5"
    assert steps["train-controller@3"].inputs == {"vae": "train-vae@3", "mdnrnn": "train-mdnrnn@3"}
    assert steps["train-mdnrnn@3"].inputs == {"latents": "encode@3"}  # a new VAE: M starts again
    keeping_vae = {step.name: step for step in get_recipe("doom-takecover").expand(1)}
    assert "train-vae@2" not in keeping_vae and keeping_vae["encode@2"].inputs["vae"] == "train-vae"
    assert keeping_vae["train-mdnrnn@2"].inputs == {"latents": "encode@2", "init": "train-mdnrnn"}  # M continues


def test_the_cpu_3h_preset_trains_m_longer_in_the_first_pass_than_in_each_round():
    from wm.recipe import get_recipe, step_config

    recipe = get_recipe("doom-takecover")
    steps = {step.name: step for step in recipe.expand(4)}
    config = {name: step_config(recipe, step, "cpu-3h", {}) for name, step in steps.items()}
    assert [config[name].epochs for name in ("train-mdnrnn", "train-mdnrnn@2", "train-mdnrnn@3", "train-mdnrnn@5")] == [8, 4, 4, 4]
    assert config["train-mdnrnn@3"].sequence_length == 2100 and config["train-mdnrnn@3"].batch_size == 16
    assert config["rollout@2"].episodes == config["rollout"].episodes == 1000
    assert (config["rollout@2"].policy, config["rollout@2"].controller_noise) == ("controller", 0.1)
    assert config["train-controller@3"].generations == 40 and config["evaluate@3"].episodes == 100
    assert config["train-vae"].epochs * config["train-vae"].batches_per_epoch == 8000
    assert config["train-vae"].batches_per_epoch < 1000 * 320 // config["train-vae"].batch_size  # an epoch of random episodes holds more


def test_an_override_for_every_round_sits_between_the_base_name_and_one_round():
    from wm.errors import ConfigError
    from wm.recipe import _step_overrides, get_recipe, step_config

    recipe = get_recipe("doom-takecover")
    steps = {step.name: step for step in recipe.expand(2)}
    sets = ["train-controller.generations=7", "train-controller@*.generations=5", "train-controller@3.generations=3"]
    overrides = _step_overrides(list(steps.values()), None, sets)
    generations = [step_config(recipe, steps[name], None, overrides).generations for name in ("train-controller", "train-controller@2", "train-controller@3")]
    assert generations == [7, 5, 3]
    with pytest.raises(ConfigError, match="'train-controller@\\*' needs --iterations"):
        _step_overrides(list(recipe.expand(0)), None, ["train-controller@*.generations=5"])  # no rounds, no such step


def test_every_preset_override_names_a_step_of_its_recipe():
    from wm.pipelines import RECIPES

    for recipe in RECIPES.values():
        steps = recipe.expand(3, retrain_vae=True) if recipe.iteration else recipe.steps
        names = {key for step in steps for key in step.override_keys()}
        for preset, overrides in recipe.presets.items():
            unknown = set(overrides) - names
            assert not unknown, f"{recipe.name} preset {preset} overrides steps it does not have: {unknown}"


def test_evaluation_on_a_real_ray_runtime_matches_this_process(controllers, tmp_path):
    serial = run_stage("evaluate", tmp_path / "serial.h5", {"controller": controllers["dream"]}, backend="serial", dream_episodes=0)
    on_ray = run_stage("evaluate", tmp_path / "ray.h5", {"controller": controllers["dream"]}, backend="ray", dream_episodes=0)
    assert serial.status == on_ray.status == "written"
    with open_artifact(tmp_path / "serial.h5", "evaluation") as a, open_artifact(tmp_path / "ray.h5", "evaluation") as b:
        for name in ("episode/seed", "episode/length", "episode/return"):
            np.testing.assert_array_equal(a.file[name][:], b.file[name][:])
