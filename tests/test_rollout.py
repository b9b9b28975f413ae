"""`wm rollout` on the real environments: schema, step alignment, determinism, resume, Ray, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import error_line, read_all, rollout, run_wm
from wm.envs import make_env
from wm.io.artifact import open_artifact
from wm.io.rollouts import RolloutsReader, partial_path


@pytest.fixture(scope="module")
def doom_rollouts(tmp_path_factory) -> Path:
    return rollout(tmp_path_factory.mktemp("doom"), env="doom-takecover", episodes=3, max_steps=400, backend="process")


@pytest.fixture(scope="module")
def carracing_rollouts(tmp_path_factory) -> Path:
    return rollout(tmp_path_factory.mktemp("car"), env="carracing", episodes=2, max_steps=60, backend="process")


@pytest.mark.parametrize("which", ["doom_rollouts", "carracing_rollouts"])
def test_schema_of_real_environment_rollouts(which, request):
    path = request.getfixturevalue(which)
    with open_artifact(path, "rollouts") as artifact:
        f = artifact.file
        n = f["reward"].shape[0]
        assert f["obs"].shape == (n, 64, 64, 3) and f["obs"].dtype == np.uint8
        if which == "doom_rollouts":
            assert f["action"].shape == (n,) and f["action"].dtype == np.int64
            assert set(np.unique(f["action"][:])) <= {0, 1, 2}
            assert artifact.attr("policy") == "held" and artifact.attr("env_id") == "doom-takecover"
        else:
            assert f["action"].shape == (n, 3) and f["action"].dtype == np.float32
            assert artifact.attr("policy") == "brownian" and artifact.attr("env_id") == "carracing"
        assert f["terminated"].dtype == bool and f["truncated"].dtype == bool
        lengths = f["episode/length"][:]
        ends = f["episode/start"][:] + lengths - 1
        done = f["terminated"][:] | f["truncated"][:]
        assert done[ends].all() and done.sum() == len(lengths)  # exactly one end per episode, at its last step
        assert json.loads(artifact.attr("observation_space_json"))["shape"] == [64, 64, 3]
        assert np.allclose(f["episode/return"][:], [f["reward"][s : s + l].sum() for s, l in zip(f["episode/start"][:], lengths)])


@pytest.mark.parametrize("which", ["doom_rollouts", "carracing_rollouts"])
def test_step_alignment_obs_is_the_frame_before_the_action(which, request):
    """Replaying the recorded actions from the recorded seed reproduces every stored frame and reward."""
    path = request.getfixturevalue(which)
    with open_artifact(path, "rollouts") as artifact:
        episode = RolloutsReader(artifact).episode(0)
        env = make_env(artifact.attr("env_id"), int(artifact.attr("max_steps")))
    observation, _ = env.reset(seed=episode.seed)
    for i in range(episode.length):
        assert np.array_equal(observation, episode.obs[i]), f"obs[{i}] is not the frame action[{i}] was chosen on"
        observation, reward, terminated, truncated, _ = env.step(episode.action[i])
        assert reward == pytest.approx(episode.reward[i])
        assert (terminated, truncated) == (episode.terminated[i], episode.truncated[i])
    env.close()


def test_terminal_all_zero_doom_frame_is_not_stored(doom_rollouts):
    with open_artifact(doom_rollouts, "rollouts") as artifact:
        reader = RolloutsReader(artifact)
        deaths = 0
        for episode in reader.episodes():
            assert episode.obs.reshape(episode.length, -1).max(axis=1).min() > 0, "an all-zero frame was stored"
            deaths += int(episode.terminated[-1])
        assert deaths >= 1  # at least one episode ended in death, where ViZDoom returns the zero frame


def test_same_seed_gives_identical_datasets_with_one_and_two_workers(tmp_path):
    one = rollout(tmp_path, "one.h5", env="doom-takecover", episodes=5, max_steps=300, backend="process", workers=1)
    two = rollout(tmp_path, "two.h5", env="doom-takecover", episodes=5, max_steps=300, backend="process", workers=2)
    a, b = read_all(one), read_all(two)
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    with h5py.File(one) as f1, h5py.File(two) as f2:
        assert f1.attrs["fingerprint"] == f2.attrs["fingerprint"]
    other = read_all(rollout(tmp_path, "other.h5", seed=1, env="doom-takecover", episodes=5, max_steps=300))
    assert not np.array_equal(other["episode/seed"], a["episode/seed"])


def test_ray_backend_on_a_real_local_runtime_matches_the_process_pool(tmp_path):
    ray_out = rollout(tmp_path, "ray.h5", env="fake-pixels", episodes=4, backend="ray", workers=2)
    pool_out = rollout(tmp_path, "pool.h5", env="fake-pixels", episodes=4, backend="process", workers=2)
    a, b = read_all(ray_out), read_all(pool_out)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def _committed_episodes(partial: Path) -> int:
    try:
        with h5py.File(partial, "r", locking=False) as f:
            return int(f.attrs.get("partial_committed_episodes", 0))
    except (OSError, KeyError):
        return 0


def _start_rollout(out: Path, episodes: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wm", "rollout", "--env", "doom-takecover", "--episodes", str(episodes),
         "--max-steps", "300", "--workers", "2", "--seed", "3", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A test run started in the background (`make test &`) inherits SIGINT ignored, and Python then never
        # raises KeyboardInterrupt; give the command the default disposition, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_episodes(process: subprocess.Popen, partial: Path, at_least: int) -> None:
    deadline = time.monotonic() + 120
    while _committed_episodes(partial) < at_least:
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no episode was committed in time"
        time.sleep(0.2)


def test_sigkilled_run_leaves_no_output_and_resumes(tmp_path):
    out = tmp_path / "killed.h5"
    partial = partial_path(out)
    process = _start_rollout(out, 60)
    _wait_for_episodes(process, partial, 3)
    process.kill()  # SIGKILL: no handler runs
    process.wait()
    assert not out.exists() and partial.exists()
    kept = _committed_episodes(partial)
    result = run_wm("rollout", "--env", "doom-takecover", "--episodes", "60", "--max-steps", "300",
                    "--workers", "2", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Resuming from" in result.stderr and not partial.exists()
    resumed = read_all(out)
    fresh = read_all(rollout(tmp_path, "fresh.h5", env="doom-takecover", episodes=60, max_steps=300, seed=3, backend="process"))
    for name in fresh:
        assert np.array_equal(resumed[name], fresh[name]), name
    assert kept >= 3


def test_ctrl_c_keeps_finished_episodes_and_exits_130(tmp_path):
    out = tmp_path / "interrupted.h5"
    partial = partial_path(out)
    process = _start_rollout(out, 1000)  # far more than can finish before the interrupt
    _wait_for_episodes(process, partial, 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Interrupted:" in stderr and "run the same command again to resume" in stderr
    assert not out.exists() and _committed_episodes(partial) >= 2


# ---- bad input: one sentence, non-zero exit, nothing overwritten ----


def test_unknown_environment(tmp_path):
    result = run_wm("rollout", "--env", "doom", "--out", str(tmp_path / "x.h5"))
    assert result.returncode == 2
    assert "known environments: carracing, doom-takecover, fake-pixels" in error_line(result)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("episodes", ["0", "-4"])
def test_episodes_zero_or_negative(tmp_path, episodes):
    result = run_wm("rollout", "--env", "fake-pixels", "--episodes", episodes, "--out", str(tmp_path / "x.h5"))
    assert result.returncode == 2 and "'episodes' must be at least 1" in error_line(result)


def test_existing_output_with_another_fingerprint_is_refused_unless_forced(tmp_path, fake_rollouts):
    before = fake_rollouts.read_bytes()
    args = ("rollout", "--env", "fake-pixels", "--episodes", "2", "--backend", "serial", "--out", str(fake_rollouts))
    result = run_wm(*args)
    assert result.returncode == 2 and "pass --force" in error_line(result)
    assert fake_rollouts.read_bytes() == before
    result = run_wm(*args, "--force")
    assert result.returncode == 0, result.stderr
    with open_artifact(fake_rollouts) as artifact:
        assert RolloutsReader(artifact).num_episodes == 2


def test_same_command_again_is_up_to_date(tmp_path):
    args = ("rollout", "--env", "fake-pixels", "--episodes", "2", "--backend", "serial", "--out", str(tmp_path / "a.h5"))
    assert run_wm(*args).returncode == 0
    stamp = os.stat(tmp_path / "a.h5").st_mtime_ns
    result = run_wm(*args, "--workers", "1")  # execution settings do not change the fingerprint
    assert result.returncode == 0 and "up to date" in result.stderr
    assert os.stat(tmp_path / "a.h5").st_mtime_ns == stamp


def test_output_folder_not_writable():
    result = run_wm("rollout", "--env", "fake-pixels", "--episodes", "1", "--out", "/proc/wm-test/x.h5")
    assert result.returncode == 2 and "is not writable" in error_line(result)


def test_ray_address_not_reachable(tmp_path):
    result = run_wm("rollout", "--env", "fake-pixels", "--episodes", "1", "--backend", "ray",
                    "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "x.h5"), timeout=60)
    assert result.returncode == 2 and "Could not reach the Ray cluster at 127.0.0.1:9" in error_line(result)
    assert not any(tmp_path.iterdir())


def test_ray_not_installed(tmp_path):
    # Shadow the installed package with one that fails to import, as on a machine without Ray.
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('No module named ray')\n")
    result = run_wm("rollout", "--env", "fake-pixels", "--episodes", "1", "--backend", "ray",
                    "--out", str(tmp_path / "x.h5"), env={"PYTHONPATH": str(blocker)})
    assert result.returncode == 2 and "needs Ray, which is not installed" in error_line(result)
    assert not (tmp_path / "x.h5").exists()


def test_unfinished_run_with_other_settings_is_not_discarded(tmp_path):
    out = tmp_path / "a.h5"
    partial = partial_path(out)
    partial.write_bytes(b"left over")
    result = run_wm("rollout", "--env", "fake-pixels", "--episodes", "1", "--out", str(out))
    assert result.returncode == 2 and "pass --force to discard it" in error_line(result)
    assert partial.read_bytes() == b"left over"
