"""Shared helpers: run the real `wm` command in a subprocess, or a stage in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest


def run_wm(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m wm ARGS` with captured output (the installed package, as a user runs it)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "wm", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The single `Error: ...` sentence of a failed command (and no traceback)."""
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def fails_cleanly(tmp_path: Path, *args: str, out_name: str = "out.h5") -> str:
    """Run `wm ARGS --out FILE` over an existing FILE: expect exit code 2, FILE untouched, one error sentence (returned)."""
    out = tmp_path / out_name
    out.write_bytes(b"keep me")
    result = run_wm(*args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert out.read_bytes() == b"keep me"
    return error_line(result)


def sigkill_when(args: list[str], ready: Callable[[], bool], timeout: float = 300) -> None:
    """Start `wm ARGS`, wait until `ready()` (a checkpoint has been written, say), then SIGKILL it."""
    process = subprocess.Popen([sys.executable, "-m", "wm", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()


def read_all(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file, by name."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: out.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return out


def rollout(tmp_path: Path, name: str = "r.h5", seed: int = 0, force: bool = False, **settings) -> Path:
    """Run the rollout stage in-process (serial backend unless told otherwise)."""
    from wm.config import resolve_config
    from wm.runner import run_stage
    from wm.stages.rollout import STAGE, RolloutConfig

    settings.setdefault("backend", "serial")
    config = resolve_config(RolloutConfig, explicit=settings)
    out = tmp_path / name
    run_stage(STAGE, config, out=out, seed=seed, inputs={}, force=force)
    return out


@pytest.fixture
def fake_rollouts(tmp_path: Path) -> Path:
    """A small rollouts artifact of the fake pixel environment."""
    return rollout(tmp_path, env="fake-pixels", episodes=3)


def run_stage(name: str, out: Path, inputs: dict, seed: int = 0, preset: str = "tiny", **settings):
    """Run stage `name` in-process with a preset and explicit settings."""
    from wm import runner
    from wm.config import resolve_config
    from wm.stages import get_stage

    stage = get_stage(name)
    config = resolve_config(stage.config_class, preset=preset, explicit=settings)
    return runner.run_stage(stage, config, out=out, seed=seed, inputs={k: str(v) for k, v in inputs.items()}, force=False)


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """rollout -> train-vae -> encode -> train-mdnrnn on the fake pixel environment (tiny settings)."""
    folder = tmp_path_factory.mktemp("chain")
    paths = {"rollouts": rollout(folder, "rollouts.h5", env="fake-pixels", episodes=5, max_steps=30)}
    paths["vae"] = folder / "vae.h5"
    run_stage("train-vae", paths["vae"], {"rollouts": paths["rollouts"]})
    paths["latents"] = folder / "latents.h5"
    run_stage("encode", paths["latents"], {"rollouts": paths["rollouts"], "vae": paths["vae"]})
    paths["mdnrnn"] = folder / "mdnrnn.h5"
    run_stage("train-mdnrnn", paths["mdnrnn"], {"latents": paths["latents"]})
    return paths
