"""TraceLogging metadata: provider traits and the event schema, as ETW carries them in extended data items
(EVENT_HEADER_EXT_TYPE_PROV_TRAITS and EVENT_HEADER_EXT_TYPE_EVENT_SCHEMA_TL), laid out by TraceLoggingProvider.h.

Provider traits: uint16 total size, the provider name (NUL-terminated UTF-8), then traits, each a uint16 size (its
own 3 header bytes included), a uint8 type (1: the provider group GUID) and its data.

Event schema: uint16 total size, the event tags (1 to 4 bytes, 7 bits each from the top of 28 bits, 0x80 meaning
another byte follows), the event name (NUL-terminated UTF-8), then per field: its name, an in-type byte (low 5 bits
the type, 0x20 a constant count follows, 0x40 a variable count in the payload, 0x60 a custom type, 0x80 an out-type
byte follows), the out-type byte if chained (low 7 bits the out-type, or a struct's field count; 0x80 field tags
follow), the field tags if chained, a uint16 element count for a constant count, and a uint16 size and that many
bytes for a custom type. A struct's fields follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dyntel.event import ArrayKind
from dyntel.eventheader_text import utf8_text

# In-types (_TlgIn_t)
IN_NULL = 0
IN_UNICODESTRING = 1
IN_ANSISTRING = 2
IN_INT8 = 3
IN_UINT8 = 4
IN_INT16 = 5
IN_UINT16 = 6
IN_INT32 = 7
IN_UINT32 = 8
IN_INT64 = 9
IN_UINT64 = 10
IN_FLOAT = 11
IN_DOUBLE = 12
IN_BOOL32 = 13
IN_BINARY = 14
IN_GUID = 15
IN_POINTER = 16  # TDH's pointer-sized in-type; TraceLogging itself writes HEXINT32/64 for pointers
IN_FILETIME = 17
IN_SYSTEMTIME = 18
IN_SID = 19
IN_HEXINT32 = 20
IN_HEXINT64 = 21
IN_COUNTEDSTRING = 22
IN_COUNTEDANSISTRING = 23
IN_STRUCT = 24
IN_COUNTEDBINARY = 25  # a u16 byte count, then the bytes (TraceLoggingDynamic.h InTypeCountedBinary)
IN_MAX = 26
IN_TYPE_MASK = 0x1F
IN_CCOUNT = 0x20
IN_VCOUNT = 0x40
IN_CUSTOM = 0x60
IN_COUNT_MASK = 0x60
CHAIN = 0x80

# Out-types (_TlgOut_t)
OUT_NULL = 0
OUT_NOPRINT = 1
OUT_STRING = 2
OUT_BOOLEAN = 3
OUT_HEX = 4
OUT_PID = 5
OUT_TID = 6
OUT_PORT = 7
OUT_IPV4 = 8
OUT_IPV6 = 9
OUT_SOCKETADDRESS = 10
OUT_XML = 11
OUT_JSON = 12
OUT_WIN32ERROR = 13
OUT_NTSTATUS = 14
OUT_HRESULT = 15
OUT_FILETIME = 16
OUT_SIGNED = 17
OUT_UNSIGNED = 18
OUT_UTF8 = 35
OUT_PKCS7 = 36
OUT_CODE_POINTER = 37
OUT_DATETIME_UTC = 38

TRAIT_GROUP_GUID = 1
MAX_STRUCT_DEPTH = 32


class MetadataError(ValueError):
    """Metadata that does not parse; `pos` is the offset in the metadata bytes."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(f"metadata offset {pos}: {message}")
        self.pos = pos


@dataclass(slots=True, eq=False)
class TlField:
    name: str
    in_type: int  # without the flag bits
    out_type: int  # for a struct: its field count
    tag: int
    array: ArrayKind
    count: int  # element count of a constant-count array
    custom: bool  # a custom-schema field: its payload is a uint16 size and bytes
    children: list[TlField] | None


@dataclass(slots=True, eq=False)
class TlEventMeta:
    name: str
    tags: int
    fields: list[TlField]


@dataclass(slots=True, eq=False)
class ProviderTraits:
    name: str
    group: bytes | None  # 16-byte GUID as stored


