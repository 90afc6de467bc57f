"""EventHeader metadata (the Metadata extension's bytes) to a tree of field definitions and a `Schema`.

Layout: the event name (NUL-terminated, `name;attr=value;...`), then per field: its name (NUL-terminated), an
encoding byte (low 5 bits the encoding, 0x20 constant-length array, 0x40 variable-length array, 0x80 a format byte
follows), the format byte if flagged (low 7 bits the format, or a struct's field count; 0x80 a uint16 tag follows),
the tag if flagged, and for a constant-length array its uint16 element count. A struct's fields follow it; a struct
ends after its count of fields or at the end of the metadata, whichever comes first.

The reference decoder walks the metadata afresh for every event and fails the event at the first problem it meets.
Some problems it meets whatever the payload (a field name without its NUL, a missing format byte or tag): those fail
every event of the type (`ParsedMetadata.error`). Others it meets only when it reaches the field (an invalid
encoding, a lone struct of 0 fields, a constant array of 0 elements, structs nested deeper than 8): a variable array
of structs with 0 elements never reaches its element fields, so these are kept on the field (`FieldDef.error`) and
fail the event only when the decoder gets there.
"""

from __future__ import annotations

from dataclasses import dataclass

from dyntel.event import ArrayKind, Encoding, FieldInfo, Format, Schema
from dyntel.eventheader_text import utf8_text

ENCODING_STRUCT = 1
ENCODING_MAX = 14  # first invalid encoding value
MAX_TOP_LEVEL_FIELDS = 255
MAX_STRUCT_DEPTH = 8

_ELEMENT_SIZE = {2: 1, 3: 2, 4: 4, 5: 8, 6: 16}


@dataclass(slots=True, eq=False)
class FieldDef:
    name: str
    encoding: int  # the encoding's value bits
    format: int  # the format's value bits; for a struct, its field count
    tag: int
    array: ArrayKind
    count: int  # element count of a constant-length array
    children: list[FieldDef] | None  # a struct's fields
    error: str | None  # fails the event when the decoder reaches this field


@dataclass(slots=True, eq=False)
class ParsedMetadata:
    event_name: str  # up to the first ';'
    fields: list[FieldDef]
    error: str | None  # fails every event of this type


class _Structural(Exception):
    """A problem the reference meets whatever the payload."""


class _Parser:
    __slots__ = ("big", "end", "meta")

    def __init__(self, meta: bytes, big_endian: bool) -> None:
        self.meta = meta
        self.end = len(meta)
        self.big = big_endian

    def u16(self, pos: int) -> int:
        return int.from_bytes(self.meta[pos : pos + 2], "big" if self.big else "little")

    def field_header(self, pos: int) -> tuple[str, int, int, int, int, int]:
        """(name, encoding byte without the chain flag, format byte value, tag, carray count, next position)."""
        meta, end = self.meta, self.end
        nul = meta.find(b"\0", pos)
        if nul < 0:
            nul = end
        if end - nul < 2:
            raise _Structural(f"metadata offset {pos}: field name without its NUL or its encoding byte")
        name = utf8_text(meta[pos:nul])
        enc = meta[nul + 1]
        p = nul + 2
        fmt = tag = 0
        if enc & 0x80:
            if p == end:
                raise _Structural(f"metadata offset {p}: field {name!r} has no format byte")
            fmt = meta[p]
            p += 1
            if fmt & 0x80:
                if end - p < 2:
                    raise _Structural(f"metadata offset {p}: field {name!r} has no tag")
                tag = self.u16(p)
                p += 2
        enc &= 0x7F
        if enc == 0:
            # The reference reads encoding 0 as its own "could not read the field" marker.
            raise _Structural(f"metadata offset {nul + 1}: field {name!r} has encoding 0")
        if enc & 0x60 == 0x60:
            raise _Structural(f"metadata offset {nul + 1}: field {name!r} is both a constant and a variable array")
        count = 0
        if enc & 0x20:
            if end - p < 2:
                raise _Structural(f"metadata offset {p}: field {name!r} has no array length")
            count = self.u16(p)
            p += 2
        return name, enc, fmt & 0x7F, tag, count, p

    def fields(self, pos: int, limit: int, depth: int) -> tuple[list[FieldDef], int]:
        out: list[FieldDef] = []
        end = self.end
        while limit and pos != end:
            limit -= 1
            name, enc, fmt, tag, count, pos = self.field_header(pos)
            value = enc & 0x1F
            array = ArrayKind.FIXED if enc & 0x20 else ArrayKind.VARIABLE if enc & 0x40 else ArrayKind.NONE
            error = None
            if array == ArrayKind.FIXED and count == 0:
                error = f"field {name!r} is a constant-length array of 0 elements"
            children: list[FieldDef] | None = None
            if value == ENCODING_STRUCT:
                if fmt == 0 and array == ArrayKind.NONE:
                    # Only a lone struct is checked: an array of 0-field structs is an array of empty structs.
                    error = error or f"struct {name!r} has 0 fields"
                if depth >= MAX_STRUCT_DEPTH:
                    error = error or f"struct {name!r} is nested more than {MAX_STRUCT_DEPTH} deep"
                    children, pos = [], self.skip(pos, fmt)
                else:
                    children, pos = self.fields(pos, fmt, depth + 1)
            elif value == 0 or value >= ENCODING_MAX:
                error = error or f"field {name!r} has invalid encoding {value}"
            out.append(FieldDef(name, value, fmt, tag, array, count, children, error))
        return out, pos

    def skip(self, pos: int, remaining: int) -> int:
        """Past a struct's fields without building them (the subtree of a struct too deep to decode)."""
        while remaining and pos != self.end:
            remaining -= 1
            _, enc, fmt, _, _, pos = self.field_header(pos)
            if enc & 0x1F == ENCODING_STRUCT:
                remaining += fmt
        return pos


def parse_metadata(meta: bytes, big_endian: bool) -> ParsedMetadata:
    """The metadata's event name and fields. `meta` must hold the event name's NUL (the header check ensures it)."""
    nul = meta.find(b"\0")
    full_name = utf8_text(meta[:nul])
    event_name = full_name.split(";", 1)[0]
    parser = _Parser(meta, big_endian)
    try:
        fields, pos = parser.fields(nul + 1, MAX_TOP_LEVEL_FIELDS, 0)
    except _Structural as e:
        return ParsedMetadata(event_name, [], str(e))
    if pos != len(meta):
        return ParsedMetadata(event_name, fields, f"more than {MAX_TOP_LEVEL_FIELDS} top-level fields")
    return ParsedMetadata(event_name, fields, None)


def field_info(f: FieldDef) -> FieldInfo:
    """The schema entry of a field; its tag goes to FieldInfo.tag, its name stays as written."""
    children = None
    if f.children is not None:
        children = Schema(tuple(field_info(c) for c in f.children))
    encoding = Encoding(f.encoding) if f.encoding < ENCODING_MAX else Encoding.INVALID
    fmt = Format(f.format) if f.children is None and f.format <= max(Format) else Format.DEFAULT
    return FieldInfo(
        name=f.name,
        encoding=encoding,
        format=fmt,
        array=f.array,
        fixed_count=f.count,
        children=children,
        tag=f.tag,
        element_size=_ELEMENT_SIZE.get(f.encoding, 0),
    )


def build_schema(fields: list[FieldDef]) -> Schema:
    return Schema(tuple(field_info(f) for f in fields))
