"""One writer per output: the lock, --force against a live run, --out equal to an input, and commits
that never move a file they did not write or replace an output that changed meanwhile."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from tests.conftest import rollout
from wm.errors import OutputExistsError, OutputLockedError


def wm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wm", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, f"the first run ended early: {process.stderr.read() if process.stderr else ''}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_second_run_on_a_live_output_is_refused_even_with_force(tmp_path: Path) -> None:
    first = subprocess.Popen(
        [sys.executable, "-m", "wm", "rollout", "--env", "fake-pixels", "--episodes", "100000", "--backend", "serial", "--out", "r.h5"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        partial = tmp_path / ".r.h5.partial"
        wait_for(partial, first)
        inode = partial.stat().st_ino
        for extra in ((), ("--force",)):
            second = wm("rollout", "--env", "fake-pixels", "--episodes", "3", "--max-steps", "5", "--backend", "serial", "--out", "r.h5", *extra, cwd=tmp_path)
            assert second.returncode == 2, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and f"process {first.pid}" in lines[0] and "being written by another run" in lines[0], second.stderr
            assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first run must keep going"
        assert partial.stat().st_ino == inode, "--force must not touch the live run's partial file"
        assert not (tmp_path / "r.h5").exists()
        first.send_signal(signal.SIGUSR1)  # prints its stacks and goes on
        time.sleep(1)
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        try:
            first.wait(timeout=120)
        except subprocess.TimeoutExpired:
            first.send_signal(signal.SIGUSR1)
            time.sleep(2)
            first.kill()
            pytest.fail(f"the run did not stop within 120 s of SIGINT; its stderr ends with:\n{first.communicate()[1][-4000:]}")
    stderr = first.stderr.read()
    assert "most recent call first" in stderr  # the SIGUSR1 stack dump
    assert first.returncode == 130, stderr  # interrupted by us, its finished episodes kept
    assert partial.exists()
    assert not (tmp_path / ".r.h5.lock").exists(), "the lock file is removed when the run ends"


def test_a_killed_run_leaves_no_lock_behind(tmp_path: Path) -> None:
    first = subprocess.Popen(
        [sys.executable, "-m", "wm", "rollout", "--env", "fake-pixels", "--episodes", "100000", "--backend", "serial", "--out", "r.h5"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(tmp_path / ".r.h5.partial", first)
    first.kill()
    first.wait(timeout=60)
    # The same command with fewer episodes: a new configuration, so it needs --force, and it is allowed to run.
    second = wm("rollout", "--env", "fake-pixels", "--episodes", "2", "--max-steps", "5", "--backend", "serial", "--out", "r.h5", "--force", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    with h5py.File(tmp_path / "r.h5") as f:
        assert len(f["episode/length"]) == 2


def test_out_equal_to_an_input_is_refused(tmp_path: Path) -> None:
    source = rollout(tmp_path, env="fake-pixels", episodes=2, max_steps=5)
    before = digest(source)
    for out in (str(source), "./r.h5"):
        result = wm("rollout", "--env", "fake-pixels", "--episodes", "2", "--max-steps", "5", "--backend", "serial",
                    "--extend", str(source), "--out", out, "--force", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"Error: --out {Path(out)} is the --extend input; write the output to another file."]
    os.link(source, tmp_path / "hard.h5")
    result = wm("rollout", "--env", "fake-pixels", "--episodes", "2", "--extend", "r.h5", "--out", "hard.h5", "--force", cwd=tmp_path)
    assert result.returncode == 2 and "is the --extend input" in result.stderr
    assert digest(source) == before


def test_commit_refuses_an_output_that_appeared_or_changed_since_the_start(tmp_path: Path) -> None:
    from wm.io.artifact import writing_artifact
    from wm.io.lock import OutputLock

    out = tmp_path / "a.h5"
    for existed in (False, True):
        if existed:
            out.write_bytes(b"first")
        with OutputLock(out, force=False):
            out.write_bytes(b"written by another program meanwhile")
            with pytest.raises(OutputExistsError, match="while this run was working"):
                with writing_artifact(out) as f:
                    f.attrs["x"] = 1
        assert out.read_bytes() == b"written by another program meanwhile"
        assert [p.name for p in tmp_path.iterdir()] == ["a.h5"], "no temporary or lock file is left"
        out.unlink()
    out.write_bytes(b"old")
    with OutputLock(out, force=True):
        out.write_bytes(b"changed")
        with writing_artifact(out) as f:
            f.attrs["x"] = 1
    with h5py.File(out) as f:
        assert f.attrs["x"] == 1


def test_commit_never_moves_a_file_it_did_not_write(tmp_path: Path) -> None:
    from wm.io.artifact import writing_artifact

    out = tmp_path / "a.h5"
    stranger = tmp_path / "stranger"
    stranger.write_bytes(b"not ours")
    with pytest.raises(OutputExistsError, match="is not the file this run wrote"):
        with writing_artifact(out) as f:
            f.attrs["x"] = 1
            os.replace(stranger, tmp_path / ".a.h5.tmp")  # another program puts its file under our temporary name
    assert not out.exists()
    assert (tmp_path / ".a.h5.tmp").read_bytes() == b"not ours", "a file this run did not write is neither moved nor deleted"


def test_the_same_process_cannot_take_one_output_twice(tmp_path: Path) -> None:
    from wm.io.lock import OutputLock

    with OutputLock(tmp_path / "a.h5", force=False):
        with pytest.raises(OutputLockedError):
            with OutputLock(tmp_path / "a.h5", force=False):
                pass


def test_two_pipeline_runs_on_one_folder(tmp_path: Path) -> None:
    from wm.io.lock import OutputLock

    (tmp_path / "run").mkdir()
    with OutputLock(tmp_path / "run" / "manifest.json", force=False):  # a `wm run` in progress in that folder
        result = wm("run", "doom-takecover", "--preset", "tiny", "--out", "run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {tmp_path / 'run' / 'manifest.json'} is being written by another run (process {os.getpid()}")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [], "the refused run writes nothing"
