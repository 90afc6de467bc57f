"""How one scalar value is shown in JSON, by its field's encoding and format (as the reference decoder shows it).

`value_formatter(info)` returns a function from a decoded value to its JSON text. It is called once per field of a
schema when the schema's writer is compiled, never per event, so every choice that depends only on the field (which
format applies to this encoding, float32 or float64, the mask for hex) is made there and the returned function does
the least it can.

What each format expects as its value (the EventHeader decoder produces exactly these; other decoders may pass
`None` for a value they could not read, shown as `null`):

- UNSIGNED_INT, SIGNED_INT, PID, PORT: int. HEX_INT: int, shown as "0x%X" of its unsigned form.
- ERRNO: int ("EPERM(1)", or "ERRNO(n)" outside the known names). TIME: int seconds since 1970
  ("1970-01-01T00:00:00", or "TIME(n)" where the C library's gmtime fails).
- BOOLEAN: int or bool; 0 and 1 are false and true, anything else is shown as a signed 32-bit number.
- FLOAT: float; float32 when the field is 4 bytes wide (or the value is a `Float32`), in the shortest form that reads
  back to the same value (C++ `std::to_chars`), with NaN and infinities as the strings "nan", "-nan", "inf", "-inf".
- HEX_BYTES, and VALUE128 without a more specific format: bytes, shown as "01 02 ff".
- STRING8, STRING_UTF, STRING_UTF_BOM, STRING_XML, STRING_JSON: str (already decoded), or bytes.
- UUID: 16 bytes. IP_ADDRESS: 4 or 16 bytes.
- A STRING_LENGTH16_CHAR8 or BINARY_LENGTH16_CHAR8 field with a fixed-size format is read by its length, as the
  reference does: None for length 0, the format's value for a length the format supports, else the encoding's
  default (str for the string encoding, bytes for binary). Its formatter shows whichever it gets.
"""

from __future__ import annotations

import math
import socket
import struct
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

from dyntel.event import Encoding, FieldInfo, Format
from dyntel.eventheader_text import latin1_text, utf8_text

Formatter = Callable[[Any], str]

_encode_str: Callable[[str], str] = encode_basestring


def json_string(s: str) -> str:
    """A JSON string literal; non-ASCII text stays as it is (the output is UTF-8, like the reference's)."""
    return _encode_str(s)


def format_uuid(b: bytes) -> str:
    h = b.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class Float32(float):
    """A float read from 4 bytes where the field's width alone does not say so (a length-prefixed field)."""

    __slots__ = ()


_F = Format
_E = Encoding

# Per encoding, the formats the reference applies; any other format falls back to the encoding's default.
_VALUE_FORMATS: dict[Encoding, frozenset[Format]] = {
    _E.VALUE8: frozenset({_F.UNSIGNED_INT, _F.SIGNED_INT, _F.HEX_INT, _F.BOOLEAN, _F.HEX_BYTES, _F.STRING8}),
    _E.VALUE16: frozenset(
        {_F.UNSIGNED_INT, _F.SIGNED_INT, _F.HEX_INT, _F.BOOLEAN, _F.HEX_BYTES, _F.STRING_UTF, _F.PORT}
    ),
    _E.VALUE32: frozenset(
        {
            _F.UNSIGNED_INT,
            _F.SIGNED_INT,
            _F.PID,
            _F.HEX_INT,
            _F.ERRNO,
            _F.TIME,
            _F.BOOLEAN,
            _F.FLOAT,
            _F.HEX_BYTES,
            _F.STRING_UTF,
            _F.IP_ADDRESS,
        }
    ),
    _E.VALUE64: frozenset({_F.UNSIGNED_INT, _F.SIGNED_INT, _F.HEX_INT, _F.TIME, _F.FLOAT, _F.HEX_BYTES}),
    _E.VALUE128: frozenset({_F.HEX_BYTES, _F.UUID, _F.IP_ADDRESS}),
}
_STRING_FORMATS = frozenset({_F.HEX_BYTES, _F.STRING_UTF, _F.STRING_UTF_BOM, _F.STRING_XML, _F.STRING_JSON})
_CHAR_FORMATS: dict[Encoding, frozenset[Format]] = {
    _E.ZSTRING_CHAR8: _STRING_FORMATS | {_F.STRING8},
    _E.ZSTRING_CHAR16: _STRING_FORMATS,
    _E.ZSTRING_CHAR32: _STRING_FORMATS,
    _E.STRING_LENGTH16_CHAR16: _STRING_FORMATS,
    _E.STRING_LENGTH16_CHAR32: _STRING_FORMATS,
}
LENGTH16_CHAR8_ENCODINGS = frozenset({_E.STRING_LENGTH16_CHAR8, _E.BINARY_LENGTH16_CHAR8})

