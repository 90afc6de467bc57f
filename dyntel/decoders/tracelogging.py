"""ETW events to `Event`s: TraceLogging events decoded by their schema, any other event by its identity.

`decode_etw_event(header, extended, user_data)` is the one entry point for ETL records and live ETW sessions
alike. A TraceLogging event carries its own schema (extended item EVENT_SCHEMA_TL) and its provider's name
(PROV_TRAITS); its payload is decoded by a decoder compiled once per (schema, traits, pointer size) and cached.
An event without a schema is manifest-based (or MOF, or WPP): its fields are described by a manifest that lives on
the machine that wrote it, which dyntel cannot read offline, so the event keeps its identity (provider GUID, id,
version, opcode, task, level, keyword) and its user data as one binary field, `data`.

GUIDs in `Event.activity` and `Event.related_activity` are in registry (big-endian) byte order, as the EventHeader
path stores them, so one rule and one JSON writer serve both; `EtwEventHeader.activity_id` is as Windows stores it.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dyntel.decoders.etw_header import (
    EXT_TYPE_EVENT_SCHEMA_TL,
    EXT_TYPE_PROV_TRAITS,
    EXT_TYPE_RELATED_ACTIVITYID,
    EXT_TYPE_STACK_TRACE32,
    EXT_TYPE_STACK_TRACE64,
    EtwEventHeader,
    guid_text,
)
from dyntel.decoders.eventheader_compile import PayloadError
from dyntel.decoders.tracelogging_compile import CompiledEvent, compile_event
from dyntel.decoders.tracelogging_meta import MetadataError, parse_event_meta, parse_traits
from dyntel.errors import DecodeError, defect
from dyntel.event import SOURCE_ETW, ArrayKind, Encoding, Event, FieldInfo, Format, Schema

__all__ = ["EtwType", "TypeCache", "decode_etw_event", "guid_rfc", "user_data_schema"]

ZERO_GUID = bytes(16)

# The schema of an event dyntel has no schema for: its user data, as bytes.
USER_DATA = Schema((FieldInfo("data", Encoding.BINARY_LENGTH16_CHAR8, Format.HEX_BYTES, ArrayKind.NONE),))


def user_data_schema() -> Schema:
    return USER_DATA


def guid_rfc(b: bytes) -> bytes:
    """A GUID as Windows stores it (Data1..3 little-endian) to registry byte order."""
    return b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:16]


@dataclass(slots=True, eq=False)
class EtwType:
    provider: str
    name: str
    tags: int
    compiled: CompiledEvent | None
    error: str | None  # why events of this type cannot be decoded


class TypeCache:
    """Compiled TraceLogging event types by (schema bytes, traits bytes, pointer size); bounded like the
    EventHeader cache, so a stream of ever-new schemas costs time, not memory."""

    def __init__(self, max_types: int = 4096) -> None:
        self.max_types = max_types
        self.compiles = 0
        self._types: dict[tuple[bytes, bytes, int], EtwType] = {}

    def get(self, schema: bytes, traits: bytes, pointer_size: int, provider_id: bytes) -> EtwType:
        key = (schema, traits, pointer_size)
        t = self._types.get(key)
        if t is None:
            t = self._compile(schema, traits, pointer_size, provider_id)
            if len(self._types) >= self.max_types:
                self._types.clear()
            self._types[key] = t
        return t

    def _compile(self, schema: bytes, traits: bytes, pointer_size: int, provider_id: bytes) -> EtwType:
        self.compiles += 1
        provider = guid_text(provider_id)
        if traits:
            with contextlib.suppress(MetadataError):  # damaged traits: the GUID still names the provider
                provider = parse_traits(traits).name or provider
        try:
            meta = parse_event_meta(schema)
        except MetadataError as e:
            return EtwType(provider, "", 0, None, f"TraceLogging schema: {e}")
        return EtwType(provider, meta.name, meta.tags, compile_event(meta.fields, pointer_size), None)


SHARED_TYPES = TypeCache()
_NAMES: dict[bytes, str] = {}
_u32s = struct.Struct("<I").unpack_from


def _provider_name(provider_id: bytes) -> str:
    name = _NAMES.get(provider_id)
    if name is None:
        if len(_NAMES) >= 4096:
            _NAMES.clear()
        name = _NAMES[provider_id] = guid_text(provider_id)
    return name


def decode_etw_event(header: EtwEventHeader, extended: Sequence[tuple[int, bytes]], user_data: bytes, *,
                     pointer_size: int = 8, types: TypeCache | None = None) -> Event:
    """The Event of one ETW event record.

    `extended` holds the record's extended data items as (ExtType, bytes). Raises DecodeError (offset relative to
    the first byte of `user_data`) when a TraceLogging payload does not match its schema; nothing else.
    """
    schema_tl = traits = b""
    related = None
    callchain = None
    for ext_type, data in extended:
        if ext_type == EXT_TYPE_EVENT_SCHEMA_TL:
            schema_tl = data
        elif ext_type == EXT_TYPE_PROV_TRAITS:
            traits = data
        elif ext_type == EXT_TYPE_RELATED_ACTIVITYID:
            if len(data) >= 16:
                related = guid_rfc(data[:16])
        elif ext_type == EXT_TYPE_STACK_TRACE64:
            # MatchId (uint64), then the return addresses
            n = (len(data) - 8) // 8
            if n > 0:
                callchain = struct.unpack_from(f"<{n}Q", data, 8)
        elif ext_type == EXT_TYPE_STACK_TRACE32:
            n = (len(data) - 8) // 4
            if n > 0:
                callchain = struct.unpack_from(f"<{n}I", data, 8)
    activity = header.activity_id
    event = Event(
        provider="",
        name="",
        source=SOURCE_ETW,
        time=header.time_ns,
        cpu=header.processor,
        pid=header.pid,
        tid=header.tid,
        level=header.level,
        keyword=header.keyword,
        opcode=header.opcode,
        id=header.event_id,
        version=header.version,
        activity=None if activity == ZERO_GUID else guid_rfc(activity),
        related_activity=related,
        callchain=callchain,
    )
    if schema_tl:
        t = (SHARED_TYPES if types is None else types).get(schema_tl, traits, pointer_size, header.provider_id)
        event.provider = t.provider
        event.name = t.name
        if t.tags:
            event.tag = t.tags
        if t.compiled is None:
            raise DecodeError(f"{t.provider}: {t.error}", 0)
        try:
            values: list[Any] = t.compiled.decode(user_data, 0, len(user_data))
        except PayloadError as e:
            raise DecodeError(f"{t.provider}:{t.name}: {e.message}", e.pos) from None
        except (struct.error, IndexError, ValueError, OverflowError, UnicodeError) as e:
            defect(e)
            raise DecodeError(f"{t.provider}:{t.name}: {e}", 0) from None
        event.schema = t.compiled.schema
        event.values = values
        return event
    event.provider = _provider_name(header.provider_id)
    task = header.task
    event.name = f"Task({task})/EventID({header.event_id})" if task else f"EventID({header.event_id})"
    event.schema = USER_DATA
    event.values = (bytes(user_data),)
    return event
