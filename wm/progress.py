"""Progress for long work: a bar with rate and ETA on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from wm import interrupts

LOG_INTERVAL_SECONDS = 10.0


def log(message: str) -> None:
    """A progress line, on stderr (stdout stays free for results)."""
    print(message, file=sys.stderr, flush=True)


def plural(count: int, noun: str) -> str:
    """'1 episode', '3 episodes'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class Progress:
    """Counts finished items (episodes, batches) and an optional secondary count (frames)."""

    def __init__(self, total: int, *, description: str, unit: str, initial: int = 0, secondary_unit: str | None = None, stream: TextIO | None = None):
        self.total, self.count = total, initial
        self.description, self.unit, self.secondary_unit = description, unit, secondary_unit
        self.secondary = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last_log = self.started
        self._initial = initial
        self._rate_started = self.started
        self._bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=description, unit=unit, file=self.stream)

    def secondary_rate(self) -> float:
        """Secondary units (frames) per second since the start."""
        return self.secondary / max(1e-9, time.monotonic() - self.started)

    def restart_rate(self) -> None:
        """Estimate the ETA from here on only: work that ran at another pace (a fast random prefill) no longer counts."""
        self._initial, self._rate_started = self.count, time.monotonic()

    def update(self, n: int = 1, *, secondary: int = 0, postfix: str = "") -> None:
        """Count `n` more items (and `secondary` more frames); `postfix` is shown after the rate (a loss).

        Raises KeyboardInterrupt if Ctrl-C or SIGTERM came and was swallowed on the way (`wm.interrupts`).
        """
        interrupts.check()
        self.count += n
        self.secondary += secondary
        if self._bar is not None:
            parts = [f"{self.secondary_rate():.0f} {self.secondary_unit}/s"] if self.secondary_unit else []
            self._bar.set_postfix_str(", ".join(parts + ([postfix] if postfix else [])), refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL_SECONDS or self.count == self.total:
            self._last_log = now
            elapsed = now - self.started
            done_here = self.count - self._initial
            eta = max(0, self.total - self.count) * (now - self._rate_started) / done_here if done_here else float("nan")  # a run may pass its total
            extra = f", {self.secondary_rate():.0f} {self.secondary_unit}/s" if self.secondary_unit else ""
            extra += f", {postfix}" if postfix else ""
            print(
                f"{self.description}: {self.count}/{self.total} {self.unit}{extra}, "
                f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s",
                file=self.stream,
                flush=True,
            )

    def write(self, message: str) -> None:
        """Print a line without breaking the bar."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
