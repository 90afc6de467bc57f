"""EventHeader interceptor `.dat` files: what libeventheader-tracepoint writes when its tracepoint writes are
intercepted into a file instead of going to user_events (the reference's EventHeaderInterceptor*.dat test files).

The file is a sequence of records, with no file header:

    uint32 size (little-endian, counting these 4 bytes)
    tracepoint name, NUL-terminated
    the event: eventheader, extensions, payload (in the byte order its flags say)

There is no time, cpu or process: events carry only what the eventheader says. Tagged fields are named
"name;tag=0xN", as the reference's .dat tools (decode-file-sample, decode-dat-utest) print them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from dyntel.decoders.eventheader import EventHeaderDecoder
from dyntel.decoders.eventheader_name import parse_tracepoint_name
from dyntel.errors import DecodeError
from dyntel.event import Event
from dyntel.eventheader_text import utf8_text
from dyntel.sources import SourceStats, Want

_READ_CHUNK = 1 << 20
# Tracepoint names the interceptor writes: printable ASCII with no space or ':'.
_NAME_BYTES = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def sniff(head: bytes, path: str) -> bool:
    """A first record whose size and tracepoint name look like the interceptor's."""
    if len(head) < 5:
        return False
    size = int.from_bytes(head[:4], "little")
    if size < 6:
        return False
    name = head[4:size]
    nul = name.find(b"\0")
    if nul >= 0:
        name = name[:nul]
    if not _NAME_BYTES.fullmatch(name):
        return False
    if nul < 0:
        return True  # a long name, cut by the sniff window; the reader will judge the rest
    try:
        parse_tracepoint_name(name.decode("ascii"))
    except ValueError:
        return False
    return True


def open_source(path: str, stream: BinaryIO) -> InterceptorDatSource:
    return InterceptorDatSource(path, stream)


def _read(stream: BinaryIO, n: int) -> bytes:
    """Up to n bytes; short only at the end of the file. Large claims are read in chunks, so a corrupt size field
    costs at most the file's real length in memory."""
    if n <= _READ_CHUNK:
        return stream.read(n)
    parts: list[bytes] = []
    while n > 0:
        part = stream.read(min(n, _READ_CHUNK))
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


class InterceptorDatSource:
    def __init__(self, name: str, stream: BinaryIO, decoder: EventHeaderDecoder | None = None) -> None:
        self.name = name
        self.stats = SourceStats()
        self._stream = stream
        self._decoder = decoder or EventHeaderDecoder()
        # The reference's .dat tools print field tags in the keys; see format_event.
        self.field_tags = True
        # Events no rule can match: dropped once their name is known, before their payload is decoded.
        self.want: Want | None = None
        self.position = 0  # bytes read so far, for progress

    def events(self) -> Iterator[Event]:
        stats = self.stats
        stream = self._stream
        decode = self._decoder.decode
        want = self.want
        names: dict[bytes, str] = {}
        offset = 0
        try:
            while True:
                head = stream.read(4)
                if not head:
                    return
                if len(head) < 4:
                    stats.problem(offset, f"file ends inside a record's size field ({len(head)} of 4 bytes)")
                    return
                size = int.from_bytes(head, "little")
                stats.records += 1
                if size <= 4:
                    # The size is the only way to the next record: nothing after this one can be found.
                    stats.problem(offset, f"record size {size} is too small (it counts its own 4 bytes)")
                    return
                body = _read(stream, size - 4)
                if len(body) < size - 4:
                    stats.problem(offset, f"file ends inside a {size}-byte record ({4 + len(body)} bytes present)")
                    return
                nul = body.find(b"\0")
                if nul < 0:
                    stats.problem(offset + 4, "tracepoint name is not NUL-terminated")
                else:
                    raw_name = body[:nul]
                    name = names.get(raw_name)
                    if name is None:
                        name = names[raw_name] = utf8_text(raw_name)
                    try:
                        event = decode(name, body, nul + 1) if want is None else decode(name, body, nul + 1,
                                                                                        want=want)
                    except DecodeError as e:
                        stats.problem(offset + 5 + nul + (e.offset or 0), f"{name}: {e.message}")
                    else:
                        if event is None:
                            stats.skip("filtered")
                        else:
                            stats.events += 1
                            yield event
                offset += size
                self.position = offset
        finally:
            stream.close()
