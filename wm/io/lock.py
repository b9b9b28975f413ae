"""One writer per output: an exclusive lock held while a stage writes `out` (docs/architecture.md, "Safe outputs").

The lock is an `fcntl.flock` on `.<name>.lock` beside the output. It covers everything named after
the output (its temporary and partial files, `<stem>.ckpt/`, `<stem>.logs/`), so a second run on
the same output stops with one sentence naming the running process before it touches any of them,
with or without `--force`. The kernel drops the lock when its process dies, so a killed run never
leaves a stale lock behind.

While it holds the lock, a process also remembers what the output was when the run started; a
commit (`wm.io.artifact.commit`) refuses to replace an output that appeared or changed since then,
unless the run was started with `--force`.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from wm.errors import OutputExistsError, OutputLockedError

_HELD: dict[Path, "OutputLock"] = {}


def lock_path(out: Path) -> Path:
    """The lock file of output `out`."""
    return out.parent / f".{out.name}.lock"


def file_state(path: Path) -> tuple[int, int, int, int] | None:
    """(device, inode, size, modification time in ns) of `path`, or None if it does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


@dataclass
class OutputLock:
    """The exclusive lock on one output, and the output's state when the lock was taken."""

    out: Path
    force: bool
    handle: int = -1
    start_state: tuple[int, int, int, int] | None = None

    def __enter__(self) -> "OutputLock":
        self.out = Path(os.path.abspath(self.out))
        if self.out in _HELD:
            raise OutputLockedError(f"{self.out} is already being written by this process.")
        path = lock_path(self.out)
        while True:
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle)
                os.close(handle)
                raise OutputLockedError(
                    f"{self.out} is being written by another run ({holder}); wait for it to finish or stop it, "
                    "or choose another --out."
                ) from None
            # The holder before us may have removed the file after we opened it: lock the file that is there now.
            if os.path.exists(path) and os.stat(path).st_ino == os.fstat(handle).st_ino:
                break
            os.close(handle)
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps(_holder_record()).encode())
        self.handle = handle
        self.start_state = file_state(self.out)
        _HELD[self.out] = self
        return self

    def __exit__(self, *exc: object) -> None:
        _HELD.pop(self.out, None)
        if self.handle >= 0:
            lock_path(self.out).unlink(missing_ok=True)  # still ours: nobody else can hold it now
            os.close(self.handle)  # closing drops the lock
            self.handle = -1


def _holder_record() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
        "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _read_holder(handle: int) -> str:
    """'process 123 on host: wm train-vae ..., started at ...' from an open lock file, as far as it can be read."""
    try:
        record = json.loads(os.pread(handle, 4096, 0).decode())
        return f"process {record['pid']} on {record['host']}: {record['command']}, started {record['started_utc']}"
    except (OSError, ValueError, KeyError, UnicodeDecodeError):
        return "a process that has not said which yet"


def check_unchanged(out: Path) -> None:
    """Before a commit replaces `out`: refuse if `out` is locked by this process and appeared or changed since
    the run started (unless the run has --force). Outputs this process does not hold (checkpoints) pass."""
    held = _HELD.get(Path(os.path.abspath(out)))
    if held is None or held.force:
        return
    now = file_state(held.out)
    if now is not None and now != held.start_state:
        what = "appeared" if held.start_state is None else "changed"
        raise OutputExistsError(
            f"{held.out} {what} while this run was working (another program wrote it); it was left as it is, and this run's "
            "result was not kept: run again with --force to replace it, or choose another --out."
        )


def is_held(out: Path) -> bool:
    """True if this process holds the lock on `out`."""
    return Path(os.path.abspath(out)) in _HELD
