"""Ctrl-C that Python swallowed in a finaliser still stops the run (wm.interrupts)."""

import io
import signal
import sys

import pytest

from wm import interrupts
from wm.progress import Progress


def test_an_interrupt_swallowed_by_a_finaliser_is_raised_at_the_next_progress_update(monkeypatch: pytest.MonkeyPatch) -> None:
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", lambda report: swallowed.append(report.exc_type))

    class Finaliser:
        def __del__(self) -> None:  # where h5py frees HDF5 objects: an exception here cannot propagate
            interrupts._on_signal(signal.SIGINT, None)

    Finaliser()
    assert swallowed == [KeyboardInterrupt], "the interrupt was lost on its way, as in h5py's __dealloc__"
    progress = Progress(10, description="test", unit="ep", stream=io.StringIO())
    with pytest.raises(KeyboardInterrupt):
        progress.update(1)
    progress.update(1)  # raised once: the stop has been handed on
    assert progress.count == 1  # the interrupted update counted nothing
