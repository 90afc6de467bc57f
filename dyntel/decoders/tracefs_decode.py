"""Decoding raw tracefs entries (the PERF_SAMPLE_RAW bytes, starting at common_type) by their format's fields.

Two decoders that must agree: `decode_slowly`, the reference's rules one field at a time (the slow path for entries
too short for the fixed part, and the oracle), and `_compile_decoder`, generated Python that reads every fixed-size
field with one `struct.Struct.unpack_from` (see dyntel.decoders.tracefs_format for what the values look like).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

# _is_blob and _reads_signed: how a field is read is decided once, beside its declaration.
from dyntel.decoders.tracefs_decl import FieldShow, FormatField, _is_blob, _reads_signed
from dyntel.event import ArrayKind

Buffer = bytes | bytearray | memoryview
RawDecoder = Callable[[Buffer], tuple[Any, ...]]


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
