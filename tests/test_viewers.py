"""Artifacts open in the tools the users inspect them with: Debian's h5dump prints their data."""

from __future__ import annotations

import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="h5dump is not installed (Debian: apt-get install hdf5-tools)")
@pytest.mark.parametrize("artifact, dataset", [("rollouts", "/obs"), ("rollouts", "/reward"), ("rollouts", "/action"),
                                               ("latents", "/mu"), ("latents", "/reward")])
def test_h5dump_prints_the_data_of_default_rollouts_and_latents(chain, artifact, dataset):
    path = chain[artifact]
    with h5py.File(path) as f:
        first = f[dataset][0].reshape(-1)[:3]
        count = ",".join(["1"] + [str(min(3, n)) if i == len(f[dataset].shape) - 2 else "1" for i, n in enumerate(f[dataset].shape[1:])])
    result = subprocess.run(["h5dump", "-d", dataset, "-c", count, "-m", "%.9g", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "unable to print data" not in result.stdout + result.stderr
    data = re.sub(r"\([\d,]+\):", " ", result.stdout.split("DATA {", 1)[1].split("}", 1)[0])  # drop the "(0,0,0,1):" indices
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", data)]
    np.testing.assert_allclose(numbers, np.asarray(first, np.float64)[: len(numbers)], rtol=1e-6)
    assert len(numbers) == min(3, len(first))
