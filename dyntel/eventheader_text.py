"""Event bytes to `str`, the way the reference decoder turns them into UTF-8 output.

The reference never rejects text: it passes surrogates through, writes code points above U+10FFFF in the old 5- to
7-byte UTF-8 forms, and reads a byte that does not start a valid UTF-8 sequence as Latin-1. The strings built here
hold exactly the characters it writes; where its output is not valid UTF-8, the bytes it writes are kept as surrogate
escapes, so `s.encode("utf-8", "surrogateescape")` gives back its output byte for byte.

Every function tries the strict codec first: valid text, by far the common case, costs one C-level decode.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable

TextDecoder = Callable[[bytes], str]


def _extended_utf8(cp: int) -> bytes:
    """The reference's UTF-8 form of any 32-bit value: surrogates as 3 bytes, values past U+10FFFF as 4 to 7."""
    if cp < 0x80:
        return bytes((cp,))
    if cp < 0x800:
        return bytes((0xC0 | cp >> 6, 0x80 | cp & 0x3F))
    if cp < 0x10000:
        return bytes((0xE0 | cp >> 12, 0x80 | cp >> 6 & 0x3F, 0x80 | cp & 0x3F))
    if cp < 0x200000:
        return bytes((0xF0 | cp >> 18, 0x80 | cp >> 12 & 0x3F, 0x80 | cp >> 6 & 0x3F, 0x80 | cp & 0x3F))
    if cp < 0x4000000:
        return bytes(
            (0xF8 | cp >> 24, 0x80 | cp >> 18 & 0x3F, 0x80 | cp >> 12 & 0x3F, 0x80 | cp >> 6 & 0x3F, 0x80 | cp & 0x3F)
        )
    if cp < 0x80000000:
        return bytes((0xFC | cp >> 30, *(0x80 | cp >> shift & 0x3F for shift in (24, 18, 12, 6, 0))))
    return bytes((0xFE, *(0x80 | cp >> shift & 0x3F for shift in (30, 24, 18, 12, 6, 0))))


def code_point_text(cp: int) -> str:
    """One UCS code point (a char16 or char32 value) as the reference writes it."""
    if cp < 0xD800 or 0xE000 <= cp < 0x110000:
        return chr(cp)
    return _extended_utf8(cp).decode("utf-8", "surrogateescape")


def latin1_text(b: bytes) -> str:
    return b.decode("latin-1")


def _reference_utf8_error(e: UnicodeError) -> tuple[str, int]:
    """Python's strict UTF-8 decoder stops exactly where the reference stops accepting, except at surrogates (ED A0..BF
    xx), which the reference passes through: those 3 bytes are kept as they are; any other byte where decoding fails
    is read as Latin-1, and decoding resumes at the next byte, as in the reference."""
    assert isinstance(e, UnicodeDecodeError)
    b, i = e.object, e.start
    if b[i] == 0xED and len(b) - i >= 3 and 0xA0 <= b[i + 1] <= 0xBF and 0x80 <= b[i + 2] <= 0xBF:
        return chr(0xDCED) + chr(0xDC00 + b[i + 1]) + chr(0xDC00 + b[i + 2]), i + 3
    return chr(b[i]), i + 1


codecs.register_error("dyntel.reference-utf8", _reference_utf8_error)


def utf8_text(b: bytes) -> str:
    return b.decode("utf-8", "dyntel.reference-utf8")


_PLANE_2 = "\U00020000"


def _as_reference_pairs(s: str) -> str:
    """The reference joins a surrogate pair with `|` where UTF-16 adds 0x10000, so from U+20000 up it writes
    (cp - 0x10000) | 0x10000 (U+20000 comes out as U+10000). Its output is what these strings must hold."""
    return "".join(chr(ord(c) - 0x10000 | 0x10000) if c >= _PLANE_2 else c for c in s)


def utf16_text(b: bytes, big_endian: bool) -> str:
    codec = "utf-16-be" if big_endian else "utf-16-le"
    try:
        s = b.decode(codec)
    except UnicodeDecodeError:
        # Unpaired surrogates: the reference writes each as its 3-byte form.
        s = _as_reference_pairs(b.decode(codec, "surrogatepass"))
        return s.encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape")
    if s.isascii() or max(s) < _PLANE_2:
        return s
    return _as_reference_pairs(s)


def utf16le_text(b: bytes) -> str:
    return utf16_text(b, False)


def utf16be_text(b: bytes) -> str:
    return utf16_text(b, True)


def utf32_text(b: bytes, big_endian: bool) -> str:
    try:
        return b.decode("utf-32-be" if big_endian else "utf-32-le")
    except UnicodeDecodeError:
        units = struct.unpack(f"{'>' if big_endian else '<'}{len(b) // 4}I", b)
        return b"".join(_extended_utf8(cp) for cp in units).decode("utf-8", "surrogateescape")


def utf32le_text(b: bytes) -> str:
    return utf32_text(b, False)


def utf32be_text(b: bytes) -> str:
    return utf32_text(b, True)


def bom_text(b: bytes, no_bom: TextDecoder) -> str:
    """Text that names its own encoding with a byte order mark, else `no_bom(b)`.

    The marks are compared as the reference (built little-endian) compares them: against its own byte order, so
    FF FE 00 00 is UTF-32LE even in a big-endian event. The UTF-32 marks are tried first, so FF FE 00 00 is never
    UTF-16. A trailing partial code unit is dropped.
    """
    head = b[:4]
    if head == b"\xff\xfe\x00\x00":
        return utf32_text(b[4 : len(b) & ~3], False)
    if head == b"\x00\x00\xfe\xff":
        return utf32_text(b[4 : len(b) & ~3], True)
    head = b[:2]
    if head == b"\xff\xfe":
        return utf16_text(b[2 : len(b) & ~1], False)
    if head == b"\xfe\xff":
        return utf16_text(b[2 : len(b) & ~1], True)
    if b[:3] == b"\xef\xbb\xbf":
        return utf8_text(b[3:])
    return no_bom(b)


def bom_or(no_bom: TextDecoder) -> TextDecoder:
    def decode(b: bytes) -> str:
        return bom_text(b, no_bom)

    return decode
