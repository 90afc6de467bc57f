"""TraceLogging field definitions to a `Schema` and a payload decoder `decode(buf, pos, end) -> list`.

The decoder is a list of steps built once per event type: consecutive fixed-size numbers are one precompiled
`struct` unpack, and everything else (strings, counted data, arrays, structs, values that need converting) is one
reader call. Values use the EventHeader vocabulary (see dyntel.event), so the JSON writer and the rules need nothing
ETW-specific: GUIDs become 16 bytes in registry (big-endian) order so they show as their registry text, FILETIME and
SYSTEMTIME become ISO-8601 strings, SIDs their "S-1-..." text.

A payload that does not match its schema raises `PayloadError` with the absolute position of the field.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dyntel.decoders.eventheader_compile import PayloadError
from dyntel.decoders.tracelogging_meta import (
    IN_ANSISTRING,
    IN_BINARY,
    IN_BOOL32,
    IN_COUNTEDANSISTRING,
    IN_COUNTEDBINARY,
    IN_COUNTEDSTRING,
    IN_DOUBLE,
    IN_FILETIME,
    IN_FLOAT,
    IN_GUID,
    IN_HEXINT32,
    IN_HEXINT64,
    IN_INT8,
    IN_INT16,
    IN_INT32,
    IN_INT64,
    IN_POINTER,
    IN_SID,
    IN_SYSTEMTIME,
    IN_UINT8,
    IN_UINT16,
    IN_UINT32,
    IN_UINT64,
    IN_UNICODESTRING,
    OUT_BOOLEAN,
    OUT_HEX,
    OUT_HRESULT,
    OUT_IPV4,
    OUT_IPV6,
    OUT_JSON,
    OUT_NTSTATUS,
    OUT_PID,
    OUT_PORT,
    OUT_STRING,
    OUT_TID,
    OUT_XML,
    TlField,
)
from dyntel.event import ArrayKind, Encoding, FieldInfo, Format, Schema
from dyntel.eventheader_text import code_point_text, latin1_text, utf8_text

PayloadDecoder = Callable[[bytes, int, int], list[Any]]
Reader = Callable[[bytes, int, int], tuple[Any, int]]

_E = Encoding
_F = Format
_FILETIME_UNIX_EPOCH = 116_444_736_000_000_000

# In-type -> (struct code, size, encoding, default format) for fixed-size numbers.
_NUMBERS: dict[int, tuple[str, int, Encoding, Format]] = {
    IN_INT8: ("b", 1, _E.VALUE8, _F.SIGNED_INT),
    IN_UINT8: ("B", 1, _E.VALUE8, _F.UNSIGNED_INT),
    IN_INT16: ("h", 2, _E.VALUE16, _F.SIGNED_INT),
    IN_UINT16: ("H", 2, _E.VALUE16, _F.UNSIGNED_INT),
    IN_INT32: ("i", 4, _E.VALUE32, _F.SIGNED_INT),
    IN_UINT32: ("I", 4, _E.VALUE32, _F.UNSIGNED_INT),
    IN_INT64: ("q", 8, _E.VALUE64, _F.SIGNED_INT),
    IN_UINT64: ("Q", 8, _E.VALUE64, _F.UNSIGNED_INT),
    IN_FLOAT: ("f", 4, _E.VALUE32, _F.FLOAT),
    IN_DOUBLE: ("d", 8, _E.VALUE64, _F.FLOAT),
    IN_BOOL32: ("i", 4, _E.VALUE32, _F.BOOLEAN),
    IN_HEXINT32: ("I", 4, _E.VALUE32, _F.HEX_INT),
    IN_HEXINT64: ("Q", 8, _E.VALUE64, _F.HEX_INT),
}
_UNSIGNED_CODE = {"b": "B", "h": "H", "i": "I", "q": "Q"}


@dataclass(slots=True, eq=False)
class CompiledEvent:
    schema: Schema
    decode: PayloadDecoder


def _guid_rfc(b: bytes) -> bytes:
    """A GUID as Windows stores it (Data1..3 little-endian) to registry byte order."""
    return b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:16]


def filetime_text(ft: int) -> str:
    """A FILETIME as ISO-8601 UTC with 100-ns digits; out of range as its raw number."""
    sec, ticks = divmod(ft - _FILETIME_UNIX_EPOCH, 10_000_000)
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ticks:07d}Z"
    except (OverflowError, OSError, ValueError):
        return f"FILETIME({ft})"


def systemtime_text(b: bytes) -> str:
    year, month, _dow, day, hour, minute, second, ms = struct.unpack("<8H", b)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}"


def sid_text(b: bytes) -> str:
    authority = int.from_bytes(b[2:8], "big")
    subs = struct.unpack_from(f"<{b[1]}I", b, 8)
    return "S-" + "-".join(str(x) for x in (b[0], authority, *subs))


def _utf16(b: bytes) -> str:
    if len(b) & 1:
        # A counted string's byte count may be odd (the writer's count is in bytes): the whole code units, then
        # U+FFFD for the half one, rather than a UnicodeDecodeError that loses the event (found by fuzzing).
        return b[:-1].decode("utf-16-le", "surrogatepass") + "\ufffd"
    return b.decode("utf-16-le", "surrogatepass")


class _Builder:
    def __init__(self, pointer_size: int) -> None:
        self.pointer_size = pointer_size

    # -- schema ------------------------------------------------------------------------------------------------

    def info(self, f: TlField) -> FieldInfo:
        encoding, fmt, size = self.kind(f)
        children = Schema(tuple(self.info(c) for c in f.children)) if f.children is not None else None
        return FieldInfo(f.name, encoding, fmt, f.array, f.count, children, f.tag, size)

    def number(self, f: TlField) -> tuple[str, int, Encoding, Format] | None:
        """The fixed-size number a field holds, with its format after the out-type, or None."""
        t = f.in_type
        if t == IN_POINTER:
            t = IN_HEXINT64 if self.pointer_size == 8 else IN_HEXINT32
        spec = _NUMBERS.get(t)
        if spec is None or f.custom:
            return None
        code, size, enc, fmt = spec
        out = f.out_type
        if fmt in (_F.SIGNED_INT, _F.UNSIGNED_INT, _F.HEX_INT):
            if out in (OUT_HEX, OUT_NTSTATUS, OUT_HRESULT):
                fmt = _F.HEX_INT
            elif out == OUT_BOOLEAN and size <= 4:
                fmt = _F.BOOLEAN
            elif out in (OUT_PID, OUT_TID) and size == 4:
                fmt = _F.PID
            elif out == OUT_PORT and size == 2:
                return None  # network byte order: read by a converting reader
            elif (out == OUT_IPV4 and size == 4) or (out == OUT_STRING and size <= 2):
                return None
        if fmt == _F.HEX_INT:
            code = _UNSIGNED_CODE.get(code, code)  # hex-shown integers are never negative
        return code, size, enc, fmt

    def kind(self, f: TlField) -> tuple[Encoding, Format, int]:
        """(encoding, format, element size) for the schema."""
        if f.children is not None:
            return _E.STRUCT, _F.DEFAULT, 0
        if f.custom:
            return _E.BINARY_LENGTH16_CHAR8, _F.HEX_BYTES, 0
        n = self.number(f)
        if n is not None:
            return n[2], n[3], n[1]
        t, out = f.in_type, f.out_type
        text_format = _F.STRING_XML if out == OUT_XML else _F.STRING_JSON if out == OUT_JSON else _F.STRING_UTF
        if t in (IN_UINT16, IN_INT16):
            if out == OUT_PORT:
                return _E.VALUE16, _F.PORT, 2
            return _E.VALUE16, _F.STRING_UTF, 2
        if t in (IN_UINT8, IN_INT8):
            return _E.VALUE8, _F.STRING8, 1
        if t in (IN_UINT32, IN_INT32):
            return _E.VALUE32, _F.IP_ADDRESS, 4
        if t == IN_UNICODESTRING:
            return _E.ZSTRING_CHAR16, text_format, 0
        if t == IN_ANSISTRING:
            return _E.ZSTRING_CHAR8, text_format, 0
        if t == IN_COUNTEDSTRING:
            return _E.STRING_LENGTH16_CHAR16, text_format, 0
        if t == IN_COUNTEDANSISTRING:
            return _E.STRING_LENGTH16_CHAR8, text_format, 0
        if t in (IN_BINARY, IN_COUNTEDBINARY):
            return _E.BINARY_LENGTH16_CHAR8, (_F.IP_ADDRESS if out == OUT_IPV6 else _F.HEX_BYTES), 0
        if t == IN_GUID:
            return _E.VALUE128, _F.UUID, 16
        # FILETIME, SYSTEMTIME and SID become text.
        return _E.ZSTRING_CHAR8, _F.STRING_UTF, 0

    # -- readers -----------------------------------------------------------------------------------------------

    def scalar_reader(self, f: TlField) -> Reader:
        """A reader of one element of `f` (not its array)."""
        name = f.name
        if f.children is not None:
            return self.struct_reader(f)
        if f.custom:
            return _counted(name, 1, bytes)
        n = self.number(f)
        if n is not None:
            unpack = struct.Struct("<" + n[0]).unpack_from
            size = n[1]

            def number(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
                if end - pos < size:
                    raise PayloadError(pos, f"field {name!r} needs {size} bytes, {max(end - pos, 0)} left")
                return unpack(buf, pos)[0], pos + size

            return number
        t, out = f.in_type, f.out_type
        if t in (IN_UINT16, IN_INT16):
            if out == OUT_PORT:
                return _fixed(name, 2, lambda b: int.from_bytes(b, "big"))
            return _fixed(name, 2, lambda b: code_point_text(int.from_bytes(b, "little")))
        if t in (IN_UINT8, IN_INT8):
            return _fixed(name, 1, latin1_text)
        if t in (IN_UINT32, IN_INT32):
            return _fixed(name, 4, bytes)  # IPv4, network order
        if t == IN_UNICODESTRING:
            return _zstring16(name)
        if t == IN_ANSISTRING:
            return _zstring8(name)
        if t == IN_COUNTEDSTRING:
            return _counted(name, 1, _utf16)
        if t == IN_COUNTEDANSISTRING:
            return _counted(name, 1, utf8_text)
        if t in (IN_BINARY, IN_COUNTEDBINARY):
            return _counted(name, 1, bytes)
        if t == IN_GUID:
            return _fixed(name, 16, _guid_rfc)
        if t == IN_FILETIME:
            return _fixed(name, 8, lambda b: filetime_text(int.from_bytes(b, "little")))
        if t == IN_SYSTEMTIME:
            return _fixed(name, 16, systemtime_text)
        if t == IN_SID:
            return _sid(name)
        raise PayloadError(0, f"field {name!r}: in-type {t} is not read")  # parse_event_meta refuses these

    def struct_reader(self, f: TlField) -> Reader:
        assert f.children is not None
        inner = self.decoder(f.children)

        def read(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
            values, pos = inner(buf, pos, end)
            return values, pos

        return read

    def field_reader(self, f: TlField) -> Reader:
        element = self.scalar_reader(f)
        if f.array == ArrayKind.NONE:
            return element
        name = f.name
        n = self.number(f) if f.children is None and not f.custom else None
        fixed = f.count if f.array == ArrayKind.FIXED else -1
        if n is not None:
            code, size = n[0], n[1]

            def numbers(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
                count = fixed
                if count < 0:
                    if end - pos < 2:
                        raise PayloadError(pos, f"array {name!r}: no room for its element count")
                    count = buf[pos] | buf[pos + 1] << 8
                    pos += 2
                m = count * size
                if end - pos < m:
                    raise PayloadError(pos, f"array {name!r} of {count} elements runs past the end of the event")
                return list(struct.unpack_from(f"<{count}{code}", buf, pos)), pos + m

            return numbers

        def elements(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
            count = fixed
            if count < 0:
                if end - pos < 2:
                    raise PayloadError(pos, f"array {name!r}: no room for its element count")
                count = buf[pos] | buf[pos + 1] << 8
                pos += 2
            out = []
            for _ in range(count):
                v, pos = element(buf, pos, end)
                out.append(v)
            return out, pos

        return elements

    def decoder(self, fields: list[TlField]) -> Callable[[bytes, int, int], tuple[list[Any], int]]:
        """Steps for `fields`: (unpack, size, None) for a run of fixed-size numbers, (None, 0, reader) otherwise."""
        steps: list[tuple[Callable[[bytes, int], tuple[Any, ...]] | None, int, Reader | None, str]] = []
        run_codes = ""
        run_first = ""
        for f in fields:
            n = self.number(f) if f.array == ArrayKind.NONE and f.children is None else None
            if n is not None:
                if not run_codes:
                    run_first = f.name
                run_codes += n[0]
                continue
            if run_codes:
                s = struct.Struct("<" + run_codes)
                steps.append((s.unpack_from, s.size, None, run_first))
                run_codes = ""
            steps.append((None, 0, self.field_reader(f), f.name))
        if run_codes:
            s = struct.Struct("<" + run_codes)
            steps.append((s.unpack_from, s.size, None, run_first))
        frozen = tuple(steps)

        def decode(buf: bytes, pos: int, end: int) -> tuple[list[Any], int]:
            values: list[Any] = []
            for unpack, size, reader, name in frozen:
                if unpack is not None:
                    if end - pos < size:
                        raise PayloadError(pos, f"field {name!r} and those after it need {size} bytes, "
                                                f"{max(end - pos, 0)} left")
                    values += unpack(buf, pos)
                    pos += size
                else:
                    assert reader is not None
                    v, pos = reader(buf, pos, end)
                    values.append(v)
            return values, pos

        return decode


def _fixed(name: str, size: int, convert: Callable[[bytes], Any]) -> Reader:
    def read(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
        if end - pos < size:
            raise PayloadError(pos, f"field {name!r} needs {size} bytes, {max(end - pos, 0)} left")
        return convert(bytes(buf[pos:pos + size])), pos + size

    return read


def _counted(name: str, unit: int, convert: Callable[[bytes], Any]) -> Reader:
    """A uint16 byte count and that many bytes."""

    def read(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
        if end - pos < 2:
            raise PayloadError(pos, f"field {name!r}: no room for its length")
        m = (buf[pos] | buf[pos + 1] << 8) * unit
        pos += 2
        if end - pos < m:
            raise PayloadError(pos, f"field {name!r} of {m} bytes runs past the end of the event")
        return convert(bytes(buf[pos:pos + m])), pos + m

    return read


def _zstring8(name: str) -> Reader:
    def read(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
        i = buf.find(b"\0", pos, end)
        if i < 0:
            raise PayloadError(pos, f"string {name!r} has no terminating NUL before the end of the event")
        return utf8_text(bytes(buf[pos:i])), i + 1

    return read


def _zstring16(name: str) -> Reader:
    def read(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
        i = pos
        while True:
            i = buf.find(b"\0\0", i, end)
            if i < 0:
                raise PayloadError(pos, f"string {name!r} has no terminating NUL before the end of the event")
            if (i - pos) & 1 == 0:
                break
            i += 1
        return _utf16(bytes(buf[pos:i])), i + 2

    return read


def _sid(name: str) -> Reader:
    def read(buf: bytes, pos: int, end: int) -> tuple[Any, int]:
        if end - pos < 8:
            raise PayloadError(pos, f"SID {name!r} needs 8 bytes, {max(end - pos, 0)} left")
        m = 8 + 4 * buf[pos + 1]
        if end - pos < m:
            raise PayloadError(pos, f"SID {name!r} of {m} bytes runs past the end of the event")
        return sid_text(bytes(buf[pos:pos + m])), pos + m

    return read


def compile_event(fields: list[TlField], pointer_size: int) -> CompiledEvent:
    b = _Builder(pointer_size)
    schema = Schema(tuple(b.info(f) for f in fields))
    inner = b.decoder(fields)

    def decode(buf: bytes, pos: int, end: int) -> list[Any]:
        return inner(buf, pos, end)[0]

    return CompiledEvent(schema, decode)
