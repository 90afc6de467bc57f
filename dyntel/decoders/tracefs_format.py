"""Tracefs `format` files: parse one, and decode raw trace entries by it.

A tracepoint's format text (from tracefs, or stored in perf.data's HEADER_TRACING_DATA) names the event, gives its
numeric ID, and lists its fields as C declarations with byte offsets and sizes: the common fields first, a blank
line, then the event's own fields. `parse_format` turns that into a `TracepointFormat`, whose `schema` holds the
event's own fields as `FieldInfo` and whose `decode` turns a raw entry (the PERF_SAMPLE_RAW bytes, starting at
common_type) into one value per schema field.

What a field's values look like follows the reference decoder (LinuxTracepoints' libtracepoint-decode-cpp and
perf-decode's JSON) exactly, quirks included, so that `dyntel.event_json` prints what perf-decode prints:

* How a field is shown (`FieldShow`) is deduced from its C type the way the reference deduces it: `unsigned long`,
  pointers and every type it does not know (`pid_t`, `bool`, `dev_t`, enums, typedefs) are hex; `char` is a string;
  `struct` values are a hex-bytes blob; `u8`..`s64`, `int`, `short`, `long long` etc. are decimal, with the file's
  `signed:` overriding the type's signedness.
* Decimal fields the reference calls signed but reads into an 8- or 16-bit unsigned C value print as unsigned
  (printf promotes them without sign extension), so those values are decoded unsigned here too.
* `char` data is Latin-1: each byte up to the first NUL is one code point.
* A field whose bytes lie outside the entry has no value: None for a scalar integer, [] for an array, "" for a
  string, b"" for a blob (the reference prints null, [], "" and "").

Decoding is compiled once per format and byte order: one `struct.Struct` reads every fixed-size field in one
`unpack_from`, and generated Python turns that tuple into the values with no per-field dispatch. Entries too short
for the fixed part take a slower path that applies the reference's per-field bounds rules one field at a time.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

from dyntel.errors import DecodeError
from dyntel.event import ArrayKind, Encoding, FieldInfo, Format, Schema

__all__ = [
    "Buffer",
    "FieldShow",
    "FormatField",
    "RawDecoder",
    "TracepointFormat",
    "decode_slowly",
    "field_info",
    "parse_field",
    "parse_format",
]

Buffer = bytes | bytearray | memoryview
RawDecoder = Callable[[Buffer], tuple[Any, ...]]
Dynamic = Literal["data_loc", "rel_loc"]
Kind = Literal["tracefs", "eventheader"]


class FieldShow(IntEnum):
    """How the reference shows a tracefs field (its PerfFieldFormat)."""

    BLOB = 0  # type unknown to the reference and not a scalar it can read: hex bytes
    UNSIGNED = 1
    SIGNED = 2
    HEX = 3
    STRING = 4


@dataclass(slots=True, eq=False)
class FormatField:
    """One `field:` line of a format file, with what the reference deduces from it."""

    name: str  # "noname" when the declaration has no identifier, as in the reference
    declaration: str  # the `field:` value as written, e.g. "unsigned long args[6]"
    type_text: str  # the declaration up to the name, e.g. "unsigned long", "__data_loc char[]"
    offset: int
    size: int  # 0 means "the rest of the entry" (e.g. ftrace's `char buf[]`)
    signed: bool | None  # the `signed:` property; None when absent or unreadable
    array: ArrayKind  # FIXED for `name[N]` (N may be a macro), VARIABLE for __data_loc/__rel_loc
    fixed_count: int  # elements a FIXED array holds (size // element_size); 0 otherwise or when size is 0
    dynamic: Dynamic | None
    element_size: int  # bytes per element: 1, 2, 4 or 8
    show: FieldShow
    bracket_count: int = 0  # the number written between the brackets; 0 when it is not a plain number


@dataclass(slots=True, eq=False)
class TracepointFormat:
    """A parsed format file. `schema` and `decode` cover the non-common fields only."""

    system: str
    name: str
    id: int
    fields: tuple[FormatField, ...]
    common_field_count: int
    kind: Kind
    schema: Schema
    eventheader_offset: int  # offset of the first non-common field (where an EventHeader starts)
    print_fmt: str = ""
    long_size: int = 8
    _decoders: dict[bool, RawDecoder] = field(default_factory=dict, repr=False)

    @property
    def common_fields(self) -> tuple[FormatField, ...]:
        return self.fields[: self.common_field_count]

    @property
    def user_fields(self) -> tuple[FormatField, ...]:
        return self.fields[self.common_field_count :]

    def decoder(self, big_endian: bool = False) -> RawDecoder:
        """The compiled decoder for one byte order; hold on to it to decode many entries."""
        d = self._decoders.get(big_endian)
        if d is None:
            d = self._decoders[big_endian] = _compile_decoder(self.user_fields, big_endian, self.label)
        return d

    def decode(self, raw: Buffer, big_endian: bool = False) -> tuple[Any, ...]:
        """Values for `self.schema` from a raw trace entry (which starts at common_type, offset 0).

        `raw` is best `bytes`; other buffers are copied when the format has __data_loc or __rel_loc fields.
        Never raises for short or inconsistent entries: missing data gives the empty values described above.
        """
        try:
            return self._decoders[big_endian](raw)
        except KeyError:
            return self.decoder(big_endian)(raw)

    @property
    def label(self) -> str:
        return f"{self.system}:{self.name}" if self.system else self.name


# ---------------------------------------------------------------------------------------------------------------
# Numbers, as the reference reads them (C strtoul with base 0)

_CLEAN_NUMBER = re.compile(r"\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*\Z")
_C_SPACE = " \t\n\v\f\r"


def _strtoul(text: str) -> tuple[int, bool]:
    """(value, in range for unsigned long) of the number at the start of `text`; (0, True) when there is none.

    Only the lenient parser needs this: it mirrors the reference, which accepts "offset:;" as 0 and "12abc" as 12.
    """
    i, n = 0, len(text)
    while i < n and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    base = 10
    if text.startswith(("0x", "0X"), i) and i + 2 < n and text[i + 2] in "0123456789abcdefABCDEF":
        base, i = 16, i + 2
    elif text.startswith("0", i):
        base = 8
    digits = "0123456789abcdef"[:base]
    j = i
    while j < n and text[j].lower() in digits:
        j += 1
    if j == i:
        return 0, True
    value = int(text[i:j], base)
    if value > 0xFFFF_FFFF_FFFF_FFFF:
        return value, False
    if negative:
        value = (-value) & 0xFFFF_FFFF_FFFF_FFFF
    return value, True


def _read_u16(text: str, strict: bool) -> int | None:
    """The value of an offset/size/signed property; None when the reference would reject it."""
    if strict and _CLEAN_NUMBER.match(text) is None:
        return None
    value, ok = _strtoul(text)
    return value if ok and value <= 0xFFFF else None


# ---------------------------------------------------------------------------------------------------------------
# One field declaration


def _is_ident_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_ident_continue(ch: str) -> bool:
    return _is_ident_start(ch) or ("0" <= ch <= "9")


def _skip_quoted(text: str, i: int, quote: str) -> int:
    """Index just past the closing quote (backslash escapes one character); len(text) when unclosed."""
    n = len(text)
    while i < n:
        ch = text[i]
        i += 1
        if ch == quote:
            break
        if ch == "\\":
            i += 1
    return min(i, n)


def _skip_nested(text: str, i: int, open_: str, close: str) -> int:
    depth, n = 1, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if ch == close:
            depth -= 1
            if depth == 0:
                break
        elif ch == open_:
            depth += 1
    return i


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, start) tokens of a C declaration, split the way the reference splits them."""
    out: list[tuple[str, str, int]] = []
    i, n = 0, len(text)
    while True:
        # The reference compares signed chars with ' ', so bytes above 0x7F count as spaces there.
        while i < n and (text[i] <= " " or text[i] > "\x7f"):
            i += 1
        if i >= n:
            return out
        start, ch = i, text[i]
        if _is_ident_start(ch):
            i += 1
            while i < n and _is_ident_continue(text[i]):
                i += 1
            kind = "ident"
        elif ch in "'\"":
            i, kind = _skip_quoted(text, i + 1, ch), "string"
        elif ch == "(":
            i, kind = _skip_nested(text, i + 1, "(", ")"), "parens"
        elif ch == "[":
            i, kind = _skip_nested(text, i + 1, "[", "]"), "brackets"
        else:
            i, kind = i + 1, "punct"
        out.append((kind, text[start:i], start))


