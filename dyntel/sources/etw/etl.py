"""ETL files (Event Trace Logs, written by Windows ETW sessions, xperf, PerfView, WPR) as a `Source`.

The file is walked buffer by buffer (etl_buffers), record by record (etl_records). The first record is the trace
log file header (etl_logfile), which sets the pointer size and the clock that turns record timestamps into Unix-epoch
nanoseconds. EVENT_HEADER records go through `decode_etw_event` (TraceLogging events decoded by their own schema,
others kept as identity and user data); system, perfinfo, classic, instance and WPP message records become events
with their identity and their data as one binary field, since their layouts are described by MOF classes or TMF
files that are not in the file.

Events come in file order: buffers of different processors interleave in time, and `dyntel replay` orders them.
Anything unusable is counted in `stats` with its byte offset (for a record in a compressed buffer: the buffer's
offset, and the record's offset once decompressed) and the walk goes on.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

from dyntel.decoders.etw_header import (
    EVENT_HEADER_FLAG_32_BIT_HEADER,
    EVENT_HEADER_FLAG_64_BIT_HEADER,
    EVENT_HEADER_FLAG_EXTENDED_INFO,
    EtwEventHeader,
    guid_text,
)
from dyntel.decoders.tracelogging import TypeCache, decode_etw_event, guid_rfc, user_data_schema
from dyntel.errors import DecodeError
from dyntel.event import SOURCE_ETW, Event
from dyntel.sources import SourceStats
from dyntel.sources.etw.etl_buffers import HEADER_SIZE, Buffer, walk_buffers
from dyntel.sources.etw.etl_logfile import LogfileHeader, parse_logfile_header, ticks_to_unix_ns
from dyntel.sources.etw.etl_records import (
    CLASSIC_HEADER,
    EVENT_HEADER,
    EXTENDED_ITEM,
    HEADER_TYPES,
    KERNEL_PROVIDER,
    KIND_CLASSIC,
    KIND_EVENT,
    KIND_INSTANCE,
    KIND_PERFINFO,
    MARKER_EVENT_TRACE,
    MARKER_MESSAGE,
    MESSAGE_HEADER,
    PERFINFO_HEADER,
    POINTER_SIZE,
    SYSTEM_HEADER,
    group_name,
    message_fields,
)

_BUFFER_TYPE_HEADER = 4
_SNIFF = struct.Struct("<II")


def sniff(head: bytes, path: str) -> bool:
    """A WMI_BUFFER_HEADER of the header buffer: sane sizes and BufferType ETW_BUFFER_TYPE_HEADER."""
    if len(head) < 56:
        return False
    size, saved = _SNIFF.unpack_from(head, 0)
    buffer_type = int.from_bytes(head[54:56], "little")
    return buffer_type == _BUFFER_TYPE_HEADER and HEADER_SIZE < saved <= size <= 64 << 20


def open_source(path: str, stream: BinaryIO) -> EtlSource:
    return EtlSource(path, stream)


class EtlSource:
    """One ETL file. `header` is its trace log file header once `events()` has read the first record."""

    def __init__(self, name: str, stream: BinaryIO, types: TypeCache | None = None) -> None:
        self.name = name
        self.stats = SourceStats()
        self.field_tags = False
        self.header: LogfileHeader | None = None
        self.position = 0  # file offset of the buffer being read, for progress
        self.kinds: dict[str, int] = {}  # records read by kind (event, system, perfinfo, ...)
        self._stream = stream
        self._types = types
        self._clock: tuple[int, int, int] | None = None
        self._pointer_size = 8

    def _read_all(self) -> Any:
        try:
            return mmap.mmap(self._stream.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError, AttributeError):  # a pipe, an empty file, an in-memory stream
            return self._stream.read()

    def events(self) -> Iterator[Event]:
        data = self._read_all()
        try:
            for buf in walk_buffers(data, self.stats):
                self.position = buf.file_offset
                yield from self._records(buf)
        finally:
            self._stream.close()

    def _time(self, ticks: int) -> tuple[int, bool]:
        clock = self._clock
        if clock is None:
            return ticks * 100, False
        return ticks_to_unix_ns(ticks, clock), True

    def _records(self, buf: Buffer) -> Iterator[Event]:
        data, pos, end = buf.data, buf.start, buf.end
        stats = self.stats
        kinds = self.kinds
        unpack_event = EVENT_HEADER.unpack_from
        unpack_item = EXTENDED_ITEM.unpack_from
        types = self._types
        while end - pos >= 8:
            marker_flags = data[pos + 3]
            header_type = data[pos + 2]
            if marker_flags == MARKER_EVENT_TRACE and header_type in HEADER_TYPES:
                kind, header_size, size_at = HEADER_TYPES[header_type]
                size = data[pos + size_at] | data[pos + size_at + 1] << 8
            elif marker_flags & 0xF0 == MARKER_MESSAGE:
                kind, header_size = "message", 8
                size = data[pos] | data[pos + 1] << 8
            elif data[pos:pos + 4] in (b"\xff\xff\xff\xff", b"\0\0\0\0"):
                return  # the unused rest of the buffer
            else:
                at, inside = buf.where(pos)
                stats.records += 1
                stats.skip("unknown record kind")
                stats.problem(at, f"record with marker {bytes(data[pos:pos + 4]).hex()} is of no kind dyntel "
                                  f"knows{inside}; the rest of this buffer is skipped")
                return
            stats.records += 1
            if size < header_size or end - pos < size:
                at, inside = buf.where(pos)
                stats.problem(at, f"{kind} record of {size} bytes{inside} does not fit "
                                  f"({header_size}-byte header, {end - pos} bytes left in the buffer); the rest of "
                                  "this buffer is skipped")
                return
            kinds[kind] = kinds.get(kind, 0) + 1
            record_end = pos + size
            try:
                if kind == KIND_EVENT:
                    (flags, prop, tid, pid, ts, provider, id_, version, channel, level, opcode, task, keyword,
                     _cpu_time, activity) = unpack_event(data, pos + 4)
                    p = pos + 80
                    extended: list[tuple[int, bytes]] = []
                    if flags & EVENT_HEADER_FLAG_EXTENDED_INFO:
                        linkage = 1
                        while linkage & 1:
                            if record_end - p < 8:
                                raise DecodeError("extended data item header runs past the end of the record",
                                                  p - pos)
                            _r1, ext_type, linkage, ext_size = unpack_item(data, p)
                            p += 8
                            if record_end - p < ext_size:
                                raise DecodeError(f"{ext_size}-byte extended data item runs past the end of the "
                                                  "record", p - 8 - pos)
                            extended.append((ext_type, bytes(data[p:p + ext_size])))
                            p += (ext_size + 7) & ~7
                        p = min(p, record_end)
                    time_ns, wall = self._time(ts)
                    if flags & EVENT_HEADER_FLAG_64_BIT_HEADER:
                        pointer_size = 8
                    elif flags & EVENT_HEADER_FLAG_32_BIT_HEADER:
                        pointer_size = 4
                    else:
                        pointer_size = POINTER_SIZE.get(header_type, self._pointer_size)
                    header = EtwEventHeader(provider, id_, version, channel, level, opcode, task, keyword, time_ns,
                                            pid, tid, buf.processor, activity, flags, prop)
                    try:
                        event = decode_etw_event(header, extended, bytes(data[p:record_end]),
                                                 pointer_size=pointer_size, types=types)
                    except DecodeError as e:
                        raise e.at(p - pos) from None
                    if not wall:
                        event.time_is_wall = False
                else:
                    event = self._other(buf, kind, header_type, pos, record_end)
            except DecodeError as e:
                at, inside = buf.where(pos)
                stats.problem(at, f"{e.message} (record byte {e.offset}){inside}")
            else:
                stats.events += 1
                yield event
            pos += (size + 7) & ~7

    def _other(self, buf: Buffer, kind: str, header_type: int, pos: int, end: int) -> Event:
        """A record that is not an EVENT_HEADER event: its identity and its data as bytes."""
        data = buf.data
        event = Event(KERNEL_PROVIDER, "", source=SOURCE_ETW, cpu=buf.processor, schema=user_data_schema())
        if kind in ("system", "compact", KIND_PERFINFO):
            if kind == KIND_PERFINFO:
                _size, type_, group, ts = PERFINFO_HEADER.unpack_from(data, pos + 4)
            else:
                _size, type_, group, tid, pid, ts = SYSTEM_HEADER.unpack_from(data, pos + 4)
                event.pid, event.tid = pid, tid
            header_size = HEADER_TYPES[header_type][1]
            mof = bytes(data[pos + header_size:end])
            if group == 0 and type_ == 0 and self.header is None and kind != KIND_PERFINFO:
                self._logfile_header(mof, header_type, ts, buf, pos)
            event.name = group_name(group)
            event.opcode = type_
            event.id = group << 8 | type_
        elif kind in (KIND_CLASSIC, KIND_INSTANCE):
            _size, _ht, _mf, type_, level, version, tid, pid, ts, guid = CLASSIC_HEADER.unpack_from(data, pos)
            header_size = HEADER_TYPES[header_type][1]
            mof = bytes(data[pos + header_size:end])
            event.provider = guid_text(guid)
            event.name = f"Type({type_})"
            event.opcode, event.level, event.version, event.pid, event.tid = type_, level, version, pid, tid
        else:  # WPP message
            _size, _reserved, _flags, number, options = MESSAGE_HEADER.unpack_from(data, pos)
            guid, ticks, tid, pid, start = message_fields(data, pos, end, options)
            mof = bytes(data[min(start, end):end])
            event.provider = guid_text(guid) if guid is not None else "WPP"
            event.name = f"Message({number})"
            event.id, event.pid, event.tid = number, pid, tid
            if ticks is None:
                event.values = (mof,)
                return event
            ts = ticks
        event.time, event.time_is_wall = self._time(ts)
        event.values = (mof,)
        return event

    def _logfile_header(self, mof: bytes, header_type: int, ts: int, buf: Buffer, pos: int) -> None:
        at, inside = buf.where(pos)
        try:
            header = parse_logfile_header(mof, POINTER_SIZE.get(header_type, 8), ts, at)
        except DecodeError as e:
            self.stats.problem(at, f"{e.message}{inside}; timestamps stay raw clock readings")
            return
        self.header = header
        self._pointer_size = header.pointer_size
        self._clock = header.clock()


__all__ = ["EtlSource", "guid_rfc", "open_source", "sniff"]
