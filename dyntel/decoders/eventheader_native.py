"""EventHeader metadata to the "program" the native path (dyntel/_eventheader.c) walks.

The metadata is parsed by the Python reference (eventheader_meta), once per event type; this module flattens its
field tree into nested tuples the C code reads, deciding per field what the C code must do from the same functions
the Python decoder and JSON writer use (resolve_format, the generator's text readers), so that both paths make one
choice per field. A node:

    (key, kind, size, array, count, elem_items, zero, unit, reader, sized_fmt, fallback_bytes, children, pyreader)

key: the JSON member text `,"name":` (with `;tag=0xN` when tags are shown); kind: a K_* value below; size: a leaf's
bytes; array: 0 none, 1 constant, 2 variable; count: a constant array's length; elem_items: the reference's walk
steps per element; zero/unit: a string's termination (NUL or uint16 length) and code unit; reader: an R_* value;
sized_fmt/fallback_bytes: a length-prefixed char8 field with a fixed-size format; children: a struct's nodes;
pyreader: the Python function the C code calls for the values it does not build itself (non-UTF-8 text).

`native_payload(meta, big)` is the values decoder for replay and live (None without the extension); the perf.data
JSON writer calls `program` through its own cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dyntel.decoders.eventheader_compile import (
    _BINARY_LENGTH16_CHAR8,
    _LENGTH16,
    _STRING_LENGTH16_CHAR8,
    _VALUE_SIZE,
    _ZSTRING,
    MOVE_NEXT_LIMIT,
    PayloadDecoder,
    _element_items,
    _fmt,
    _Generator,
    _items,
)
from dyntel.decoders.eventheader_meta import FieldDef, parse_metadata
from dyntel.event import ArrayKind
from dyntel.event import Format as F
from dyntel.event_json import json_string
from dyntel.eventheader_text import code_point_text
from dyntel.value_format import SIZED_FORMATS

(K_ERROR, K_STRUCT, K_U, K_S, K_HEX, K_ERRNO, K_TIME, K_BOOL, K_F32, K_F64, K_HEXBYTES, K_CHAR8, K_UCS, K_PORT, K_IP,
 K_UUID, K_STR) = range(17)
R_UTF8, R_LATIN1, R_BYTES, R_UTF16, R_UTF32, R_BOM, R_SIZED = range(1, 8)

_LEAF_KIND = {
    F.UNSIGNED_INT: K_U, F.SIGNED_INT: K_S, F.PID: K_S, F.HEX_INT: K_HEX, F.ERRNO: K_ERRNO, F.TIME: K_TIME,
    F.BOOLEAN: K_BOOL, F.HEX_BYTES: K_HEXBYTES, F.STRING8: K_CHAR8, F.STRING_UTF: K_UCS, F.PORT: K_PORT,
    F.IP_ADDRESS: K_IP, F.UUID: K_UUID,
}
_ARRAY = {ArrayKind.NONE: 0, ArrayKind.FIXED: 1, ArrayKind.VARIABLE: 2}

Program = tuple[bytes, bool, int, tuple[Any, ...]]


def _key(f: FieldDef, tags: bool) -> bytes:
    name = f"{f.name};tag=0x{f.tag:X}" if tags and f.tag else f.name
    return ("," + json_string(name) + ":").encode("utf-8", "surrogateescape")


def _node(f: FieldDef, gen: _Generator, tags: bool) -> tuple[Any, ...]:
    key = _key(f, tags)
    array = _ARRAY[f.array]
    items = _element_items(f)
    if f.error is not None:
        return (key, K_ERROR, 0, array, f.count, items, 0, 1, 0, 0, 0, None, None)
    if f.children is not None:
        children = tuple(_node(c, gen, tags) for c in f.children)
        return (key, K_STRUCT, 0, array, f.count, items, 0, 1, 0, 0, 0, children, None)
    fmt = _fmt(f)
    if f.encoding in _VALUE_SIZE:
        size = _VALUE_SIZE[f.encoding]
        if fmt == F.FLOAT:
            kind = K_F32 if size == 4 else K_F64
        elif size == 16 and fmt not in (F.UUID, F.IP_ADDRESS):
            kind = K_HEXBYTES
        else:
            kind = _LEAF_KIND[fmt]
        pyreader = code_point_text if kind == K_UCS else None
        return (key, kind, size, array, f.count, items, 0, 1, 0, 0, 0, None, pyreader)
    zero = f.encoding in _ZSTRING
    unit = _ZSTRING[f.encoding] if zero else _LENGTH16[f.encoding]
    sized_fmt = fallback_bytes = 0
    if fmt == F.HEX_BYTES:
        reader = R_BYTES
    elif fmt == F.STRING8:
        reader = R_LATIN1
    elif fmt in (F.STRING_UTF_BOM, F.STRING_XML, F.STRING_JSON):
        reader = R_BOM
    elif f.encoding in (_STRING_LENGTH16_CHAR8, _BINARY_LENGTH16_CHAR8) and fmt in SIZED_FORMATS:
        reader, sized_fmt, fallback_bytes = R_SIZED, int(fmt), int(f.encoding == _BINARY_LENGTH16_CHAR8)
    else:
        reader = {1: R_UTF8, 2: R_UTF16, 4: R_UTF32}[unit]
    return (key, K_STR, 0, array, f.count, items, int(zero), unit, reader, sized_fmt, fallback_bytes, None,
            gen.text_reader(f, unit))


def program(meta: bytes, big_endian: bool, tags: bool = False) -> Program | None:
    """The program of an event type, or None when its metadata does not make an EventHeader type (no NUL after
    the event name: the decoder's NotEventHeader)."""
    if b"\0" not in meta:
        return None
    parsed = parse_metadata(meta, big_endian)
    name = json_string(parsed.event_name)[1:].encode("utf-8", "surrogateescape")
    if parsed.error is not None:
        return (name, True, 0, ())
    room = MOVE_NEXT_LIMIT - 1 - sum(_items(f) for f in parsed.fields)
    gen = _Generator(big_endian)
    return (name, room < 0, room, tuple(_node(f, gen, tags) for f in parsed.fields))


def native_payload(meta: bytes, big_endian: bool, fallback: PayloadDecoder) -> PayloadDecoder | None:
    """The native values decoder of an event type: the same values as `fallback` (the compiled Python decoder),
    which it calls for any event it finds wrong so that errors are raised by the reference. None without the
    extension or for metadata the native path does not take."""
    try:
        from dyntel import _eventheader  # type: ignore[attr-defined]
    except ImportError:
        return None
    prog = program(meta, big_endian)
    if prog is None:
        return None
    payload: PayloadDecoder = _eventheader.Payload(prog, big_endian, fallback)
    return payload


def native_index(get: Callable[[bytes, bool], Any], max_types: int) -> Any:
    """A dyntel._eventheader.TypeIndex over `get` (TypeCache.get), or None without the extension."""
    try:
        from dyntel import _eventheader  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _eventheader.TypeIndex(get, max_types)
