"""How one scalar value is shown in JSON, by its field's encoding and format (as the reference decoder shows it).

`value_formatter(info)` returns a function from a decoded value to its JSON text. It is called once per field of a
schema when the schema's writer is compiled, never per event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dyntel.event import Encoding, FieldInfo, Format

Formatter = Callable[[Any], str]

_STRING_ENCODINGS = frozenset(
    {
        Encoding.ZSTRING_CHAR8,
        Encoding.ZSTRING_CHAR16,
        Encoding.ZSTRING_CHAR32,
        Encoding.STRING_LENGTH16_CHAR8,
        Encoding.STRING_LENGTH16_CHAR16,
        Encoding.STRING_LENGTH16_CHAR32,
    }
)


def _json_string(v: Any) -> str:
    from dyntel.event_json import json_string

    return json_string(v)


def _decimal(v: Any) -> str:
    return str(v)


def _hex(v: Any) -> str:
    return f'"0x{v:X}"'


def _hex_bytes(v: Any) -> str:
    return '"' + bytes(v).hex(" ") + '"'


def _boolean(v: Any) -> str:
    return "true" if v else "false"


def effective_format(info: FieldInfo) -> Format:
    """The format to show, with DEFAULT resolved by the encoding."""
    fmt = info.format
    if fmt != Format.DEFAULT:
        return fmt
    enc = info.encoding
    if enc in _STRING_ENCODINGS:
        return Format.STRING_UTF
    if enc in (Encoding.VALUE8, Encoding.VALUE16, Encoding.VALUE32, Encoding.VALUE64):
        return Format.UNSIGNED_INT
    return Format.HEX_BYTES


def value_formatter(info: FieldInfo) -> Formatter:
    fmt = effective_format(info)
    if fmt in (Format.UNSIGNED_INT, Format.SIGNED_INT):
        return _decimal
    if fmt == Format.HEX_INT:
        return _hex
    if fmt == Format.BOOLEAN:
        return _boolean
    if fmt in (Format.STRING8, Format.STRING_UTF, Format.STRING_UTF_BOM, Format.STRING_XML, Format.STRING_JSON):
        return _json_string
    return _hex_bytes