def _tags(meta: bytes, pos: int, end: int) -> tuple[int, int]:
    """A 28-bit tag in 1 to 4 chained bytes."""
    tag = 0
    shift = 21
    while True:
        if pos >= end:
            raise MetadataError(pos, "tag bytes run past the end")
        b = meta[pos]
        pos += 1
        if shift >= 0:
            tag |= (b & 0x7F) << shift
        shift -= 7
        if not b & CHAIN:
            return tag, pos


def _name(meta: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    nul = meta.find(b"\0", pos, end)
    if nul < 0:
        raise MetadataError(pos, f"{what} has no terminating NUL")
    return utf8_text(meta[pos:nul]), nul + 1


def parse_traits(data: bytes) -> ProviderTraits:
    end = len(data)
    if end < 3:
        raise MetadataError(0, f"provider traits of {end} bytes")
    size = int.from_bytes(data[0:2], "little")
    if size > end or size < 3:
        raise MetadataError(0, f"provider traits say {size} bytes; {end} present")
    name, pos = _name(data, 2, size, "provider name")
    group = None
    while size - pos >= 3:
        trait_size = int.from_bytes(data[pos:pos + 2], "little")
        if trait_size < 3 or pos + trait_size > size:
            raise MetadataError(pos, f"trait of {trait_size} bytes")
        if data[pos + 2] == TRAIT_GROUP_GUID and trait_size >= 19:
            group = bytes(data[pos + 3:pos + 19])
        pos += trait_size
    return ProviderTraits(name, group)


def parse_event_meta(data: bytes) -> TlEventMeta:
    end = len(data)
    if end < 3:
        raise MetadataError(0, f"event schema of {end} bytes")
    size = int.from_bytes(data[0:2], "little")
    if size > end or size < 3:
        raise MetadataError(0, f"event schema says {size} bytes; {end} present")
    tags, pos = _tags(data, 2, size)
    name, pos = _name(data, pos, size, "event name")
    fields: list[TlField] = []
    while pos < size:
        field, pos = _field(data, pos, size, 0)
        fields.append(field)
    return TlEventMeta(name, tags, fields)


def _field(meta: bytes, pos: int, end: int, depth: int) -> tuple[TlField, int]:
    name, pos = _name(meta, pos, end, "field name")
    if pos >= end:
        raise MetadataError(pos, f"field {name!r} has no in-type")
    in_byte = meta[pos]
    pos += 1
    out_type = tag = 0
    if in_byte & CHAIN:
        if pos >= end:
            raise MetadataError(pos, f"field {name!r} has no out-type")
        out_byte = meta[pos]
        pos += 1
        out_type = out_byte & 0x7F
        if out_byte & CHAIN:
            tag, pos = _tags(meta, pos, end)
    in_type = in_byte & IN_TYPE_MASK
    count_kind = in_byte & IN_COUNT_MASK
    array = ArrayKind.NONE
    count = 0
    custom = False
    if count_kind == IN_CCOUNT:
        if end - pos < 2:
            raise MetadataError(pos, f"field {name!r} has no element count")
        array = ArrayKind.FIXED
        count = int.from_bytes(meta[pos:pos + 2], "little")
        pos += 2
    elif count_kind == IN_VCOUNT:
        array = ArrayKind.VARIABLE
    elif count_kind == IN_CUSTOM:
        if end - pos < 2:
            raise MetadataError(pos, f"field {name!r} has no custom schema size")
        custom = True
        pos += 2 + int.from_bytes(meta[pos:pos + 2], "little")
        if pos > end:
            raise MetadataError(end, f"custom schema of field {name!r} runs past the end")
    if in_type == IN_NULL or in_type >= IN_MAX:
        raise MetadataError(pos - 1, f"field {name!r} has in-type {in_type}")
    children = None
    if in_type == IN_STRUCT:
        if depth >= MAX_STRUCT_DEPTH:
            raise MetadataError(pos, f"structs nested deeper than {MAX_STRUCT_DEPTH}")
        if out_type == 0:
            raise MetadataError(pos, f"struct {name!r} of 0 fields")
        children = []
        for _ in range(out_type):
            if pos >= end:
                raise MetadataError(pos, f"struct {name!r} has fewer than {out_type} fields")
            child, pos = _field(meta, pos, end, depth + 1)
            children.append(child)
    return TlField(name, in_type, out_type, tag, array, count, custom, children), pos
