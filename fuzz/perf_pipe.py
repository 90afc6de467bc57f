"""perf.data read as a stream (`perf record -o - | dyntel ...`): pipe mode arrives in small, uneven reads, so that
records, the tracing data and the header are split across reads. The stream reader must end as the whole-buffer
reader does on the same bytes (the same events, the same number of bad records), and count or refuse as
documented.

    python -m fuzz.perf_pipe [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.perf_pipe --run FILE...                          run inputs once
"""

from __future__ import annotations

import io

from fuzz.common import Finding, drain, entry
from fuzz.perf_file import decode

MODULES = ["dyntel.sources.perf.data", "dyntel.sources.perf.records", "dyntel.event_json"]


class Trickle(io.RawIOBase):
    """A pipe: no fileno, no seek, reads of at most a few bytes (sizes from the data, so runs repeat)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._step = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        self._step += 1
        n = min(len(b), 1 + (self._step * 7919 + len(self._data)) % 61, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def stream_decode(data: bytes) -> tuple[list[str], int]:
    from dyntel.sources.perf.data import PerfDataSource

    source = PerfDataSource("stdin", Trickle(data))  # type: ignore[arg-type]
    lines = drain(source, len(data))
    return lines, source.stats.bad


def run(data: bytes) -> None:
    from dyntel.sources.perf.data import PerfDataSource

    streamed, bad = stream_decode(data)
    whole = decode(data)
    if whole is None or not isinstance(whole[1], PerfDataSource):
        return
    if data[8:16] != (16).to_bytes(8, "little") and data[8:16] != (16).to_bytes(8, "big"):
        return  # file mode: read whole in both cases; nothing more to compare
    if streamed != whole[0] or (bad == 0) != (whole[1].stats.bad == 0):
        raise Finding(f"read as a stream: {len(streamed)} events, {bad} bad; read whole: {len(whole[0])} events, "
                      f"{whole[1].stats.bad} bad")


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
