"""TraceLogging (ETW self-describing events) written from the layout TraceLoggingDynamic.h documents.

An event written by a TraceLogging provider reaches a consumer as three byte strings: the provider traits (given
once to EventSetInformation, delivered with each event as EVENT_HEADER_EXT_TYPE_PROV_TRAITS), the event metadata
(EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA, delivered as EVENT_HEADER_EXT_TYPE_EVENT_SCHEMA_TL), and the payload
(the event's user data). This module builds all three.

    ProviderTraits = Size u16 (counts itself), Name (nul-terminated UTF-8), Trait* (Size u16, Type u8, Data)
    EventMetadata  = Size u16 (counts itself), Tags (chained bytes), Name (nul-terminated UTF-8), Field*
    Field          = Name (nul-terminated UTF-8), InMeta u8, [OutMeta u8 if InMeta & 0x80],
                     [Tags if OutMeta & 0x80], [Ccount u16 if InMeta & 0x60 == 0x20],
                     [CbSchema u16, Schema if InMeta & 0x60 == 0x60]

InMeta holds the in-type in its low 5 bits and the array kind in bits 5-6 (0x20 a count fixed in the metadata,
0x40 a count u16 ahead of the elements in the payload, 0x60 custom-serialized). OutMeta holds the out-type in its
low 7 bits, except for a STRUCT, where those bits count the fields that follow and belong to it (direct members;
a nested struct counts as one, and its members are counted in its own OutMeta). Tags are up to 28 bits, written
7 bits a byte from the top, each byte but the last with 0x80 set.

Payload values, one per field, in the field order:

    UNICODESTRING     str, UTF-16LE and a nul u16        ANSISTRING         str (UTF-8) or bytes, and a nul
    COUNTEDSTRING     str: byte count u16, UTF-16LE      COUNTEDANSISTRING  str (UTF-8) or bytes: byte count u16
    BINARY            bytes: byte count u16, bytes       COUNTEDBINARY      the same bytes as BINARY
    INT8..UINT64      int                                FLOAT, DOUBLE      float
    BOOL32            bool or int (i32)                  HEXINT32/64        int (u32/u64)
    GUID              16 bytes as stored, or uuid.UUID   POINTER            int, pointer_size bytes
    FILETIME          int (100 ns ticks since 1601)      SYSTEMTIME         8 ints (year, month, day of week,
    SID               bytes (a binary SID) or "S-1-..."                     day, hour, minute, second, ms)
    STRUCT            a sequence of its members' values  custom (0x60)      bytes: byte count u16, bytes

An array field takes a sequence of element values; a variable-count array writes the count (u16) first. INTPTR,
UINTPTR are not in-types of their own: the SDK maps them to INT32/INT64 (UINT32/UINT64, HEXINT32/64 for a pointer)
by the writer's pointer size, which `intptr_type` and friends do here.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = [
    "ARRAY_VARIABLE",
    "EVENT_HEADER_EXT_TYPE_EVENT_SCHEMA_TL",
    "EVENT_HEADER_EXT_TYPE_PROV_TRAITS",
    "EncodedEvent",
    "Field",
    "InType",
    "OutType",
    "encode_event",
    "encode_tags",
    "event_metadata",
    "intptr_type",
    "payload",
    "pointer_type",
    "provider_id",
    "provider_traits",
    "sid_bytes",
    "uintptr_type",
]

EVENT_HEADER_EXT_TYPE_EVENT_SCHEMA_TL = 11
EVENT_HEADER_EXT_TYPE_PROV_TRAITS = 12
PROVIDER_TRAIT_GROUP_GUID = 1

IN_CCOUNT = 0x20
IN_VCOUNT = 0x40
IN_CUSTOM = 0x60
IN_CHAIN = 0x80
OUT_CHAIN = 0x80
MAX_TAGS = 0x0FFFFFFF

ARRAY_VARIABLE = 0  # Field.array: the element count is in the payload

# The EventSource namespace TraceLogging hashes provider names in (TraceLoggingDynamic.h, NamespaceValue).
_NAME_NAMESPACE = bytes.fromhex("482C2DB2C39047C887F81A15BFC130FB")


class InType(IntEnum):
    NULL = 0
    UNICODESTRING = 1
    ANSISTRING = 2
    INT8 = 3
    UINT8 = 4
    INT16 = 5
    UINT16 = 6
    INT32 = 7
    UINT32 = 8
    INT64 = 9
    UINT64 = 10
    FLOAT = 11
    DOUBLE = 12
    BOOL32 = 13
    BINARY = 14
    GUID = 15
    POINTER = 16  # TDH's pointer, sized by the event header's pointer-size flag; TraceLogging writers avoid it
    FILETIME = 17
    SYSTEMTIME = 18
    SID = 19
    HEXINT32 = 20
    HEXINT64 = 21
    COUNTEDSTRING = 22
    COUNTEDANSISTRING = 23
    STRUCT = 24
    COUNTEDBINARY = 25


class OutType(IntEnum):
    DEFAULT = 0x00
    NOPRINT = 0x01
    STRING = 0x02
    BOOLEAN = 0x03
    HEX = 0x04
    PID = 0x05
    TID = 0x06
    PORT = 0x07
    IPV4 = 0x08
    IPV6 = 0x09
    SOCKETADDRESS = 0x0A
    XML = 0x0B
    JSON = 0x0C
    WIN32ERROR = 0x0D
    NTSTATUS = 0x0E
    HRESULT = 0x0F
    FILETIME = 0x10
    SIGNED = 0x11
    UNSIGNED = 0x12
    DATETIME_CULTURE_INSENSITIVE = 0x21
    UTF8 = 0x23
    PKCS7_WITH_TYPE_INFO = 0x24
    CODEPOINTER = 0x25
    DATETIME_UTC = 0x26


def intptr_type(pointer_size: int = 8) -> InType:
    return InType.INT64 if pointer_size == 8 else InType.INT32


def uintptr_type(pointer_size: int = 8) -> InType:
    return InType.UINT64 if pointer_size == 8 else InType.UINT32


def pointer_type(pointer_size: int = 8) -> InType:
    """The in-type the SDK's TraceLoggingPointer writes (a hex integer of the writer's pointer size)."""
    return InType.HEXINT64 if pointer_size == 8 else InType.HEXINT32


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event's metadata.

    `array` is None for a scalar, ARRAY_VARIABLE (0) for a count in the payload, n > 0 for n elements fixed in the
    metadata. `out` is the out-type (ignored for a STRUCT, whose OutMeta counts its `fields`). `schema` makes the
    field custom-serialized (InMeta 0x60): its schema bytes go into the metadata and each value is opaque bytes.
    """

    name: str
    type: InType
    out: int = 0
    tags: int = 0
    array: int | None = None
    fields: tuple[Field, ...] = ()
    schema: bytes | None = None


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    provider_id: bytes  # 16 bytes, as an EVENT_HEADER stores the GUID
    traits: bytes  # EVENT_HEADER_EXT_TYPE_PROV_TRAITS
    metadata: bytes  # EVENT_HEADER_EXT_TYPE_EVENT_SCHEMA_TL
    payload: bytes  # the user data

    @property
    def extended(self) -> list[tuple[int, bytes]]:
        """The (ExtType, data) items ETW delivers with a TraceLogging event, in the order a Windows 11 ETL file
        holds them (corpus SelfDescribingSingleEvent.etl: traits, then schema)."""
        return [(EVENT_HEADER_EXT_TYPE_PROV_TRAITS, self.traits),
                (EVENT_HEADER_EXT_TYPE_EVENT_SCHEMA_TL, self.metadata)]


