"""The built distribution: stages/ and pipelines/ install as wm.stages and wm.pipelines, nothing else on top."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_puts_stages_and_pipelines_inside_wm(tmp_path):
    # Built from a copy: setuptools leaves a build/ folder beside the setup.py it builds.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "artifacts", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("wm_worldmodels-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"wm"}
    assert "wm/stages/rollout.py" in names and "wm/pipelines/__init__.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "wm = wm.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
