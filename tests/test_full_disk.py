"""A full disk: one sentence and exit 1, no crash, no orphan temporary file, and the same command resumes once space is freed.

The disk is a small tmpfs mounted for the test (root only); where it cannot be mounted the tests are skipped with the reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import pytest

from tests.conftest import error_line, run_wm


@pytest.fixture
def small_disk(tmp_path: Path):
    """An 8 MiB tmpfs at tmp_path/disk, and `grow()`, which makes it 256 MiB (space freed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({(mounted.stderr or 'mount failed').strip()}); the full-disk tests need root")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)

    try:
        yield disk, grow
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _check_clean_failure(result: subprocess.CompletedProcess, disk: Path) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    line = error_line(result)
    assert "Exception ignored" not in result.stderr and "Segmentation" not in result.stderr, result.stderr[-2000:]
    leftovers = [p.name for p in disk.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".wm-write-test")]
    assert not leftovers, leftovers
    return line


def test_a_rollout_that_fills_the_disk_stops_cleanly_and_resumes(small_disk) -> None:
    disk, grow = small_disk
    out = disk / "r.h5"
    args = ["rollout", "--env", "fake-pixels", "--episodes", "40", "--max-steps", "30", "--backend", "serial",
            "--compression", "none", "--out", str(out)]
    line = _check_clean_failure(run_wm(*args), disk)
    assert "No space left" in line and "run the same command again" in line and "episodes written so far are kept" in line, line
    assert not out.exists()
    grow()
    resumed = run_wm(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from" in resumed.stderr + resumed.stdout
    with h5py.File(out) as f:
        assert f["episode/start"].shape == (40,)


def test_training_that_cannot_write_its_checkpoint_stops_cleanly_and_reruns(small_disk, chain) -> None:
    disk, grow = small_disk
    out = disk / "vae.h5"
    args = ["train-vae", "--rollouts", str(chain["rollouts"]), "--preset", "tiny", "--out", str(out)]
    line = _check_clean_failure(run_wm(*args), disk)
    assert "No space left" in line, line
    assert not out.exists()
    grow()
    assert run_wm(*args).returncode == 0 and out.exists()
