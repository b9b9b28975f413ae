"""Stages train-vae, encode, train-mdnrnn and dream on the tiny preset; resume after SIGKILL; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import error_line, fails_cleanly, rollout, run_stage, run_wm, sigkill_when
from wm.io.artifact import open_artifact
from wm.io.integrity import seal


def test_vae_artifact_holds_weights_history_and_viewable_samples(chain):
    from wm.io.models import read_model
    from wm.worldmodels.vae import build_vae

    with open_artifact(chain["vae"], "vae") as vae:
        f = vae.file
        assert len(json.loads(vae.attr("history_json"))) == 2 and f["history/heldout_reconstruction"].shape == (2,)
        for name in ("original", "reconstruction", "comparison"):
            assert f[f"samples/{name}"].attrs["CLASS"] == b"IMAGE" and f[f"samples/{name}"].dtype == np.uint8
        assert f["samples/comparison"].shape[1:] == (64, 130, 3)
        model = read_model(vae, build_vae)
        originals = f["samples/original"][:]
        reconstruction = np.round(model(originals.astype(np.float32) / 255.0)[0].numpy() * 255)
        assert np.abs(reconstruction - f["samples/reconstruction"][:]).max() <= 1  # the stored weights reproduce it
    logs = chain["vae"].parent / "vae.logs"
    assert len((logs / "metrics.jsonl").read_text().splitlines()) == 2 and (logs / "loss.png").stat().st_size > 1000
    assert any((logs / "tensorboard").iterdir())
    assert not (chain["vae"].parent / "vae.ckpt").exists()  # removed once the artifact is written


def test_latents_are_step_aligned_with_the_rollouts(chain):
    from wm.io.models import read_model
    from wm.worldmodels.vae import build_vae

    with open_artifact(chain["latents"], "latents") as latents, open_artifact(chain["rollouts"], "rollouts") as rollouts, \
            open_artifact(chain["vae"], "vae") as vae:
        for name in ("action", "reward", "terminated", "truncated", "episode/start", "episode/length"):
            np.testing.assert_array_equal(latents.file[name][:], rollouts.file[name][:])
        assert latents.file["mu"].shape == (rollouts.file["obs"].shape[0], 8)
        assert latents.attr("vae_fingerprint") == vae.fingerprint
        assert {ref["name"]: ref["fingerprint"] for ref in latents.inputs} == {"rollouts": rollouts.fingerprint, "vae": vae.fingerprint}
        model = read_model(vae, build_vae)
        mu, logvar = model.encode(rollouts.file["obs"][10:13].astype(np.float32) / 255.0)
        np.testing.assert_allclose(latents.file["mu"][10:13], mu.numpy(), atol=1e-4)
        np.testing.assert_allclose(latents.file["logvar"][10:13], logvar.numpy(), atol=1e-4)


def test_mdnrnn_artifact_holds_per_dimension_history_done_metrics_and_first_frames(chain):
    with open_artifact(chain["mdnrnn"], "mdnrnn") as mdnrnn, open_artifact(chain["latents"], "latents") as latents:
        f = mdnrnn.file
        assert f["history/heldout_nll_per_dimension"].shape == (2, 8)
        assert f["history/train_nll_per_dimension"].shape == (2, 8)
        for key in ("heldout_done_auc", "heldout_done_precision", "heldout_done_recall", "heldout_copy_baseline_nll"):
            assert f[f"history/{key}"].shape == (2,)
        starts = latents.file["episode/start"][:]
        np.testing.assert_array_equal(f["initial/mu"][:], latents.file["mu"][:][starts])
        assert mdnrnn.attr("vae_fingerprint") == latents.attr("vae_fingerprint")
        assert f["initial/heldout"][:].sum() == 1


def test_same_command_again_is_up_to_date(chain):
    result = run_stage("train-mdnrnn", chain["mdnrnn"], {"latents": chain["latents"]})
    assert result.status == "up-to-date"


def test_init_starts_from_the_given_weights_and_must_match(chain, tmp_path):
    from wm.io.models import read_model
    from wm.worldmodels.mdnrnn import build_mdnrnn

    out = tmp_path / "continued.h5"  # a learning rate of 1e-9: one epoch leaves the starting weights as they were
    assert run_stage("train-mdnrnn", out, {"latents": chain["latents"], "init": chain["mdnrnn"]}, epochs=1, learning_rate=1e-9).status == "written"
    fresh = tmp_path / "fresh.h5"
    run_stage("train-mdnrnn", fresh, {"latents": chain["latents"]}, seed=1, epochs=1, learning_rate=1e-9)
    with open_artifact(chain["mdnrnn"], "mdnrnn") as a, open_artifact(out, "mdnrnn") as b, open_artifact(fresh, "mdnrnn") as c:
        start, continued, other = (read_model(x, build_mdnrnn).get_weights() for x in (a, b, c))
        assert [i["name"] for i in b.inputs] == ["latents", "init"]
    assert all(np.allclose(x, y, atol=1e-6) for x, y in zip(start, continued))
    assert not all(np.allclose(x, y, atol=1e-6) for x, y in zip(start, other))
    message = fails_cleanly(tmp_path, "train-mdnrnn", "--latents", str(chain["latents"]), "--init", str(chain["mdnrnn"]),
                            "--preset", "tiny", "--units", "24")
    assert "has units = 16 but this run asks for 24" in message


def test_dream_and_compare_write_gifs(chain, tmp_path):
    from PIL import Image

    run_stage("dream", tmp_path / "dream.gif", {"vae": chain["vae"], "mdnrnn": chain["mdnrnn"]}, done_threshold=0.99)
    run_stage("dream", tmp_path / "compare.gif", {"vae": chain["vae"], "mdnrnn": chain["mdnrnn"], "compare": chain["rollouts"]})
    dream, compare = Image.open(tmp_path / "dream.gif"), Image.open(tmp_path / "compare.gif")
    assert dream.size == (64, 64) and dream.n_frames >= 1
    assert compare.size == (4 * 64 + 6, 64 + 14) and compare.n_frames == 10  # real | VAE | one-step | the dream of the same actions


def test_inspect_summarises_each_kind(chain):
    for kind in ("vae", "latents", "mdnrnn"):
        result = run_wm("inspect", str(chain[kind]))
        assert result.returncode == 0 and f"{kind} artifact" in result.stdout, result.stderr


# --- resume after SIGKILL -------------------------------------------------------------------------


def _checkpoint_step(path: Path) -> int:
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["state_json"])["step"]
    except (OSError, KeyError):
        return -1


def _weights(path: Path) -> list[np.ndarray]:
    with h5py.File(path, "r") as f:
        return [f["model"][name][()] for name in sorted(f["model"])]


@pytest.mark.parametrize(
    "stage, input_name, extra",
    [("train-vae", "rollouts", ["--epochs", "3"]), ("train-mdnrnn", "latents", ["--epochs", "4"]),
     # The same checkpoint path in bfloat16: by hand (pytest -m slow), to keep the default run within its budget.
     pytest.param("train-vae", "rollouts", ["--epochs", "3", "--precision", "mixed_bfloat16"], marks=pytest.mark.slow)],
)
def test_training_resumes_after_sigkill_and_matches_an_uninterrupted_run(chain, tmp_path, stage, input_name, extra):
    args = [stage, f"--{input_name}", str(chain[input_name]), "--preset", "tiny", "--set", "checkpoint_seconds=0", *extra]
    killed = tmp_path / "killed" / "model.h5"
    checkpoint = killed.parent / "model.ckpt" / "checkpoint.h5"
    sigkill_when([*args, "--out", str(killed)], lambda: _checkpoint_step(checkpoint) >= 5)
    assert not killed.exists()
    resumed = run_wm(*args, "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stderr
    straight = run_wm(*args, "--out", str(tmp_path / "straight" / "model.h5"))
    assert straight.returncode == 0, straight.stderr
    for a, b in zip(_weights(killed), _weights(tmp_path / "straight" / "model.h5")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with h5py.File(killed) as f:
        assert len(json.loads(f.attrs["history_json"])) == int(extra[1])


# --- bad input: one sentence, exit code 2, nothing overwritten --------------------------------------


def test_frames_that_do_not_fit_the_vae_are_refused(chain, tmp_path):
    cartpole = rollout(tmp_path, "cartpole.h5", env="CartPole-v1", episodes=2, max_steps=5)
    message = fails_cleanly(tmp_path, "train-vae", "--rollouts", str(cartpole), "--preset", "tiny")
    assert "do not fit the VAE" in message and "64x64 RGB uint8" in message
    message = fails_cleanly(tmp_path, "encode", "--rollouts", str(cartpole), "--vae", str(chain["vae"]))
    assert "do not fit the VAE" in message


def test_an_artifact_of_the_wrong_kind_is_refused(chain, tmp_path):
    message = fails_cleanly(tmp_path, "encode", "--rollouts", str(chain["rollouts"]), "--vae", str(chain["latents"]))
    assert "is a 'latents' artifact, but a 'vae' artifact is needed" in message
    message = fails_cleanly(
        tmp_path, "dream", "--vae", str(chain["vae"]), "--mdnrnn", str(chain["vae"]), out_name="d.gif"
    )
    assert "a 'mdnrnn' artifact is needed" in message


def test_dream_refuses_a_vae_other_than_the_one_that_made_the_latents(chain, tmp_path):
    other_vae = tmp_path / "other-vae.h5"
    run_stage("train-vae", other_vae, {"rollouts": chain["rollouts"]}, seed=1, epochs=1)
    message = fails_cleanly(
        tmp_path, "dream", "--vae", str(other_vae), "--mdnrnn", str(chain["mdnrnn"]), out_name="d.gif"
    )
    assert "trained on latents made by another VAE" in message


def test_compare_refuses_rollouts_of_another_action_space(chain, tmp_path):
    carracing = rollout(tmp_path, "car.h5", env="carracing", episodes=1, max_steps=3)
    message = fails_cleanly(
        tmp_path, "dream", "--vae", str(chain["vae"]), "--mdnrnn", str(chain["mdnrnn"]), "--compare", str(carracing),
        out_name="c.gif",
    )
    assert "action space" in message and "same environment" in message


def test_single_step_and_empty_episodes_are_refused(chain, tmp_path):
    single = rollout(tmp_path, "single.h5", env="fake-pixels", episodes=3, max_steps=1)
    latents = tmp_path / "single-latents.h5"
    run_stage("encode", latents, {"rollouts": single, "vae": chain["vae"]})
    message = fails_cleanly(tmp_path, "train-mdnrnn", "--latents", str(latents), "--preset", "tiny")
    assert "fewer than 2 steps" in message

    empty = tmp_path / "empty.h5"
    empty.write_bytes(chain["rollouts"].read_bytes())
    with h5py.File(empty, "a") as f:  # a valid rollouts artifact with no episodes
        for name in ("obs", "action", "reward", "terminated", "truncated", "episode/start", "episode/length",
                     "episode/seed", "episode/return"):
            f[name].resize(0, axis=0)
        seal(f)  # as a stage would have written it
    assert "at least 2 episodes" in fails_cleanly(tmp_path, "train-vae", "--rollouts", str(empty), "--preset", "tiny")
    assert "holds no steps" in fails_cleanly(tmp_path, "encode", "--rollouts", str(empty), "--vae", str(chain["vae"]))


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_temperature_must_be_positive(chain, tmp_path, value):
    message = fails_cleanly(
        tmp_path, "dream", "--vae", str(chain["vae"]), "--mdnrnn", str(chain["mdnrnn"]), "--temperature", value,
        out_name="d.gif",
    )
    assert ("'temperature' must be a finite positive number" if value in ("0", "-1") else "'temperature' must be a finite number") in message


def test_run_refuses_an_unknown_pipeline(tmp_path):
    result = run_wm("run", "doom-takecovr", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Did you mean 'doom-takecover'" in error_line(result)
    assert not (tmp_path / "run").exists()


def test_a_diverging_loss_stops_training_and_keeps_the_last_good_checkpoint(chain, tmp_path):
    out = tmp_path / "vae.h5"
    result = run_wm(
        "train-vae", "--rollouts", str(chain["rollouts"]), "--preset", "tiny", "--learning-rate", "1e10",
        "--set", "checkpoint_seconds=0", "--out", str(out),
    )
    assert result.returncode == 1
    message = error_line(result)
    assert "became NaN or infinite" in message and "last good checkpoint is kept" in message
    assert not out.exists()
    checkpoint = tmp_path / "vae.ckpt" / "checkpoint.h5"
    with h5py.File(checkpoint) as f:
        assert json.loads(f.attrs["state_json"])["step"] >= 1
        assert all(np.isfinite(f["variables/model"][name][()]).all() for name in f["variables/model"])


@pytest.mark.parametrize("stage, input_name, model_kind", [("train-vae", "rollouts", "vae"), ("train-mdnrnn", "latents", "mdnrnn")])
def test_mixed_bfloat16_trains_in_bfloat16_and_stores_and_evaluates_float32(chain, tmp_path, stage, input_name, model_kind):
    from wm.io.models import read_model
    from wm.worldmodels.mdnrnn import build_mdnrnn
    from wm.worldmodels.vae import build_vae
    from wm.tfsetup import keras

    out = tmp_path / f"{model_kind}.h5"
    assert run_stage(stage, out, {input_name: chain[input_name]}, precision="mixed_bfloat16").status == "written"
    assert keras().config.dtype_policy().name == "float32"  # the stage put the global policy back
    with open_artifact(out, model_kind) as mixed, open_artifact(chain[model_kind], model_kind) as plain:
        assert mixed.fingerprint != plain.fingerprint
        assert json.loads(mixed.attr("config_json"))["precision"] == "mixed_bfloat16"
        model = read_model(mixed, build_vae if model_kind == "vae" else build_mdnrnn)
        assert all(weight.dtype == np.float32 and np.isfinite(weight).all() for weight in model.get_weights())
        history, reference = (json.loads(a.attr("history_json")) for a in (mixed, plain))
        metric = "heldout/reconstruction" if model_kind == "vae" else "heldout/nll"
        # the same data, the same first weights: bfloat16 updates land near the float32 ones after 2 epochs
        assert np.isfinite(history[-1][metric]) and abs(history[-1][metric] - reference[-1][metric]) < 0.1 * abs(reference[-1][metric]) + 0.5
        if model_kind == "vae":  # the stored samples are the float32 model's reconstructions
            reconstruction = np.round(model(mixed.file["samples/original"][:].astype(np.float32) / 255.0)[0].numpy() * 255)
            assert np.abs(reconstruction - mixed.file["samples/reconstruction"][:]).max() <= 1