_QUALIFIERS = frozenset({"__attribute__", "const", "volatile"})
_SIZED_TYPES: dict[str, tuple[FieldShow, int]] = {}
for _names, _show, _size in (
    (("u8", "__u8", "uint8_t"), FieldShow.UNSIGNED, 1),
    (("s8", "__s8", "int8_t"), FieldShow.SIGNED, 1),
    (("u16", "__u16", "uint16_t"), FieldShow.UNSIGNED, 2),
    (("s16", "__s16", "int16_t"), FieldShow.SIGNED, 2),
    (("u32", "__u32", "uint32_t"), FieldShow.UNSIGNED, 4),
    (("s32", "__s32", "int32_t"), FieldShow.SIGNED, 4),
    (("u64", "__u64", "uint64_t"), FieldShow.UNSIGNED, 8),
    (("s64", "__s64", "int64_t"), FieldShow.SIGNED, 8),
):
    for _n in _names:
        _SIZED_TYPES[_n] = (_show, _size)


def parse_field(declaration: str, offset: int, size: int, signed: bool | None, long_size: int = 8) -> FormatField:
    """Deduce a field's name, array shape, element size and display from its declaration, as the reference does."""
    long64 = long_size in (0, 8)  # 0: the recording did not say; the reference then assumes its own 64-bit host
    n_long = 0
    short = unsigned = signed_kw = struct_kw = data_loc = rel_loc = array = pointer = False
    name = ""
    name_start = -1
    base = ""
    bracket_count = 0

    tokens = _tokens(declaration)
    k = 0
    while k < len(tokens):
        kind, tok, start = tokens[k]
        k += 1
        if kind == "ident":
            if tok == "long":
                n_long += 1
            elif tok == "short":
                short = True
            elif tok == "unsigned":
                unsigned = True
            elif tok == "signed":
                signed_kw = True
            elif tok == "struct":
                struct_kw = True
            elif tok == "__data_loc":
                data_loc = True
            elif tok == "__rel_loc":
                rel_loc = True
            elif tok not in _QUALIFIERS:
                # The last plain identifier is the name; the one before it is the base type.
                base, name, name_start = name, tok, start
        elif kind == "brackets":
            array = True
            count, ok = _strtoul(tok[1:])
            bracket_count = count if ok and count <= 0xFFFF else 0
            if k < len(tokens) and tokens[k][0] == "ident":
                base, name, name_start = name, tokens[k][1], tokens[k][2]
            break
        elif kind == "punct" and tok == "*":
            pointer = True

    if not name:
        name = "noname"
        type_text = declaration.strip()
    else:
        type_text = declaration[:name_start].strip()

    fixup = False
    element_size = 1
    if pointer:
        show, element_size = FieldShow.HEX, (8 if long64 else 4)
    elif struct_kw:
        show, element_size = FieldShow.BLOB, 1
    elif base in ("", "int"):
        show = FieldShow.UNSIGNED if unsigned else FieldShow.SIGNED
        if n_long >= 2:
            element_size = 8
        elif n_long == 1:
            element_size = 8 if long64 else 4
            if unsigned:
                show = FieldShow.HEX
        elif short:
            element_size = 2
        else:
            element_size = 4
    elif base == "char":
        show = FieldShow.UNSIGNED if unsigned else FieldShow.SIGNED if signed_kw else FieldShow.STRING
        element_size = 1
    elif base in _SIZED_TYPES:
        show, element_size = _SIZED_TYPES[base]
    else:
        show, fixup = FieldShow.HEX, True

    if show in (FieldShow.UNSIGNED, FieldShow.SIGNED) and signed is not None:
        show = FieldShow.SIGNED if signed else FieldShow.UNSIGNED

    dynamic: Dynamic | None = None
    kind_out = ArrayKind.NONE
    if rel_loc or data_loc:
        dynamic = "rel_loc" if rel_loc else "data_loc"
        kind_out = ArrayKind.VARIABLE
        bracket_count = 0
    elif array:
        kind_out = ArrayKind.FIXED
        if fixup and bracket_count and size % bracket_count == 0 and size // bracket_count in (1, 2, 4, 8):
            element_size, fixup = size // bracket_count, False
    else:
        bracket_count = 0
        if size in (1, 2, 4, 8):
            # The declared size wins over the type's (e.g. an enum stored in one byte).
            element_size, fixup = size, False
    if fixup:
        element_size = 1

    fixed_count = size // element_size if kind_out == ArrayKind.FIXED else 0
    return FormatField(
        name=name,
        declaration=declaration,
        type_text=type_text,
        offset=offset,
        size=size,
        signed=signed,
        array=kind_out,
        fixed_count=fixed_count,
        dynamic=dynamic,
        element_size=element_size,
        show=show,
        bracket_count=bracket_count,
    )


