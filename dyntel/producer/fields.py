"""EventHeader field types for producers: each says how a field is named in the metadata and how its value is packed.

The encodings and formats are eventheader.h's (dyntel.event's `Encoding` and `Format`), little-endian, as the
reference producers write them on x86_64 and arm64. A field's metadata is its name, NUL, the encoding byte (0x80 when
a format byte follows, 0x40 for a variable-length array) and the format byte when it is not the encoding's default
(for a struct: its field count), exactly as LinuxTracepoints' EventBuilder appends it.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dyntel.event import Encoding, Format

__all__ = [
    "BINARY", "BOOL8", "BOOL32", "CSTR8", "CSTR16", "CSTR32", "ERRNO", "F32", "F64", "GUID", "HEX32", "HEX64", "I8",
    "I16", "I32", "I64", "PID", "PORT", "STR8", "STR16", "STR32", "TIME64", "U8", "U16", "U32", "U64",
    "Field", "FieldType", "array", "struct_of",
]

_ARRAY_FLAG = 0x40
_HAS_FORMAT = 0x80
_U16 = struct.Struct("<H").pack
MAX_COUNT = 0xFFFF


@dataclass(frozen=True, slots=True)
class FieldType:
    """How one value is encoded. `code` is its struct format when it has a fixed size (so runs of them pack at
    once); `pack` turns a value into bytes otherwise."""

    encoding: Encoding
    format: Format
    code: str | None = None
    pack: Callable[[Any], bytes] | None = None
    element: FieldType | None = None  # for a variable-length array: its element type
    children: tuple[Field, ...] | None = None  # for a struct


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: FieldType
    tag: int = 0

    def metadata(self) -> bytes:
        t = self.type
        array = 0
        if t.element is not None:
            array, t = _ARRAY_FLAG, t.element
        name = self.name.encode("utf-8")
        if b"\0" in name:
            raise ValueError(f"field name {self.name!r} contains a NUL")
        fmt = len(t.children) if t.children is not None else int(t.format)
        if t.children is not None and not 0 < fmt < 128:
            raise ValueError(f"struct {self.name!r} has {fmt} fields; EventHeader allows 1 to 127")
        out = name + b"\0"
        if self.tag:
            out += bytes([_HAS_FORMAT | array | t.encoding, _HAS_FORMAT | fmt]) + struct.pack("<H", self.tag)
        elif fmt:
            out += bytes([_HAS_FORMAT | array | t.encoding, fmt])
        else:
            out += bytes([array | t.encoding])
        if t.children is not None:
            out += b"".join(c.metadata() for c in t.children)
        return out


def _fixed(encoding: Encoding, fmt: Format, code: str) -> FieldType:
    return FieldType(encoding, fmt, code, struct.Struct("<" + code).pack)


U8 = _fixed(Encoding.VALUE8, Format.DEFAULT, "B")
U16 = _fixed(Encoding.VALUE16, Format.DEFAULT, "H")
U32 = _fixed(Encoding.VALUE32, Format.DEFAULT, "I")
U64 = _fixed(Encoding.VALUE64, Format.DEFAULT, "Q")
I8 = _fixed(Encoding.VALUE8, Format.SIGNED_INT, "b")
I16 = _fixed(Encoding.VALUE16, Format.SIGNED_INT, "h")
I32 = _fixed(Encoding.VALUE32, Format.SIGNED_INT, "i")
I64 = _fixed(Encoding.VALUE64, Format.SIGNED_INT, "q")
HEX32 = _fixed(Encoding.VALUE32, Format.HEX_INT, "I")
HEX64 = _fixed(Encoding.VALUE64, Format.HEX_INT, "Q")
ERRNO = _fixed(Encoding.VALUE32, Format.ERRNO, "i")
PID = _fixed(Encoding.VALUE32, Format.PID, "i")
TIME64 = _fixed(Encoding.VALUE64, Format.TIME, "q")  # seconds since the Unix epoch
F32 = _fixed(Encoding.VALUE32, Format.FLOAT, "f")
F64 = _fixed(Encoding.VALUE64, Format.FLOAT, "d")
BOOL8 = _fixed(Encoding.VALUE8, Format.BOOLEAN, "B")
BOOL32 = _fixed(Encoding.VALUE32, Format.BOOLEAN, "I")
PORT = FieldType(Encoding.VALUE16, Format.PORT, None, struct.Struct(">H").pack)  # network byte order


def _guid(value: Any) -> bytes:
    # UUID format is the RFC 4122 byte order (uuid.UUID.bytes), not Windows' mixed-endian GUID layout.
    raw = value.bytes if isinstance(value, uuid.UUID) else bytes(value)
    if len(raw) != 16:
        raise ValueError(f"a GUID is 16 bytes, not {len(raw)}")
    return raw


GUID = FieldType(Encoding.VALUE128, Format.UUID, None, _guid)


def _counted(unit: int, codec: str) -> Callable[[Any], bytes]:
    def pack(value: Any) -> bytes:
        raw = value.encode(codec, "surrogatepass") if isinstance(value, str) else bytes(value)
        count = len(raw) // unit
        if count > MAX_COUNT:
            count = MAX_COUNT  # as the reference builders do: cut to what the length can say
            raw = raw[: count * unit]
        return _U16(count) + raw

    return pack


def _zstring(codec: str, nul: bytes) -> Callable[[Any], bytes]:
    def pack(value: Any) -> bytes:
        raw = value.encode(codec, "surrogatepass") if isinstance(value, str) else bytes(value)
        # A value with a NUL in it ends there, as the reference's add_cstr does.
        for i in range(0, len(raw), len(nul)):
            if raw[i : i + len(nul)] == nul:
                return raw[: i + len(nul)]
        return raw + nul

    return pack


STR8 = FieldType(Encoding.STRING_LENGTH16_CHAR8, Format.DEFAULT, None, _counted(1, "utf-8"))
STR16 = FieldType(Encoding.STRING_LENGTH16_CHAR16, Format.DEFAULT, None, _counted(2, "utf-16-le"))
STR32 = FieldType(Encoding.STRING_LENGTH16_CHAR32, Format.DEFAULT, None, _counted(4, "utf-32-le"))
CSTR8 = FieldType(Encoding.ZSTRING_CHAR8, Format.DEFAULT, None, _zstring("utf-8", b"\0"))
CSTR16 = FieldType(Encoding.ZSTRING_CHAR16, Format.DEFAULT, None, _zstring("utf-16-le", b"\0\0"))
CSTR32 = FieldType(Encoding.ZSTRING_CHAR32, Format.DEFAULT, None, _zstring("utf-32-le", b"\0\0\0\0"))
BINARY = FieldType(Encoding.BINARY_LENGTH16_CHAR8, Format.DEFAULT, None, _counted(1, "latin-1"))


def array(element: FieldType) -> FieldType:
    """A variable-length array (uint16 count, then the elements) of `element`, which may be a struct."""
    if element.element is not None:
        raise ValueError("an array of arrays has no EventHeader encoding; put the inner array in a struct")
    if element.code is not None:
        code = element.code

        def pack(values: Sequence[Any]) -> bytes:
            n = min(len(values), MAX_COUNT)
            return _U16(n) + struct.pack(f"<{n}{code}", *values[:n])
    else:
        one = packer(element)

        def pack(values: Sequence[Any]) -> bytes:
            n = min(len(values), MAX_COUNT)
            return _U16(n) + b"".join([one(v) for v in values[:n]])

    return FieldType(element.encoding, element.format, None, pack, element=element)


def struct_of(*fields: Field) -> FieldType:
    """A struct of `fields`; its value is a sequence of their values in order (or a mapping by name)."""
    return FieldType(Encoding.STRUCT, Format.DEFAULT, None, compile_pack(fields), children=tuple(fields))


def packer(t: FieldType) -> Callable[[Any], bytes]:
    assert t.pack is not None
    return t.pack


def compile_pack(fields: Sequence[Field]) -> Callable[[Any], bytes]:
    """One function packing a sequence of values (or a name -> value mapping) for `fields`: runs of fixed-size
    fields take one struct.pack each, the others their own packer."""
    steps: list[tuple[int, int, Callable[..., bytes], bool]] = []  # (start, stop, pack, is_run)
    i = 0
    n = len(fields)
    while i < n:
        j = i
        code = ""
        while j < n and fields[j].type.code is not None and fields[j].type.element is None:
            code += fields[j].type.code or ""
            j += 1
        if j > i:
            steps.append((i, j, struct.Struct("<" + code).pack, True))
            i = j
        else:
            steps.append((i, i + 1, packer(fields[i].type), False))
            i += 1
    names = tuple(f.name for f in fields)
    if len(steps) == 1 and steps[0][3]:
        run = steps[0][2]

        def pack_run(values: Any) -> bytes:
            if isinstance(values, dict):
                values = [values[k] for k in names]
            return run(*values)

        return pack_run

    def pack(values: Any) -> bytes:
        if isinstance(values, dict):
            values = [values[k] for k in names]
        parts = []
        for start, stop, step, is_run in steps:
            parts.append(step(*values[start:stop]) if is_run else step(values[start]))
        return b"".join(parts)

    return pack
