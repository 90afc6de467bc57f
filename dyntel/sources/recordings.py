"""Open a recording by what its first bytes say it is.

Each reader is a module with `sniff(head: bytes, path: str) -> bool` and `open_source(path: str, stream: BinaryIO)
-> Source`; adding a format means adding a module and its name to READERS.
"""

from __future__ import annotations

import importlib
import sys
from typing import BinaryIO, Protocol, cast

from dyntel.errors import UnsupportedFormat
from dyntel.sources import Source

READERS = (
    "dyntel.sources.perf.data",
    "dyntel.sources.files.interceptor_dat",
    "dyntel.sources.etw.etl",
    "dyntel.sources.files.jsonl",  # last: the others' sniffs are stricter than "starts with {"
)

SNIFF_BYTES = 64


class RecordingReader(Protocol):
    def sniff(self, head: bytes, path: str) -> bool: ...

    def open_source(self, path: str, stream: BinaryIO) -> Source: ...


def open_recording_bytes(data: bytes, name: str) -> Source:
    """A Source over a recording already in memory (tests, and recordings received from elsewhere)."""
    import io

    head = data[:SNIFF_BYTES]
    for module_name in READERS:
        reader = cast(RecordingReader, importlib.import_module(module_name))
        if reader.sniff(head, name):
            return reader.open_source(name, io.BytesIO(data))
    raise UnsupportedFormat(f"{name}: not a recording dyntel reads; it starts with {head[:8]!r}")


def open_recording(path: str) -> Source:
    """A Source over the recording at `path` ("-" reads standard input, e.g. `perf record -o -`)."""
    if path == "-":
        stream: BinaryIO = sys.stdin.buffer
        head = cast(bytes, stream.peek(SNIFF_BYTES)[:SNIFF_BYTES])  # type: ignore[attr-defined]
        name = "stdin"
    else:
        try:
            stream = open(path, "rb")  # noqa: SIM115 - the source owns and closes it
        except OSError as e:
            raise UnsupportedFormat(f"{path}: cannot open: {e.strerror}") from e
        head = stream.read(SNIFF_BYTES)
        stream.seek(0)
        name = path
    for module_name in READERS:
        reader = cast(RecordingReader, importlib.import_module(module_name))
        if reader.sniff(head, name):
            return reader.open_source(name, stream)
    stream.close()
    raise UnsupportedFormat(
        f"{name}: not a recording dyntel reads (expected perf.data in file or pipe mode, or an EventHeader "
        f"interceptor .dat file); it starts with {head[:8]!r}"
    )
