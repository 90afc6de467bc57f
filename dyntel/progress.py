"""A one-line progress bar on a terminal: bytes read of the file's size and events per second.

Small on purpose: the replay loop calls `update` every few thousand events, and the bar redraws at most ten times a
second, so it costs nothing measurable. It draws only on a terminal; `enabled` false (a pipe, a log file, --quiet)
makes every call a no-op.
"""

from __future__ import annotations

import io
import shutil
import time
from typing import TextIO

REDRAW_S = 0.1


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _count(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


class Progress:
    def __init__(self, stream: TextIO, total_bytes: int | None, *, enabled: bool, label: str = "") -> None:
        self.stream = stream
        self.total = total_bytes if total_bytes and total_bytes > 0 else None
        self.enabled = enabled
        self.label = label
        self._start = time.monotonic()
        self._next = self._start + REDRAW_S
        self._drawn = False

    @classmethod
    def for_stream(cls, stream: TextIO, total_bytes: int | None, label: str = "") -> Progress:
        """Enabled when `stream` is a terminal."""
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return cls(stream, total_bytes, enabled=tty, label=label)

    def update(self, position: int, events: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + REDRAW_S
        self._draw(self.line(position, events, now - self._start))

    def line(self, position: int, events: int, elapsed: float) -> str:
        rate = events / elapsed if elapsed > 0 else 0.0
        tail = f" {_count(rate)} events/s"
        if self.total is None:
            return f"{self.label}{_size(position)} read, {_count(events)} events{tail}"
        frac = min(max(position / self.total, 0.0), 1.0)
        eta = ""
        if 0 < frac < 1 and elapsed > 0.5:
            eta = f" ETA {elapsed * (1 - frac) / frac:.0f}s"
        width = max(10, min(40, shutil.get_terminal_size((80, 24)).columns - 70 - len(self.label)))
        filled = int(frac * width)
        bar = "#" * filled + "." * (width - filled)
        return (f"{self.label}[{bar}] {frac * 100:5.1f}% {_size(position)}/{_size(self.total)}"
                f" {_count(events)} events{tail}{eta}")

    def _draw(self, text: str) -> None:
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Clear the bar, so that whatever is written next starts on a clean line."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


class ClearingStream(io.TextIOBase):
    """A stream that shares the terminal with a progress bar (the `log` action's lines on stderr): the bar is
    cleared before each write, and redrawn by the next update."""

    def __init__(self, stream: TextIO, progress: Progress) -> None:
        super().__init__()
        self._stream = stream
        self._progress = progress

    def write(self, s: str) -> int:
        self._progress.close()
        return self._stream.write(s)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()
