"""Engines die with the process that started them, even when that process is killed with SIGKILL.

ViZDoom runs its engine as a child process. A Python process killed by SIGKILL cannot close its
environments, so the engine would keep running as an orphan. Parallel workers are covered by their
parent-death signal (`wm.parallel`); for every other process that starts an engine (the serial
backend, `wm train-dreamer`), a small reaper process is started beside it. It reads the engine
PIDs it must watch from a pipe; when the pipe closes without the word "exit" (the process died:
the kernel closes its end), it kills those engines. A normal exit says "exit" first, and a closed
environment takes its engine off the list, so the reaper never signals a PID that was reused.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from typing import IO

_REAPER_CODE = r"""
import os, signal, sys
watched = set()
for line in sys.stdin:
    word = line.strip()
    if word == "exit":
        sys.exit(0)
    if word.startswith("-"):
        watched.discard(int(word[1:]))
    elif word:
        watched.add(int(word))
for pid in watched:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""

_reaper: tuple[int, subprocess.Popen] | None = None  # (the process it watches over, the reaper)


def child_processes(name: str, parent: int | None = None) -> list[int]:
    """PIDs of the children of `parent` (default: this process) whose command name (`/proc/PID/comm`) is `name`."""
    me, found = os.getpid() if parent is None else parent, []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:  # it ended meanwhile
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm == name and int(rest[1]) == me:
            found.append(int(entry))
    return found


def _pipe() -> IO[str]:
    global _reaper
    if _reaper is None or _reaper[0] != os.getpid():  # a forked child needs its own
        process = subprocess.Popen(
            [sys.executable, "-c", _REAPER_CODE], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            text=True, start_new_session=True,  # its own session: Ctrl-C in the terminal does not reach it
        )
        _reaper = (os.getpid(), process)
        atexit.register(_dismiss, process)
    return _reaper[1].stdin


def watch(pids: list[int]) -> None:
    """Kill these child processes if this process dies without closing them."""
    if not pids or not sys.platform.startswith("linux"):
        return
    pipe = _pipe()
    pipe.write("".join(f"{pid}\n" for pid in pids))
    pipe.flush()


def release(pids: list[int]) -> None:
    """These children ended normally: stop watching them."""
    if not pids or _reaper is None or _reaper[0] != os.getpid():
        return
    try:
        _reaper[1].stdin.write("".join(f"-{pid}\n" for pid in pids))
        _reaper[1].stdin.flush()
    except (OSError, ValueError):  # the reaper is gone (interpreter shutting down)
        pass


def _dismiss(process: subprocess.Popen) -> None:
    """A normal exit: the reaper leaves without killing anything."""
    try:
        process.stdin.write("exit\n")
        process.stdin.close()
    except (OSError, ValueError):
        pass