# Formats of a fixed size; on a length-prefixed char8 field they apply only when the length fits.
SIZED_FORMATS: dict[Format, frozenset[int]] = {
    _F.UNSIGNED_INT: frozenset({1, 2, 4, 8}),
    _F.SIGNED_INT: frozenset({1, 2, 4, 8}),
    _F.HEX_INT: frozenset({1, 2, 4, 8}),
    _F.ERRNO: frozenset({4}),
    _F.PID: frozenset({4}),
    _F.TIME: frozenset({4, 8}),
    _F.BOOLEAN: frozenset({1, 2, 4}),
    _F.FLOAT: frozenset({4, 8}),
    _F.UUID: frozenset({16}),
    _F.PORT: frozenset({2}),
    _F.IP_ADDRESS: frozenset({4, 16}),
}

_STRING_LIKE = frozenset({_F.STRING8, _F.STRING_UTF, _F.STRING_UTF_BOM, _F.STRING_XML, _F.STRING_JSON})


def effective_format(info: FieldInfo) -> Format:
    """The format the reference applies to this field: DEFAULT, and formats the encoding does not support, resolved
    to the encoding's default; IP_ADDRESS_OBSOLETE read as IP_ADDRESS."""
    return resolve_format(info.encoding, info.format)


def resolve_format(encoding: Encoding, fmt: Format) -> Format:
    if fmt == _F.IP_ADDRESS_OBSOLETE:
        fmt = _F.IP_ADDRESS
    allowed = _VALUE_FORMATS.get(encoding)
    if allowed is not None:
        if fmt in allowed:
            return fmt
        return _F.HEX_BYTES if encoding == _E.VALUE128 else _F.UNSIGNED_INT
    allowed = _CHAR_FORMATS.get(encoding)
    if allowed is not None:
        return fmt if fmt in allowed else _F.STRING_UTF
    if encoding == _E.STRING_LENGTH16_CHAR8:
        return fmt if fmt != _F.DEFAULT else _F.STRING_UTF
    if fmt == _F.DEFAULT:
        return _F.HEX_BYTES
    return fmt


# -- scalar texts, shared with the decoder's tests ------------------------------------------------------------------

_ERRNO_NAMES = (
    "-", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD", "EAGAIN",
    "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR", "EISDIR", "EINVAL",
    "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EMLINK", "EPIPE", "EDOM",
    "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP", "-", "ENOMSG", "EIDRM", "ECHRNG",
    "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH", "ENOCSI", "EL2HLT", "EBADE", "EBADR", "EXFULL", "ENOANO",
    "EBADRQC", "EBADSLT", "-", "EBFONT", "ENOSTR", "ENODATA", "ETIME", "ENOSR", "ENONET", "ENOPKG", "EREMOTE",
    "ENOLINK", "EADV", "ESRMNT", "ECOMM", "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG", "EOVERFLOW", "ENOTUNIQ",
    "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD", "ELIBSCN", "ELIBMAX", "ELIBEXEC", "EILSEQ", "ERESTART", "ESTRPIPE",
    "EUSERS", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT", "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN",
    "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET", "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN",
    "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE",
    "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM", "EREMOTEIO", "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED",
    "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED", "EOWNERDEAD", "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",
)
# The reference names 0, 41 and 58 (no Linux name) like any unknown value.
_ERRNO_TEXT = tuple(f"ERRNO({i})" if n == "-" else f"{n}({i})" for i, n in enumerate(_ERRNO_NAMES))