# ---------------------------------------------------------------------------------------------------------------
# The whole file

_LINE_END = re.compile(r"\r\n|\r|\n")


class _Lines:
    """The text as lines (CRLF, CR or LF ends a line, as in the reference), with 1-based numbers for errors."""

    def __init__(self, text: str) -> None:
        self.lines = _LINE_END.split(text)
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.i = 0

    def next(self) -> tuple[int, str] | None:
        if self.i >= len(self.lines):
            return None
        self.i += 1
        return self.i, self.lines[self.i - 1]


def _field_props(line: str) -> list[tuple[str, str | None, bool]]:
    """The `NAME:VALUE;` pairs of a field line: (name, value, whether a ';' ended it).

    A trailing piece with no ':' comes back with value None (the reference stops reading the line there).
    """
    out: list[tuple[str, str | None, bool]] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t;":
            i += 1
        if i >= n:
            break
        colon = line.find(":", i)
        if colon < 0:
            out.append((line[i:], None, False))
            break
        prop = line[i:colon]
        i = colon + 1
        while i < n and line[i] in " \t":
            i += 1
        semi = line.find(";", i)
        end = n if semi < 0 else semi
        out.append((prop, line[i:end], semi >= 0))
        i = end
    return out


def _parse_field_line(
    line: str, long_size: int, strict: bool, where: Callable[[str], DecodeError]
) -> FormatField | None:
    declaration = ""
    offset: int | None = None
    size: int | None = None
    signed: bool | None = None
    for prop, value, terminated in _field_props(line):
        if value is None:
            # A piece with no ':': garbage, or a line cut short.
            if strict:
                raise where(f"expected 'NAME:VALUE;', found {prop.strip()!r}")
            break
        if prop in ("field", "field special"):
            declaration = value
            continue
        if prop not in ("offset", "size", "signed"):
            continue
        if not terminated:
            # The reference needs the ';' to trust the number; without it the line was cut short.
            if strict:
                raise where(f"'{prop}:' has no ';' after its value")
            continue
        number = _read_u16(value, strict)
        if number is None and strict:
            raise where(f"'{prop}:' value {value!r} is not a number from 0 to 65535")
        if prop == "offset":
            offset = number
        elif prop == "size":
            size = number
        else:
            signed = None if number is None else number != 0
    if not declaration or offset is None or size is None:
        if strict:
            missing = [
                p
                for p, ok in (("field", bool(declaration)), ("offset", offset is not None), ("size", size is not None))
                if not ok
            ]
            raise where("field line lacks " + ", ".join(f"'{p}:'" for p in missing))
        return None
    return parse_field(declaration, offset, size, signed, long_size)


