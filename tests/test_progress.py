"""The progress log's ETA."""

import io

from wm import progress as progress_module
from wm.progress import Progress


def _eta_seconds(line: str) -> float:
    return float(line.rsplit("ETA ", 1)[1].split(" s")[0])


def test_the_eta_counts_only_the_pace_after_a_restart(monkeypatch):
    """A fast prefill (1,000 steps in 1 s) followed by slow training (100 steps in 100 s) must not predict the rest at
    the average pace of both (~83 s for the last 900 steps); from the restart on, the pace is 1 step a second."""
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    progress = Progress(2000, description="run", unit="steps", stream=stream)
    clock[0] = 1.0
    progress.update(1000)
    progress.restart_rate()
    clock[0] = 101.0
    progress.update(100)
    lines = stream.getvalue().splitlines()
    assert "101 s elapsed" in lines[-1]  # elapsed still counts from the start
    assert _eta_seconds(lines[-1]) == 900.0
    without_restart = Progress(2000, description="run", unit="steps", stream=io.StringIO())
    without_restart.update(1100)
    clock[0] = 202.0
    without_restart.update(0)
    assert _eta_seconds(without_restart.stream.getvalue().splitlines()[-1]) < 100  # the average pace, fooled by the prefill
