"""EventHeader events (eventheader.h, LinuxTracepoints) to `Event`s.

An EventHeader event is the payload of a user_events tracepoint named `Provider_L<level>K<keyword>[Options]`:

    eventheader (8 bytes)          flags, version, id, tag, opcode, level
    extension blocks, if flagged   uint16 size, uint16 kind (0x8000: another block follows), size bytes
    payload                        laid out by the Metadata extension

`EventHeaderDecoder.decode` checks the header and extensions as the reference decoder does, then runs the payload
decoder compiled for the event's metadata (see eventheader_compile). Compiled types are a pure function of the
metadata bytes and the event's byte order, so they live in a `TypeCache` that decoders share by default: a reader
opened twice, or a thousand times by a fuzz test, compiles each event type once.

Errors: `NotEventHeader` (a `DecodeError`) when the tracepoint name or the header does not make an EventHeader event;
the reference then decodes the sample as plain tracefs fields, and so should the caller. A plain `DecodeError` when
the payload does not match its metadata; the reference prints nothing for such an event. Either way
`DecodeError.offset` is relative to the first byte of the eventheader (`data[offset]`); add the sample's position
with `DecodeError.at`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, overload

from dyntel.decoders.eventheader_compile import CompiledPayload, PayloadDecoder, PayloadError, compile_payload
from dyntel.decoders.eventheader_meta import build_schema, parse_metadata
from dyntel.decoders.eventheader_name import TracepointName, parse_tracepoint_name
from dyntel.decoders.eventheader_native import native_index, native_payload
from dyntel.errors import DecodeError, defect
from dyntel.event import SOURCE_USER_EVENTS, Event, Schema
from dyntel.source_types import Want

__all__ = ["EventHeaderDecoder", "EventType", "NotEventHeader", "TypeCache", "set_native"]

HEADER_SIZE = 8
FLAG_POINTER64 = 0x01
FLAG_LITTLE_ENDIAN = 0x02
FLAG_EXTENSION = 0x04
EXTENSION_METADATA = 1
EXTENSION_ACTIVITY_ID = 2
EXTENSION_CHAIN = 0x8000

_HEADER_LE = struct.Struct("<BHHBB").unpack_from  # after the flags byte: version, id, tag, opcode, level
_HEADER_BE = struct.Struct(">BHHBB").unpack_from
_EXTENSION_LE = struct.Struct("<HH").unpack_from
_EXTENSION_BE = struct.Struct(">HH").unpack_from


class NotEventHeader(DecodeError):
    """The sample is not an EventHeader event; decode it as plain tracefs fields."""


@dataclass(slots=True, eq=False)
class EventType:
    """One compiled event type: what every event with the same metadata (and byte order) shares."""

    event_name: str
    schema: Schema
    decode: PayloadDecoder
    compiled: CompiledPayload | None
    not_eventheader: str | None  # why events of this "type" are not EventHeader events


class TypeCache:
    """Compiled event types by (metadata bytes, big-endian). Bounded: past `max_types` it starts
    over, so a stream of ever-changing metadata (a fuzzer, a hostile writer) costs compile time but not memory."""

    def __init__(self, max_types: int = 4096, native: bool = True) -> None:
        self.max_types = max_types
        self.native = native  # decode payloads with dyntel._eventheader where it is built
        self.compiles = 0
        self._types: dict[tuple[bytes, bool], EventType] = {}
        # The header and extension blocks read in C, with the types found by their metadata bytes there (None
        # without the extension): what EventHeaderDecoder.decode does in Python, for events that are EventHeader.
        self.index: Any = native_index(self.get, max_types) if native else None

    def __len__(self) -> int:
        return len(self._types)

    def clear(self) -> None:
        self._types.clear()
        if self.index is not None:
            self.index.clear()

    def get(self, meta: bytes, big_endian: bool) -> EventType:
        key = (meta, big_endian)
        t = self._types.get(key)
        if t is None:
            t = self._compile(meta, big_endian)
            if len(self._types) >= self.max_types:
                self.clear()
            self._types[key] = t
        return t

    def _compile(self, meta: bytes, big_endian: bool) -> EventType:
        self.compiles += 1
        if b"\0" not in meta:
            return EventType("", Schema(()), _no_payload, None, "event name in the metadata has no NUL")
        parsed = parse_metadata(meta, big_endian)
        compiled = compile_payload(parsed.fields, big_endian, parsed.error)
        schema = build_schema(parsed.fields)
        decode = compiled.decode
        if self.native:
            # The same values from C (eventheader_native); events it finds wrong go to `decode`, which raises.
            decode = native_payload(meta, big_endian, decode) or decode
        return EventType(parsed.event_name, schema, decode, compiled, None)


def _no_payload(buf: bytes, pos: int, end: int) -> list[object]:
    return []


SHARED_TYPES = TypeCache()


def set_native(on: bool) -> None:
    """Whether decoders made from now on with the shared cache decode payloads natively (the default where the
    extension is built); `--no-native` turns it off, to compare with or to rule out the C code."""
    global SHARED_TYPES
    if SHARED_TYPES.native != on:
        SHARED_TYPES = TypeCache(native=on)


class EventHeaderDecoder:
    """Decodes EventHeader events. One per reader: it keeps the parsed tracepoint names it has seen.

    A field's tag is in `FieldInfo.tag`; `format_event(..., field_tags=True)` shows it as the .dat tools do.
    """

    def __init__(self, types: TypeCache | None = None) -> None:
        self.types = SHARED_TYPES if types is None else types
        self._names: dict[str, TracepointName | str] = {}
        # want(...) answers by (tracepoint name, event type, want): the key holds the EventType, so an evicted type's
        # id cannot be reused for another while its answer is kept.
        self._wanted: dict[tuple[str, EventType, Want], bool] = {}

    def tracepoint_name(self, name: str) -> TracepointName:
        """The parsed name, or NotEventHeader when it is not an EventHeader tracepoint name."""
        parsed = self._names.get(name)
        if parsed is None:
            try:
                parsed = parse_tracepoint_name(name)
            except ValueError as e:
                parsed = str(e)
            if len(self._names) >= 4096:
                self._names.clear()
            self._names[name] = parsed
        if type(parsed) is str:
            raise NotEventHeader(parsed, 0, reason="name")
        assert isinstance(parsed, TracepointName)
        return parsed

    @overload
    def decode(self, tracepoint_name: str, data: bytes, offset: int = 0, end: int | None = None) -> Event: ...

    @overload
    def decode(self, tracepoint_name: str, data: bytes, offset: int = 0, end: int | None = None, *,
               want: Want | None) -> Event | None: ...

    def decode(self, tracepoint_name: str, data: bytes, offset: int = 0, end: int | None = None, *,
               want: Want | None = None) -> Event | None:
        """The event in `data[offset:end]`, which starts with the eventheader.

        The caller fills in time, cpu, pid and tid. Raises NotEventHeader or DecodeError (see the module docstring);
        nothing else. With `want`, an event it does not want (asked once per tracepoint and metadata) is None: its
        header and extensions are checked, as they must be to find the event's name, but its payload is not decoded.
        """
        if type(data) is not bytes:
            data = bytes(data[offset:end])
            offset, end = 0, len(data)
        elif end is None or end > len(data):
            end = len(data)
        parsed = self._names.get(tracepoint_name)
        tp = parsed if type(parsed) is TracepointName else self.tracepoint_name(tracepoint_name)
        index = self.types.index
        if index is not None:
            header = index.parse(data, offset, end, tp.level)
            if header is not None:  # else the Python code below finds out what is wrong, and says it
                t, version, id_, tag, opcode, activity, related, pos = header
                return self._event(tracepoint_name, tp, t, data, pos, end, offset, want, version, id_, tag, opcode,
                                   activity, related)
        size = end - offset
        if size < HEADER_SIZE or size > 0x7FFFFFFF:
            raise NotEventHeader(f"{size} bytes is not the size of an EventHeader event", 0, reason="size")
        flags = data[offset]
        if flags & ~(FLAG_POINTER64 | FLAG_LITTLE_ENDIAN | FLAG_EXTENSION):
            raise NotEventHeader(f"unknown eventheader flags 0x{flags:X}", 0, reason="flags")
        big = not flags & FLAG_LITTLE_ENDIAN
        version, id_, tag, opcode, level = (_HEADER_BE if big else _HEADER_LE)(data, offset + 1)
        if level != tp.level:
            raise NotEventHeader(f"eventheader level {level} is not the level in the tracepoint name ({tp.level})", 7,
                                 reason="level")
        pos = offset + HEADER_SIZE
        meta = activity = related = None
        if flags & FLAG_EXTENSION:
            read_extension = _EXTENSION_BE if big else _EXTENSION_LE
            kind = EXTENSION_CHAIN
            while kind & EXTENSION_CHAIN:
                if end - pos < 4:
                    raise NotEventHeader("extension block header runs past the end of the event", pos - offset,
                                         reason="extension")
                ext_size, kind = read_extension(data, pos)
                pos += 4
                if end - pos < ext_size:
                    raise NotEventHeader(
                        f"{ext_size}-byte extension block runs past the end of the event", pos - offset,
                        reason="extension")
                ext_kind = kind & ~EXTENSION_CHAIN
                if ext_kind == EXTENSION_METADATA:
                    if meta is not None:
                        raise NotEventHeader("second metadata extension", pos - 4 - offset, reason="extension")
                    meta = data[pos : pos + ext_size]
                elif ext_kind == EXTENSION_ACTIVITY_ID:
                    if activity is not None or (ext_size != 16 and ext_size != 32):
                        raise NotEventHeader(
                            "second activity id extension" if activity is not None
                            else f"activity id extension of {ext_size} bytes (16 or 32 expected)",
                            pos - 4 - offset, reason="extension",
                        )
                    activity = data[pos : pos + 16]
                    if ext_size == 32:
                        related = data[pos + 16 : pos + 32]
                elif ext_kind == 0:
                    raise NotEventHeader("extension block of kind 0", pos - 4 - offset, reason="extension")
                pos += ext_size
        if meta is None:
            raise NotEventHeader("no metadata extension", 0, reason="no metadata")
        t = self.types.get(meta, big)
        return self._event(tracepoint_name, tp, t, data, pos, end, offset, want, version, id_, tag, opcode, activity,
                           related)

    def _event(self, tracepoint_name: str, tp: TracepointName, t: EventType, data: bytes, pos: int, end: int,
               offset: int, want: Want | None, version: int, id_: int, tag: int, opcode: int,
               activity: bytes | None, related: bytes | None) -> Event | None:
        """The event once its header and extension blocks are read: its payload decoded by its type."""
        level = tp.level
        if t.not_eventheader is not None:
            raise NotEventHeader(t.not_eventheader, 0, reason="metadata")
        if want is not None:
            key = (tracepoint_name, t, want)
            wanted = self._wanted.get(key)
            if wanted is None:
                if len(self._wanted) >= 4096:
                    self._wanted.clear()
                wanted = self._wanted[key] = bool(want(tp.provider, t.event_name, level))
            if not wanted:
                return None
        try:
            values = t.decode(data, pos, end)
        except PayloadError as e:
            raise DecodeError(f"{tp.provider}:{t.event_name}: {e.message}", e.pos - offset,
                              reason="payload") from None
        except (struct.error, IndexError, ValueError, OverflowError) as e:  # a defect, but still one bad event
            defect(e)
            raise DecodeError(f"{tp.provider}:{t.event_name}: {e}", pos - offset, reason="defect") from None
        return Event(
            provider=tp.provider,
            name=t.event_name,
            schema=t.schema,
            values=values,
            source=SOURCE_USER_EVENTS,
            level=level,
            keyword=tp.keyword,
            opcode=opcode,
            id=id_,
            version=version,
            tag=tag,
            activity=activity,
            related_activity=related,
        )