def parse_format(
    text: str | bytes,
    system: str | None = None,
    long_size: int = 8,
    *,
    strict: bool = True,
) -> TracepointFormat:
    """Parse a tracefs format file.

    `system` names the tracepoint's system when the caller knows it (a format file does not say). `long_size` is
    sizeof(long) in the traced kernel; 0 means unknown and is taken as 8, any value but 0 and 8 as 4, as in the
    reference. Bytes are read as UTF-8, with undecodable bytes kept as surrogate escapes.

    strict=True (the default) raises DecodeError, naming the line, for anything the reference would silently skip
    or misread: a field line without field/offset/size, an unreadable number, a missing `name:`, `ID:`, `format:`
    or `print fmt:` (a text cut short). strict=False accepts what the reference accepts (bad field lines are
    dropped) and raises only when there is no name or no ID, where the reference gives up on the event too.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8", "surrogateescape")
    lines = _Lines(text)
    name: str | None = None
    event_id: int | None = None
    print_fmt: str | None = None
    fields: list[FormatField] = []
    common_count = 0
    saw_format = False
    label = f"{system}:?" if system else "?"

    def err(line_no: int, message: str, line: str | None = None) -> DecodeError:
        shown = "" if line is None else f": {line.strip()!r}"
        return DecodeError(f"tracefs format of {label}, line {line_no}: {message}{shown}")

    last_line = 0
    while (item := lines.next()) is not None:
        line_no, line = item
        last_line = line_no
        stripped = line.lstrip(" \t")
        if not stripped:
            continue
        colon = stripped.find(":")
        if colon < 0:
            if strict:
                raise err(line_no, "expected 'NAME: value'", line)
            continue
        prop = stripped[:colon]
        value = stripped[colon + 1 :].lstrip(" \t")
        if '"' in value and _open_quote(value):
            # A quoted string may run over line ends, as the reference allows.
            parts = [value]
            while _open_quote("\n".join(parts)) and (more := lines.next()) is not None:
                last_line = more[0]
                parts.append(more[1])
            value = "\n".join(parts)
        if prop == "name":
            name = value
            label = f"{system}:{name}" if system else name
        elif prop == "ID":
            number, ok = _strtoul(value)
            if not ok or (strict and _CLEAN_NUMBER.match(value) is None):
                raise err(line_no, f"ID {value!r} is not a number", line)
            event_id = number
        elif prop == "print fmt":
            print_fmt = value
        elif strict and prop in ("field", "field special"):
            # The reference ignores it; here it means a blank line too many inside the field list.
            raise err(line_no, "a field line after the end of the 'format:' section", line)
        elif prop == "format":
            if saw_format and strict:
                raise err(line_no, "a second 'format:' section")
            saw_format = True
            fields.clear()
            common_count = 0
            common = True
            while (item := lines.next()) is not None:
                line_no, line = item
                last_line = line_no
                if not line:
                    if common:
                        common = False
                        continue
                    break
                if not line.strip():
                    continue

                def where(message: str, n: int = line_no, text_: str = line) -> DecodeError:
                    return err(n, message, text_)

                parsed = _parse_field_line(line, long_size, strict, where)
                if parsed is None:
                    continue
                fields.append(parsed)
                common_count += common
            if strict and common:
                raise err(last_line, "text ends before the blank line after the common fields (cut short?)")
    if not name:
        raise err(last_line, "no 'name:' line")
    if event_id is None:
        raise err(last_line, "no 'ID:' line")
    if strict:
        if not saw_format:
            raise err(last_line, "no 'format:' section")
        if print_fmt is None:
            raise err(last_line, "text ends before 'print fmt:' (cut short?)")
    return _build(system or "", name, event_id, tuple(fields), common_count, print_fmt or "", long_size)


def _open_quote(text: str) -> bool:
    """Whether `text` ends inside a double-quoted string (a backslash escapes the next character)."""
    inside = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if inside and ch == "\\":
            i += 2
            continue
        if ch == '"':
            inside = not inside
        i += 1
    return inside


def _build(
    system: str,
    name: str,
    event_id: int,
    fields: tuple[FormatField, ...],
    common_count: int,
    print_fmt: str,
    long_size: int,
) -> TracepointFormat:
    own = fields[common_count:]
    if own:
        eh_offset = own[0].offset
    elif common_count:
        last = fields[common_count - 1]
        eh_offset = last.offset + last.size
    else:
        eh_offset = 0
    kind: Kind = "eventheader" if own and own[0].name == "eventheader_flags" else "tracefs"
    schema = Schema(tuple(field_info(f) for f in own))
    return TracepointFormat(
        system=system,
        name=name,
        id=event_id,
        fields=fields,
        common_field_count=common_count,
        kind=kind,
        schema=schema,
        eventheader_offset=eh_offset,
        print_fmt=print_fmt,
        long_size=long_size,
    )


# ---------------------------------------------------------------------------------------------------------------
# Schema mapping

_VALUE_ENCODING = {1: Encoding.VALUE8, 2: Encoding.VALUE16, 4: Encoding.VALUE32, 8: Encoding.VALUE64}


def _is_blob(f: FormatField) -> bool:
    return f.show == FieldShow.BLOB and (f.array == ArrayKind.NONE or f.element_size == 1)


def _reads_signed(f: FormatField) -> bool:
    # 8- and 16-bit values reach the reference's printf as unsigned C values, so they never print negative.
    return f.show == FieldShow.SIGNED and f.element_size >= 4


def field_info(f: FormatField) -> FieldInfo:
    """The schema entry that makes `dyntel.event_json` print this field as the reference prints it."""
    if f.show == FieldShow.STRING:
        return FieldInfo(f.name, Encoding.ZSTRING_CHAR8, Format.STRING8)
    if _is_blob(f):
        return FieldInfo(f.name, Encoding.BINARY_LENGTH16_CHAR8, Format.HEX_BYTES)
    if f.show == FieldShow.UNSIGNED or (f.show == FieldShow.SIGNED and not _reads_signed(f)):
        fmt = Format.UNSIGNED_INT
    elif f.show == FieldShow.SIGNED:
        fmt = Format.SIGNED_INT
    else:
        fmt = Format.HEX_INT
    array = ArrayKind.NONE
    count = 0
    if f.array == ArrayKind.FIXED and f.size:
        array, count = ArrayKind.FIXED, f.fixed_count
    elif f.array != ArrayKind.NONE:
        array = ArrayKind.VARIABLE
    return FieldInfo(
        f.name,
        _VALUE_ENCODING[f.element_size],
        fmt,
        array=array,
        fixed_count=count,
        element_size=f.element_size,
    )


# ---------------------------------------------------------------------------------------------------------------
# Decoding: the reference's rules, one field at a time (the slow path and the oracle for the compiled one)


def _code(f: FormatField) -> str:
    """The struct code for one element of an integer field."""
    c = {1: "B", 2: "H", 4: "I", 8: "Q"}[f.element_size]
    return c.lower() if _reads_signed(f) else c


def _field_bytes(f: FormatField, raw: bytes, bo: str) -> bytes:
    """The field's data, or b"" when it lies outside the entry (the reference's GetFieldBytes)."""
    n = len(raw)
    off, size = f.offset, f.size
    if off + size > n:
        return b""
    if size == 0:
        return raw[off:]
    if f.dynamic is None:
        return raw[off : off + size]
    if size == 4:
        (loc,) = struct.unpack_from(bo + "I", raw, off)
        start = (loc & 0xFFFF) + (off + 4 if f.dynamic == "rel_loc" else 0)
        end = start + (loc >> 16)
        return raw[start:end] if end <= n else b""
    if size == 2:
        # A 2-byte location is an offset only; the data runs to a NUL, which must be there.
        (start,) = struct.unpack_from(bo + "H", raw, off)
        if f.dynamic == "rel_loc":
            start += off + 2
        if start < n:
            nul = raw.find(b"\0", start)
            if nul >= 0:
                return raw[start:nul]
    return b""


def _ints(data: bytes, f: FormatField, bo: str) -> list[int]:
    count = len(data) // f.element_size
    if f.element_size == 1:
        return list(data)
    return list(struct.unpack_from(f"{bo}{count}{_code(f)}", data))


def _value(f: FormatField, data: bytes, bo: str) -> Any:
    if f.show == FieldShow.STRING:
        return _latin1_z(data)
    if _is_blob(f):
        return bytes(data)
    if f.array == ArrayKind.NONE:
        if len(data) < f.element_size:
            return None
        return struct.unpack_from(bo + _code(f), data)[0]
    return _ints(data, f, bo)


def decode_slowly(fields: Sequence[FormatField], raw: Buffer, big_endian: bool = False) -> tuple[Any, ...]:
    """Values of `fields` from `raw`, field by field by the reference's rules. The compiled decoder must agree."""
    bo = ">" if big_endian else "<"
    data = bytes(raw)
    return tuple(_value(f, _field_bytes(f, data, bo), bo) for f in fields)


