"""Ctrl-C and SIGTERM as a KeyboardInterrupt that cannot be lost, and a stack dump on SIGUSR1.

Python raises KeyboardInterrupt wherever the main thread happens to be when the signal arrives. If
that is inside a finaliser (an HDF5 object freed by h5py's `__dealloc__`, a generator's `close`),
Python prints "Exception ignored" and the interrupt is gone: the run goes on as if nothing had
been asked. So the handler also records the request, and `check()`, called by every `Progress`
update (each episode, batch or generation of a long loop), raises it again if it was swallowed.

`kill -USR1 PID` prints every thread's Python stack to stderr and lets the run go on: a run that
seems stuck can say where it is.
"""

from __future__ import annotations

import faulthandler
import signal
from typing import Any

_pending = False


def _on_signal(signum: int, frame: Any) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


def install() -> None:
    """Ctrl-C and SIGTERM both stop work the way Ctrl-C does (finished work is kept); SIGUSR1 dumps the stacks."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def check() -> None:
    """Raise KeyboardInterrupt if a stop was asked for and not yet handled (it may have been swallowed)."""
    if _pending:
        clear()
        raise KeyboardInterrupt


def clear() -> None:
    """The stop has been handled (turned into `Interrupted`): later `check()`s pass."""
    global _pending
    _pending = False