@dataclass(slots=True)
class _Writer:
    out: bytearray = field(default_factory=bytearray)

    def u8(self, v: int) -> None:
        self.out.append(v)

    def u16(self, v: int) -> None:
        self.out += struct.pack("<H", v)

    def zstr(self, s: str) -> None:
        b = s.encode("utf-8")
        if b"\0" in b:
            raise ValueError(f"name {s!r} holds a nul, which ends it in the metadata")
        self.out += b + b"\0"


def encode_tags(tags: int) -> bytes:
    """Up to 28 bits of tags as TraceLogging's chained bytes (the top 7 bits first; 0x80 means more follow)."""
    if not 0 <= tags <= MAX_TAGS:
        raise ValueError(f"tags {tags:#x} do not fit in 28 bits")
    out = bytearray()
    while True:
        val = (tags >> 21) & 0x7F
        if tags & 0x1FFFFF == 0:
            out.append(val)
            return bytes(out)
        out.append(val | 0x80)
        tags = (tags << 7) & MAX_TAGS


def provider_id(name: str) -> bytes:
    """The provider GUID TraceLogging derives from a provider's name (as the GUID is stored: little-endian)."""
    h = bytearray(hashlib.sha1(_NAME_NAMESPACE + name.upper().encode("utf-16-be")).digest()[:16])
    h[7] = (h[7] & 0x0F) | 0x50
    return bytes(h)


