"""Task functions for executor tests; importable by spawned worker processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from wm.errors import UsageError


def square(x: int) -> int:
    time.sleep(0.01 * (x % 3))  # finish out of order
    return x * x


def die_once(args: tuple[int, str]) -> int:
    """Kills its worker the first time task 2 runs (a marker file remembers), then succeeds."""
    x, marker = args
    if x == 2 and not Path(marker).exists():
        Path(marker).write_text("died")
        os._exit(9)
    return x


def always_die(x: int) -> int:
    os._exit(9)


def hang(x: int) -> int:
    time.sleep(3600)
    return x


def fail(x: int) -> int:
    raise ValueError(f"bad task {x}")


def user_error(x: int) -> int:
    raise UsageError("the user's mistake")


def die_while_sending_result(x: int) -> int:
    """Writes the start of a result message to the pool's result pipe, then dies (a kill mid-send)."""
    import gc
    import struct
    from multiprocessing.queues import SimpleQueue

    result_queue = next(obj for obj in gc.get_objects() if isinstance(obj, SimpleQueue))
    os.write(result_queue._writer.fileno(), struct.pack("!i", 1 << 20) + b"only the first bytes")
    os._exit(9)
