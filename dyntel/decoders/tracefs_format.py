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

This module reads whole files; one field's declaration is read in `tracefs_decl`, and entries are decoded in
`tracefs_decode`. The names above are all importable from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# The number readers are the reference's, shared with the declaration parser.
from dyntel.decoders.tracefs_decl import (
    _CLEAN_NUMBER,
    FieldShow,
    FormatField,
    _read_u16,
    _strtoul,
    field_info,
    parse_field,
)
from dyntel.decoders.tracefs_decode import Buffer, RawDecoder, _compile_decoder, decode_slowly
from dyntel.errors import DecodeError
from dyntel.event import Schema

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

Kind = Literal["tracefs", "eventheader"]


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
            fields, common_count, last_line = _format_section(lines, long_size, strict, err, last_line)
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


def _format_section(
    lines: _Lines, long_size: int, strict: bool, err: Callable[..., DecodeError], last_line: int
) -> tuple[list[FormatField], int, int]:
    """The field lines after `format:`: the common fields, a blank line, the event's own fields, up to the next
    blank line. Returns (fields, how many of them are common, the number of the last line read)."""
    fields: list[FormatField] = []
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
    return fields, common_count, last_line


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