def errno_text(v: int) -> str:
    """"EPERM(1)"; the value is read as a signed 32-bit number, as the reference prints it."""
    v = ((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
    if 0 <= v < len(_ERRNO_TEXT):
        return _ERRNO_TEXT[v]
    return f"ERRNO({v})"


_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def time_text(t: int) -> str:
    """Seconds since 1970 as glibc's gmtime_r and the reference's "%04d-%02u-%02uT%02u:%02u:%02u" show them.

    gmtime_r fails when the year does not fit tm_year (an int counting from 1900); the reference then prints
    TIME(n). It adds 1900 back in 32-bit arithmetic, so the few years past INT_MAX print wrapped, as here.
    """
    days, sec = divmod(t, 86400)
    # Days to a civil date (proleptic Gregorian), by 400-year eras counted from 0000-03-01.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    if month <= 2:
        year += 1
    if not _INT32_MIN <= year - 1900 <= _INT32_MAX:
        return f"TIME({t})"
    if year > _INT32_MAX:
        year -= 2**32
    hour, rem = divmod(sec, 3600)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{rem // 60:02d}:{rem % 60:02d}"


_F32 = struct.Struct("<f")


def _as_float32(x: float) -> float:
    try:
        r: float = _F32.unpack(_F32.pack(x))[0]
        return r
    except OverflowError:
        return math.inf


def _shortest_text(x: float, digits: str, point: int) -> str:
    """`std::to_chars(value)`: the shorter of fixed and scientific (fixed on a tie), from the shortest round-trip
    digits; x == 0.digits × 10^point. A whole number in fixed form is printed exactly, as libstdc++ does."""
    n = len(digits)
    sci_exp = point - 1
    sci_len = n + (n > 1) + 2 + max(2, len(str(abs(sci_exp))))
    # Fixed is "0.000ddd" below 1, else "ddd000" or "dd.ddd".
    fixed_len = n + 1 - sci_exp if sci_exp < 0 else max(n, sci_exp + 1) + (n > sci_exp + 1)
    sign = "-" if x < 0 else ""
    if fixed_len <= sci_len:
        if sci_exp >= n - 1:
            return sign + str(int(abs(x)))
        if sci_exp >= 0:
            return sign + digits[:point] + "." + digits[point:]
        return sign + "0." + "0" * (-point) + digits
    mant = digits[0] + "." + digits[1:] if n > 1 else digits
    return f"{sign}{mant}e{'-' if sci_exp < 0 else '+'}{abs(sci_exp):02d}"


def _digits_point(s: str) -> tuple[str, int]:
    """A positive decimal numeral (as repr or %e write it) as its significant digits and decimal point position."""
    mant, _, exp = s.partition("e")
    whole, _, frac = mant.partition(".")
    all_digits = whole + frac
    stripped = all_digits.lstrip("0")
    point = len(whole) + (int(exp) if exp else 0) - (len(all_digits) - len(stripped))
    return stripped.rstrip("0"), point


def _nonfinite_text(x: float) -> str:
    if math.isnan(x):
        return '"-nan"' if math.copysign(1.0, x) < 0 else '"nan"'
    return '"-inf"' if x < 0 else '"inf"'


def float64_text(x: float) -> str:
    """A float64 as the reference prints it in JSON (non-finite values quoted)."""
    if x != x or x in (math.inf, -math.inf):
        return _nonfinite_text(x)
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    digits, point = _digits_point(repr(abs(x)))
    return _shortest_text(x, digits, point)


def float32_text(x: float) -> str:
    """A float32 (held exactly in a Python float) in the shortest form that reads back to the same float32."""
    if x != x or x in (math.inf, -math.inf):
        return _nonfinite_text(x)
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    a = abs(x)
    for precision in range(9):
        s = f"{a:.{precision}e}"
        if _as_float32(float(s)) == a:
            break
        if float(s) < a:
            # Below a power of two the gap to the next smaller float32 is half the gap above, so the nearest
            # numeral can miss while the next one up still reads back: that one is the shortest.
            mant, _, exp = s.partition("e")
            up = f"{int(mant.replace('.', '')) + 1}e{int(exp) - precision}"
            if _as_float32(float(up)) == a:
                s = up
                break
    digits, point = _digits_point(s)
    return _shortest_text(x, digits, point)


def bool_text(v: int) -> str:
    if v == 0:
        return "false"
    if v == 1:
        return "true"
    return str(((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000)


def ip_text(b: bytes) -> str:
    if len(b) == 4:
        return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"
    return socket.inet_ntop(socket.AF_INET6, bytes(b))


# -- formatters -----------------------------------------------------------------------------------------------------


def _decimal(v: Any) -> str:
    return "null" if v is None else str(v)


def _hex_formatter(info: FieldInfo) -> Formatter:
    # Signed values from other decoders are shown as the unsigned number of the field's width, as the reference does.
    mask = (1 << 8 * info.element_size) - 1 if info.element_size else (1 << 64) - 1

    def hex_int(v: Any) -> str:
        return "null" if v is None else f'"0x{v & mask:X}"'

    return hex_int


def _hex_bytes(v: Any) -> str:
    if v is None:
        return "null"
    text: str = v.hex(" ")
    return '"' + text + '"'


def _errno(v: Any) -> str:
    return "null" if v is None else '"' + errno_text(v) + '"'


def _time(v: Any) -> str:
    return "null" if v is None else '"' + time_text(v) + '"'


def _boolean(v: Any) -> str:
    return "null" if v is None else bool_text(v)


def _float32(v: Any) -> str:
    return "null" if v is None else float32_text(v)


def _float64(v: Any) -> str:
    return "null" if v is None else float64_text(v)


def _uuid(v: Any) -> str:
    return "null" if v is None else '"' + format_uuid(bytes(v)) + '"'


def _ip(v: Any) -> str:
    return "null" if v is None else '"' + ip_text(v) + '"'


def _string_formatter(to_text: Callable[[bytes], str]) -> Formatter:
    def string(v: Any) -> str:
        if type(v) is str:
            return json_string(v)
        if v is None:
            return "null"
        return json_string(to_text(bytes(v).split(b"\0", 1)[0]))

    return string


_string8 = _string_formatter(latin1_text)
_string_utf = _string_formatter(utf8_text)


def _sized_formatter(fmt: Format) -> Formatter:
    """For a length-prefixed char8 field with a fixed-size format: the value's type says which reading applied."""
    int_text: Callable[[int], str]
    if fmt == _F.HEX_INT:
        int_text = "0x{:X}".format
        quoted = True
    elif fmt == _F.ERRNO:
        int_text, quoted = errno_text, True
    elif fmt == _F.TIME:
        int_text, quoted = time_text, True
    elif fmt == _F.BOOLEAN:
        int_text, quoted = bool_text, False
    else:
        int_text, quoted = str, False

    def sized(v: Any) -> str:
        t = type(v)
        if t is int:
            return '"' + int_text(v) + '"' if quoted else int_text(v)
        if v is None:
            return "null"
        if t is str:
            return json_string(v)
        if t is Float32:
            return float32_text(v)
        if t is float:
            return float64_text(v)
        if fmt == _F.UUID and len(v) == 16:
            return _uuid(v)
        if fmt == _F.IP_ADDRESS and len(v) in (4, 16):
            return _ip(v)
        return _hex_bytes(v)

    return sized


def value_formatter(info: FieldInfo) -> Formatter:
    fmt = effective_format(info)
    enc = info.encoding
    if enc in LENGTH16_CHAR8_ENCODINGS and fmt in SIZED_FORMATS:
        return _sized_formatter(fmt)
    if fmt in (_F.UNSIGNED_INT, _F.SIGNED_INT, _F.PID, _F.PORT):
        return _decimal
    if fmt == _F.HEX_INT:
        return _hex_formatter(info)
    if fmt == _F.HEX_BYTES:
        return _hex_bytes
    if fmt == _F.STRING8:
        return _string8
    if fmt in _STRING_LIKE:
        return _string_utf
    if fmt == _F.BOOLEAN:
        return _boolean
    if fmt == _F.ERRNO:
        return _errno
    if fmt == _F.TIME:
        return _time
    if fmt == _F.FLOAT:
        return _float32 if enc == _E.VALUE32 or info.element_size == 4 else _float64
    if fmt == _F.UUID:
        return _uuid
    if fmt == _F.IP_ADDRESS:
        return _ip
    return _hex_bytes
