"""One field of a tracefs format file: its C declaration read as the reference reads it, and its schema entry.

`parse_field` deduces a field's name, array shape, element size and how it is shown (`FieldShow`) from the
declaration and the `offset:`, `size:` and `signed:` properties, quirks included (see dyntel.decoders.tracefs_format,
which reads whole format files); `field_info` gives the `FieldInfo` that makes `dyntel.event_json` print the field's
values as the reference prints them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from dyntel.event import ArrayKind, Encoding, FieldInfo, Format

Dynamic = Literal["data_loc", "rel_loc"]


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


@dataclass(slots=True)
class _Declared:
    """What the words of a declaration say, before its sizes are weighed."""

    n_long: int = 0
    short: bool = False
    unsigned: bool = False
    signed_kw: bool = False
    struct_kw: bool = False
    data_loc: bool = False
    rel_loc: bool = False
    array: bool = False
    pointer: bool = False
    name: str = ""
    name_start: int = -1
    base: str = ""
    bracket_count: int = 0


def _declared(declaration: str) -> _Declared:
    """The keywords, the base type, the name and the brackets of a declaration, read as the reference reads them."""
    d = _Declared()
    tokens = _tokens(declaration)
    k = 0
    while k < len(tokens):
        kind, tok, start = tokens[k]
        k += 1
        if kind == "ident":
            if tok == "long":
                d.n_long += 1
            elif tok == "short":
                d.short = True
            elif tok == "unsigned":
                d.unsigned = True
            elif tok == "signed":
                d.signed_kw = True
            elif tok == "struct":
                d.struct_kw = True
            elif tok == "__data_loc":
                d.data_loc = True
            elif tok == "__rel_loc":
                d.rel_loc = True
            elif tok not in _QUALIFIERS:
                # The last plain identifier is the name; the one before it is the base type.
                d.base, d.name, d.name_start = d.name, tok, start
        elif kind == "brackets":
            d.array = True
            count, ok = _strtoul(tok[1:])
            d.bracket_count = count if ok and count <= 0xFFFF else 0
            if k < len(tokens) and tokens[k][0] == "ident":
                d.base, d.name, d.name_start = d.name, tokens[k][1], tokens[k][2]
            break
        elif kind == "punct" and tok == "*":
            d.pointer = True
    return d


def _type_show(d: _Declared, long64: bool) -> tuple[FieldShow, int, bool]:
    """(how the type is shown, its element size, whether the size is a guess the field's size may correct)."""
    if d.pointer:
        return FieldShow.HEX, (8 if long64 else 4), False
    if d.struct_kw:
        return FieldShow.BLOB, 1, False
    if d.base in ("", "int"):
        show = FieldShow.UNSIGNED if d.unsigned else FieldShow.SIGNED
        if d.n_long >= 2:
            return show, 8, False
        if d.n_long == 1:
            return (FieldShow.HEX if d.unsigned else show), (8 if long64 else 4), False
        return show, (2 if d.short else 4), False
    if d.base == "char":
        return (FieldShow.UNSIGNED if d.unsigned else FieldShow.SIGNED if d.signed_kw else FieldShow.STRING), 1, False
    if d.base in _SIZED_TYPES:
        show, size = _SIZED_TYPES[d.base]
        return show, size, False
    return FieldShow.HEX, 1, True


def parse_field(declaration: str, offset: int, size: int, signed: bool | None, long_size: int = 8) -> FormatField:
    """Deduce a field's name, array shape, element size and display from its declaration, as the reference does."""
    long64 = long_size in (0, 8)  # 0: the recording did not say; the reference then assumes its own 64-bit host
    d = _declared(declaration)
    bracket_count = d.bracket_count
    if not d.name:
        name = "noname"
        type_text = declaration.strip()
    else:
        name = d.name
        type_text = declaration[: d.name_start].strip()

    show, element_size, fixup = _type_show(d, long64)
    if show in (FieldShow.UNSIGNED, FieldShow.SIGNED) and signed is not None:
        show = FieldShow.SIGNED if signed else FieldShow.UNSIGNED

    dynamic: Dynamic | None = None
    kind_out = ArrayKind.NONE
    if d.rel_loc or d.data_loc:
        dynamic = "rel_loc" if d.rel_loc else "data_loc"
        kind_out = ArrayKind.VARIABLE
        bracket_count = 0
    elif d.array:
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