# ---------------------------------------------------------------------------------------------------------------
# Decoding: the compiled fast path


def _latin1_z(data: bytes) -> str:
    return data.partition(b"\0")[0].decode("latin-1")


def _string_cache() -> tuple[Callable[[bytes], str | None], Callable[[bytes], str]]:
    """(get, miss) of a bounded bytes -> str cache for one decoder's string fields.

    Command names and paths repeat from event to event, and a dict hit costs a fifth of partition + decode.
    """
    cache: dict[bytes, str] = {}

    def miss(data: bytes) -> str:
        value = data.partition(b"\0")[0].decode("latin-1")
        if len(cache) >= 4096:
            cache.clear()
        cache[data] = value
        return value

    return cache.get, miss


def _string_of(var: str, env: dict[str, Any]) -> str:
    if "_sget" not in env:
        env["_sget"], env["_smiss"] = _string_cache()
    # An empty string is falsy and goes to `miss` each time; that is only slower, not wrong.
    return f"(_sget({var}) or _smiss({var}))"


def _compile_decoder(fields: Sequence[FormatField], big_endian: bool, label: str) -> RawDecoder:
    """Generate, once, a function that decodes an entry with one unpack_from and one tuple expression.

    Fixed-size fields go into struct segments (one, unless fields overlap); 4-byte __data_loc/__rel_loc words are
    read in the same unpack and resolved after it. Fields the fast path does not model (size 0, 2-byte locations,
    a scalar smaller than its type) call the field-by-field code; they do not occur in real kernels' formats.
    """
    bo = ">" if big_endian else "<"
    env: dict[str, Any] = {"_slow": lambda raw: decode_slowly(fields, raw, big_endian)}
    need = max((f.offset + f.size for f in fields), default=0)

    # Struct layout: fields with fixed bytes, in offset order, split into segments where they overlap.
    in_struct = [i for i, f in enumerate(fields) if f.size > 0 and (f.dynamic is None or f.size == 4)]
    in_struct.sort(key=lambda i: (fields[i].offset, i))
    segments: list[tuple[int, list[str], int]] = []  # (start offset, codes, end offset)
    item_of: dict[int, int] = {}  # field index -> index of its first item in the concatenated tuple
    items = 0
    for i in in_struct:
        f = fields[i]
        if not segments or f.offset < segments[-1][2]:
            segments.append((f.offset, [], f.offset))
        start, codes, end = segments[-1]
        if f.offset > end:
            codes.append(f"{f.offset - end}x")
        code, produced = _struct_code(f)
        codes.append(code)
        item_of[i] = items
        items += produced
        segments[-1] = (start, codes, f.offset + f.size)

    body: list[str] = []
    if any(f.dynamic is not None or f.size == 0 for f in fields):
        # Dynamic data is sliced out of `raw`, and slices of other buffers lack bytes' methods.
        body.append("if raw.__class__ is not bytes: raw = bytes(raw)")
    unpacks = []
    for s, (start, codes, _end) in enumerate(segments):
        env[f"_u{s}"] = struct.Struct(bo + "".join(codes)).unpack_from
        unpacks.append(f"_u{s}(raw, {start})")
    needs_n = any(f.dynamic is not None for f in fields)
    if unpacks and max(end for _s, _c, end in segments) == need:
        # The unpack itself checks the length the reference checks, and a try costs nothing when nothing fails.
        env["_error"] = struct.error
        body += ["try:", "    t = " + " + ".join(unpacks), "except _error:", "    return _slow(raw)"]
        if needs_n:
            body.append("n = len(raw)")
    else:
        body += ["n = len(raw)", f"if n < {need}: return _slow(raw)"]
        if unpacks:
            body.append("t = " + " + ".join(unpacks))

    exprs: list[str] = []
    for i, f in enumerate(fields):
        if i in item_of:
            k = item_of[i]
            if f.dynamic is not None:
                rel = f" + {f.offset + 4}" if f.dynamic == "rel_loc" else ""
                body.append(f"d = t[{k}]; o = (d & 0xFFFF){rel}; e = o + (d >> 16)")
                body.append(f"v{i} = raw[o:e] if e <= n else b''")
                exprs.append(_from_bytes(f, f"v{i}", env, i, bo))
            else:
                exprs.append(_from_struct(f, k, env))
        else:
            env[f"_h{i}"] = _field_decoder(f, bo)
            exprs.append(f"_h{i}(raw)")

    identity = len(segments) == 1 and len(fields) == items and all(exprs[i] == f"t[{i}]" for i in range(len(fields)))
    if identity:
        body.append("return t")
    else:
        body.append("return (" + "".join(e + ", " for e in exprs) + ")")
    # Helpers become default arguments: local lookups are cheaper than global ones, per event.
    params = "".join(f", {name}={name}" for name in env)
    src = f"def _decode(raw{params}):\n" + "".join(f"    {line}\n" for line in body)
    # !a: the label comes from the format file and may hold NUL (which compile() refuses in a file name).
    exec(compile(src, f"<tracefs decoder {label!a}>", "exec"), env)
    decoder: RawDecoder = env["_decode"]
    decoder.__doc__ = src  # the generated source, for whoever debugs a decoder
    # An all-scalar payload is one unpack at a fixed offset: (offset, struct), for a reader that does that unpack
    # itself on the sample it holds (dyntel.sources.perf.sample's Recipe.fixed), else None.
    decoder.fixed = (segments[0][0], env["_u0"].__self__) if identity else None  # type: ignore[attr-defined]
    return decoder