def provider_traits(name: str, group: bytes | uuid.UUID | None = None,
                    traits: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """The provider metadata blob: name, then a group GUID trait when given, then any other (type, data) traits."""
    w = _Writer()
    w.u16(0)
    w.zstr(name)
    items = list(traits)
    if group is not None:
        items.insert(0, (PROVIDER_TRAIT_GROUP_GUID, _guid(group)))
    for kind, data in items:
        w.u16(len(data) + 3)
        w.u8(kind)
        w.out += data
    return _sized(w.out)


def event_metadata(name: str, fields: Sequence[Field], tags: int = 0) -> bytes:
    w = _Writer()
    w.u16(0)
    w.out += encode_tags(tags)
    w.zstr(name)
    for f in fields:
        _field_metadata(w, f)
    return _sized(w.out)


def _field_metadata(w: _Writer, f: Field) -> None:
    w.zstr(f.name)
    if f.array is None:
        arity = 0
    elif f.array == ARRAY_VARIABLE:
        arity = IN_VCOUNT
    elif 0 < f.array <= 0xFFFF:
        arity = IN_CCOUNT
    else:
        raise ValueError(f"field {f.name!r}: array count {f.array} is not 1..65535")
    if f.schema is not None:
        if f.array is not None:
            raise ValueError(f"field {f.name!r}: a custom field cannot also be an array")
        arity = IN_CUSTOM
    if f.type == InType.STRUCT:
        if not 0 < len(f.fields) <= 0x7F:
            raise ValueError(f"struct {f.name!r}: {len(f.fields)} fields (1..127 fit in its OutMeta)")
        out = len(f.fields)
    else:
        if f.fields:
            raise ValueError(f"field {f.name!r}: only a STRUCT has member fields")
        out = f.out
    if not 0 <= f.type <= 0x1F or not 0 <= out <= 0x7F:
        raise ValueError(f"field {f.name!r}: in-type {f.type} or out-type {out} out of range")
    in_meta = arity | f.type
    # A struct always writes its OutMeta: it is where the member count lives.
    if f.tags:
        w.u8(in_meta | IN_CHAIN)
        w.u8(out | OUT_CHAIN)
        w.out += encode_tags(f.tags)
    elif out or f.type == InType.STRUCT:
        w.u8(in_meta | IN_CHAIN)
        w.u8(out)
    else:
        w.u8(in_meta)
    if arity == IN_CCOUNT:
        assert f.array is not None
        w.u16(f.array)
    elif arity == IN_CUSTOM:
        assert f.schema is not None
        if len(f.schema) > 0xFFFF:
            raise ValueError(f"field {f.name!r}: schema of {len(f.schema)} bytes")
        w.u16(len(f.schema))
        w.out += f.schema
    for child in f.fields:
        _field_metadata(w, child)


def _sized(out: bytearray) -> bytes:
    if len(out) > 0xFFFF:
        raise ValueError(f"metadata of {len(out)} bytes: its size is a u16")
    out[0:2] = struct.pack("<H", len(out))
    return bytes(out)


# ----------------------------------------------------------------------------------------------------------------
# Payload

_FIXED: dict[InType, struct.Struct] = {
    InType.INT8: struct.Struct("<b"),
    InType.UINT8: struct.Struct("<B"),
    InType.INT16: struct.Struct("<h"),
    InType.UINT16: struct.Struct("<H"),
    InType.INT32: struct.Struct("<i"),
    InType.UINT32: struct.Struct("<I"),
    InType.INT64: struct.Struct("<q"),
    InType.UINT64: struct.Struct("<Q"),
    InType.FLOAT: struct.Struct("<f"),
    InType.DOUBLE: struct.Struct("<d"),
    InType.BOOL32: struct.Struct("<i"),
    InType.FILETIME: struct.Struct("<Q"),
    InType.HEXINT32: struct.Struct("<I"),
    InType.HEXINT64: struct.Struct("<Q"),
}


def payload(fields: Sequence[Field], values: Sequence[Any], *, pointer_size: int = 8) -> bytes:
    """The user data of an event with these fields and values (see the module notes for each type's value)."""
    if len(values) != len(fields):
        raise ValueError(f"{len(values)} values for {len(fields)} fields")
    out = bytearray()
    for f, v in zip(fields, values, strict=True):
        _field_payload(out, f, v, pointer_size)
    return bytes(out)


def _field_payload(out: bytearray, f: Field, value: Any, pointer_size: int) -> None:
    if f.schema is not None:
        _counted(out, bytes(value), f.name)
        return
    if f.array is None:
        _element(out, f, value, pointer_size)
        return
    items = list(value)
    if f.array == ARRAY_VARIABLE:
        if len(items) > 0xFFFF:
            raise ValueError(f"field {f.name!r}: {len(items)} elements (a u16 counts them)")
        out += struct.pack("<H", len(items))
    elif len(items) != f.array:
        raise ValueError(f"field {f.name!r}: {len(items)} elements for a fixed count of {f.array}")
    for item in items:
        _element(out, f, item, pointer_size)


def _element(out: bytearray, f: Field, v: Any, pointer_size: int) -> None:
    t = f.type
    packer = _FIXED.get(t)
    if packer is not None:
        out += packer.pack(v)
    elif t == InType.UNICODESTRING:
        out += str(v).encode("utf-16-le", "surrogatepass") + b"\0\0"
    elif t == InType.ANSISTRING:
        out += _ansi(v) + b"\0"
    elif t == InType.COUNTEDSTRING:
        _counted(out, str(v).encode("utf-16-le", "surrogatepass"), f.name)
    elif t == InType.COUNTEDANSISTRING:
        _counted(out, _ansi(v), f.name)
    elif t in (InType.BINARY, InType.COUNTEDBINARY):
        _counted(out, bytes(v), f.name)
    elif t == InType.GUID:
        out += _guid(v)
    elif t == InType.POINTER:
        out += struct.pack("<Q" if pointer_size == 8 else "<I", v)
    elif t == InType.SYSTEMTIME:
        out += bytes(v) if isinstance(v, bytes | bytearray) else struct.pack("<8H", *v)
    elif t == InType.SID:
        out += sid_bytes(v) if isinstance(v, str) else _checked_sid(bytes(v))
    elif t == InType.STRUCT:
        members = list(v)
        if len(members) != len(f.fields):
            raise ValueError(f"struct {f.name!r}: {len(members)} values for {len(f.fields)} fields")
        for child, cv in zip(f.fields, members, strict=True):
            _field_payload(out, child, cv, pointer_size)
    else:
        raise ValueError(f"field {f.name!r}: in-type {t} has no payload encoding")


def _ansi(v: str | bytes) -> bytes:
    return v if isinstance(v, bytes) else v.encode("utf-8", "surrogateescape")


def _counted(out: bytearray, data: bytes, name: str) -> None:
    if len(data) > 0xFFFF:
        raise ValueError(f"field {name!r}: {len(data)} bytes (a u16 counts them)")
    out += struct.pack("<H", len(data))
    out += data


def _guid(v: bytes | uuid.UUID) -> bytes:
    if isinstance(v, uuid.UUID):
        return v.bytes_le
    if len(v) != 16:
        raise ValueError(f"a GUID is 16 bytes, not {len(v)}")
    return bytes(v)


def sid_bytes(text: str) -> bytes:
    """A binary SID from its string form, "S-1-5-21-...": revision, count, 48-bit authority (big-endian), then
    the sub-authorities (u32, little-endian)."""
    parts = text.split("-")
    if len(parts) < 3 or parts[0].upper() != "S":
        raise ValueError(f"{text!r} is not a SID")
    revision, authority, subs = int(parts[1]), int(parts[2], 0), [int(p) for p in parts[3:]]
    if len(subs) > 15:
        raise ValueError(f"{text!r}: more than 15 sub-authorities")
    return bytes([revision, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def _checked_sid(b: bytes) -> bytes:
    if len(b) < 8 or len(b) != 8 + 4 * b[1]:
        raise ValueError(f"{len(b)} bytes are not a SID (8 + 4 x its sub-authority count)")
    return b


def encode_event(provider: str, name: str, fields: Sequence[Field], values: Sequence[Any], *, tags: int = 0,
                 group: bytes | uuid.UUID | None = None, pointer_size: int = 8) -> EncodedEvent:
    """All a consumer receives of one TraceLogging event but its EVENT_HEADER."""
    return EncodedEvent(provider_id(provider), provider_traits(provider, group), event_metadata(name, fields, tags),
                        payload(fields, values, pointer_size=pointer_size))
