"""The `wm` command: help without TensorFlow, inspect, and bad files given to inspect and export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import h5py
import pytest

from tests.conftest import error_line, run_wm
from wm.io.schema import SCHEMAS

HELP_PROBE = """
import sys
from click.testing import CliRunner
from wm.cli import cli
result = CliRunner().invoke(cli, {args!r})
assert result.exit_code == 0, result.output
heavy = [m for m in ("tensorflow", "keras", "tensorflow_probability", "gymnasium", "vizdoom") if m in sys.modules]
print(",".join(heavy) or "none")
"""


@pytest.mark.parametrize("args", [["--help"], ["rollout", "--help"], ["inspect", "--help"], ["export", "minari", "--help"], ["train-dreamer", "--help"], ["run", "--help"]])
def test_help_does_not_import_tensorflow(args):
    result = subprocess.run([sys.executable, "-c", HELP_PROBE.format(args=args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def test_help_lists_every_config_field_with_its_help():
    result = run_wm("rollout", "--help")
    for option in ("--env", "--episodes", "--max-steps", "--workers", "--backend", "--ray-address", "--config", "--set", "--preset", "--seed", "--out", "--force"):
        assert option in result.stdout


def test_run_help_lists_every_recipe_with_its_presets():
    from wm.pipelines import RECIPES

    result = run_wm("run", "--help")
    assert result.returncode == 0
    for recipe in RECIPES.values():
        assert f"{recipe.name}: {' -> '.join(step.name for step in recipe.steps)}" in result.stdout
        assert f"presets: {', '.join(recipe.presets)}" in result.stdout


def test_inspect_human_and_json(fake_rollouts):
    human = run_wm("inspect", str(fake_rollouts))
    assert human.returncode == 0, human.stderr
    assert "rollouts artifact" in human.stdout and "obs" in human.stdout and "(image stack)" in human.stdout
    assert "return_mean" in human.stdout
    data = json.loads(run_wm("inspect", "--json", str(fake_rollouts)).stdout)
    assert data["kind"] == "rollouts" and data["summary"]["episodes"] == 3
    obs = next(d for d in data["datasets"] if d["name"] == "obs")
    assert obs["chunks"] == [4, 64, 64, 3] and obs["compression"] == "gzip" and obs["image"]
    assert data["config"]["env"] == "fake-pixels" and data["system"]["h5py"]


def _bad_files(tmp_path, fake_rollouts):
    text = tmp_path / "text.h5"
    text.write_text("hello")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(fake_rollouts.read_bytes()[:4000])
    wrong_kind = tmp_path / "vae.h5"
    shutil.copy(fake_rollouts, wrong_kind)
    with h5py.File(wrong_kind, "a") as f:
        f.attrs["wm_kind"] = "vae"
    newer = tmp_path / "newer.h5"
    shutil.copy(fake_rollouts, newer)
    with h5py.File(newer, "a") as f:
        f.attrs["wm_schema_version"] = SCHEMAS["rollouts"].version + 1
    return {
        "text": (text, "is not an HDF5 file"),
        "truncated": (truncated, "truncated or corrupted"),
        "wrong_kind": (wrong_kind, "is a 'vae' artifact, but a 'rollouts' artifact is needed"),
        "newer": (newer, "newer than this wm"),
        "missing": (tmp_path / "missing.h5", "does not exist"),
    }


@pytest.mark.parametrize("case", ["text", "truncated", "wrong_kind", "newer", "missing"])
def test_bad_files_given_to_inspect_and_export(tmp_path, fake_rollouts, case):
    path, message = _bad_files(tmp_path, fake_rollouts)[case]
    before = path.read_bytes() if path.exists() else None
    commands = [["export", "minari", str(path), "--dataset-id", "wm/bad-v0"]]
    if case != "wrong_kind":  # inspect reads every kind
        commands.append(["inspect", str(path)])
    for command in commands:
        result = run_wm(*command, env={"MINARI_DATASETS_PATH": str(tmp_path / "minari")})
        assert result.returncode == 2, result.stderr
        assert message in error_line(result)
    if before is not None:
        assert path.read_bytes() == before


# A TensorFlow start-up log line: absl's preamble, a C++ log line (`I0000 00:00:1796... port.cc:153] ...`) or the CUDA probe.
TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.-]+:\d+\]"
                         r"|To enable the following instructions:)|oneDNN custom operations|cuda drivers|cuInit")


def test_a_tensorflow_stage_prints_no_tensorflow_log_lines(chain, tmp_path):
    args = ("encode", "--rollouts", str(chain["rollouts"]), "--vae", str(chain["vae"]), "--out", str(tmp_path / "l.h5"))
    quiet = run_wm(*args)
    assert quiet.returncode == 0, quiet.stderr
    noise = [line for line in (quiet.stdout + quiet.stderr).splitlines() if TF_LOG_LINE.search(line)]
    assert noise == [], noise
    assert "Wrote" in quiet.stderr
    loud = run_wm("--verbose", *args[:-1], str(tmp_path / "l2.h5"))
    assert loud.returncode == 0 and any(TF_LOG_LINE.search(line) for line in loud.stderr.splitlines()), "--verbose shows them"