def _struct_code(f: FormatField) -> tuple[str, int]:
    """(struct code covering the field's `size` bytes, how many tuple items it yields)."""
    if f.dynamic is not None:
        return "I", 1
    if f.show == FieldShow.STRING or _is_blob(f):
        return f"{f.size}s", 1
    e = f.element_size
    if f.array == ArrayKind.NONE:
        if f.size < e:
            return f"{f.size}x", 0
        return _code(f) + (f"{f.size - e}x" if f.size > e else ""), 1
    count = f.size // e
    rest = f.size - count * e
    pad = f"{rest}x" if rest else ""
    if e == 1:
        return f"{f.size}s", 1
    return f"{count}{_code(f)}{pad}", count


def _from_struct(f: FormatField, k: int, env: dict[str, Any]) -> str:
    if f.show == FieldShow.STRING:
        return _string_of(f"t[{k}]", env)
    if _is_blob(f):
        return f"t[{k}]"
    if f.array == ArrayKind.NONE:
        return "None" if f.size < f.element_size else f"t[{k}]"
    if f.element_size == 1:
        return f"list(t[{k}])"
    count = f.size // f.element_size
    if count <= 16:
        # A list display beats list(t[a:b]) by a slice and a call.
        return "[" + ", ".join(f"t[{j}]" for j in range(k, k + count)) + "]"
    return f"list(t[{k}:{k + count}])"


def _from_bytes(f: FormatField, var: str, env: dict[str, Any], i: int, bo: str) -> str:
    if f.show == FieldShow.STRING:
        return _string_of(var, env)
    if _is_blob(f):
        return var
    if f.element_size == 1:
        return f"list({var})"
    env[f"_ints{i}"] = lambda data, _f=f: _ints(data, _f, bo)
    return f"_ints{i}({var})"


def _field_decoder(f: FormatField, bo: str) -> Callable[[bytes], Any]:
    def decode_field(raw: bytes) -> Any:
        return _value(f, _field_bytes(f, raw, bo), bo)

    return decode_field
