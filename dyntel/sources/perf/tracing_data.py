"""The tracing-data blob perf stores for tracepoint events (HEADER_TRACING_DATA; tools/perf/util/trace-event-info.c).

Layout: the signature "\\x17\\x08\\x44tracing", a NUL-terminated version ("0.6"), one byte that is nonzero when the
recording machine was big-endian, one byte with sizeof(long), a u32 page size, then sections in a fixed order:
"header_page\\0" u64 size + text, "header_event\\0" u64 size + text, u32 count of ftrace formats each u64 size + text,
u32 count of systems each a NUL-terminated name, a u32 event count and per event u64 size + its tracefs `format`
text, then u32 size + kallsyms, u32 size + printk formats, and (version 0.6 and later) u64 size + saved_cmdlines.

Integers after the endianness byte use that byte's order, which need not be the perf.data file's.

The blob comes from a recording, so it is parsed defensively: a section that does not fit ends the parse, keeps
what was read so far, and says where it stopped in `error`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SIGNATURE = b"\x17\x08\x44tracing"

_U32 = (struct.Struct("<I"), struct.Struct(">I"))
_U64 = (struct.Struct("<Q"), struct.Struct(">Q"))


@dataclass(slots=True)
class EventFormatText:
    """One event's tracefs `format` file, as recorded, with the system (tracefs directory) it came from."""

    system: str
    text: str


@dataclass(slots=True)
class TracingData:
    version: str = ""
    big_endian: bool = False
    long_size: int = 0  # sizeof(long) on the recording machine; 0 when the blob did not say
    page_size: int = 0
    header_page: bytes = b""
    header_event: bytes = b""
    ftraces: list[bytes] = field(default_factory=list)
    events: list[EventFormatText] = field(default_factory=list)
    kallsyms: bytes = b""
    printk: bytes = b""
    saved_cmdlines: bytes = b""
    error: str | None = None  # where and why the parse stopped early; None when the whole blob was read
    error_offset: int = 0  # offset of that place within the blob


class _Truncated(Exception):
    def __init__(self, what: str, offset: int) -> None:
        super().__init__(what)
        self.what = what
        self.offset = offset


def _text(b: bytes) -> str:
    # tracefs formats are ASCII in practice; surrogate escapes keep any odd byte instead of failing the event
    return b.decode("utf-8", "surrogateescape")


def _version_number(version: str) -> float:
    # strtod-like: the longest leading number, 0 when there is none
    digits = ""
    for ch in version:
        if ch.isdigit() or (ch == "." and "." not in digits):
            digits += ch
        else:
            break
    try:
        return float(digits)
    except ValueError:
        return 0.0


class _Reader:
    __slots__ = ("be", "blob", "pos")

    def __init__(self, blob: bytes, pos: int) -> None:
        self.blob = blob
        self.pos = pos
        self.be = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.blob):
            raise _Truncated(what, self.pos)

    def u8(self, what: str) -> int:
        self.need(1, what)
        v = self.blob[self.pos]
        self.pos += 1
        return v

    def u32(self, what: str) -> int:
        self.need(4, what)
        v: int = _U32[self.be].unpack_from(self.blob, self.pos)[0]
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        v: int = _U64[self.be].unpack_from(self.blob, self.pos)[0]
        self.pos += 8
        return v

    def zstring(self, what: str) -> bytes:
        nul = self.blob.find(b"\0", self.pos)
        if nul < 0:
            raise _Truncated(what, self.pos)
        s = self.blob[self.pos : nul]
        self.pos = nul + 1
        return s

    def sized(self, size: int, what: str) -> bytes:
        self.need(size, what)
        s = self.blob[self.pos : self.pos + size]
        self.pos += size
        return s

    def named_section(self, name: bytes) -> bytes:
        # Old perf versions may leave a named section out; then nothing is consumed.
        tag = name + b"\0"
        if not self.blob.startswith(tag, self.pos):
            return b""
        self.pos += len(tag)
        return self.sized(self.u64(name.decode() + " size"), name.decode())


def is_tracing_data(blob: bytes) -> bool:
    return blob.startswith(SIGNATURE)


def parse_tracing_data(blob: bytes) -> TracingData:
    """The parts of a tracing-data blob; never raises (see `TracingData.error`)."""
    td = TracingData()
    if not blob.startswith(SIGNATURE):
        td.error = "tracing data does not start with the \\x17\\x08\\x44tracing signature"
        return td
    r = _Reader(blob, len(SIGNATURE))
    try:
        td.version = _text(r.zstring("version"))
        td.big_endian = r.u8("endianness") != 0
        r.be = int(td.big_endian)
        td.long_size = r.u8("long size")
        td.page_size = r.u32("page size")
        td.header_page = r.named_section(b"header_page")
        td.header_event = r.named_section(b"header_event")
        for _ in range(r.u32("ftrace format count")):
            td.ftraces.append(r.sized(r.u64("ftrace format size"), "ftrace format"))
        for _ in range(r.u32("system count")):
            system = _text(r.zstring("system name"))
            for _ in range(r.u32(f"event count of system {system}")):
                text = r.sized(r.u64(f"format size in system {system}"), f"format in system {system}")
                td.events.append(EventFormatText(system, _text(text)))
        td.kallsyms = r.sized(r.u32("kallsyms size"), "kallsyms")
        td.printk = r.sized(r.u32("printk size"), "printk formats")
        if _version_number(td.version) >= 0.6:
            td.saved_cmdlines = r.sized(r.u64("saved_cmdlines size"), "saved_cmdlines")
    except _Truncated as e:
        td.error = f"tracing data ends inside the {e.what}"
        td.error_offset = e.offset
    return td
