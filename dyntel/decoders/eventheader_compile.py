"""A tree of EventHeader field definitions to a generated Python function that decodes one event's payload.

The function is `decode(buf, pos, end) -> list` over `buf[pos:end]` (bytes), returning one value per top-level field
(see `dyntel.value_format` for each format's value type). It is generated once per event type, so an event
costs straight-line code: consecutive fixed-size fields (scalars, constant arrays of them, structs made of them) are
read by one precompiled `struct.Struct`, arrays of numbers by one bulk unpack, and only strings and variable arrays
read lengths. A malformed payload raises `PayloadError` with the absolute position of the field it could not read.

The reference decoder also refuses events it would need more than 4096 steps to walk (one step per value, array
element, and begin/end of each array and struct); the generated code counts the same steps, statically where the
layout is fixed and per element for variable arrays, and refuses the same events.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dyntel.decoders.eventheader_meta import ENCODING_STRUCT, FieldDef
from dyntel.event import ArrayKind, Encoding, Format
from dyntel.eventheader_text import (
    bom_or,
    code_point_text,
    latin1_text,
    utf8_text,
    utf16_text,
    utf32_text,
)
from dyntel.value_format import SIZED_FORMATS, Float32, resolve_format

MOVE_NEXT_LIMIT = 4096  # the reference's default EventEnumerator::MoveNextLimitDefault

PayloadDecoder = Callable[[bytes, int, int], list[Any]]

# Up to this many values in one fixed-size run are unpacked by a single Struct; bigger constant arrays get their own.
_MAX_RUN_SLOTS = 256

_F = Format
_VALUE_SIZE = {2: 1, 3: 2, 4: 4, 5: 8, 6: 16}
_UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SIGNED = {1: "b", 2: "h", 4: "i", 8: "q"}
_ZSTRING = {7: 1, 8: 2, 9: 4}  # zero-terminated encodings: code unit size
_LENGTH16 = {10: 1, 11: 2, 12: 4, 13: 1}  # length-prefixed encodings: code unit size
_STRING_LENGTH16_CHAR8 = 10
_BINARY_LENGTH16_CHAR8 = 13


class PayloadError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


@dataclass(slots=True, eq=False)
class CompiledPayload:
    decode: PayloadDecoder
    source: str  # the generated code, for tests and for a person reading a traceback


def _fmt(f: FieldDef) -> Format:
    return resolve_format(
        Encoding(f.encoding), Format(f.format) if f.format <= max(Format) else _F.DEFAULT
    )


def _items(f: FieldDef) -> int:
    """The reference's steps for a field, not counting elements of variable arrays."""
    per = _element_items(f)
    if f.array == ArrayKind.NONE:
        return per
    if f.array == ArrayKind.FIXED:
        return 2 + f.count * per
    return 2


def _element_items(f: FieldDef) -> int:
    if f.children is None:
        return 1
    return 2 + sum(_items(c) for c in f.children)


def _zstring_end(unit: int) -> Callable[[bytes, int, int], int]:
    nul = b"\0" * unit

    def find(buf: bytes, pos: int, end: int) -> int:
        i = pos
        while True:
            i = buf.find(nul, i, end)
            if i < 0 or (i - pos) % unit == 0:
                return i
            i += 1

    return find


def _swap16(x: int) -> int:
    return (x & 0xFF) << 8 | x >> 8


def _run_short(pos: int, end: int, layout: tuple[tuple[int, str], ...]) -> PayloadError:
    """The error for a fixed-size run cut short: names the first field that does not fit."""
    have = end - pos
    start = 0
    for stop, name in layout:
        if stop > have:
            return PayloadError(pos + start, f"field {name!r} needs {stop - start} bytes, {max(have - start, 0)} left")
        start = stop
    return PayloadError(pos, "payload cut short")


def _sized_reader(fmt: Format, big: bool, fallback: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A length-prefixed char8 field with a fixed-size format: read by its actual length, as the reference does."""
    order: Any = "big" if big else "little"
    sizes = SIZED_FORMATS[fmt]
    signed = fmt in (_F.SIGNED_INT, _F.ERRNO, _F.PID, _F.TIME)
    e = ">" if big else "<"
    f32 = struct.Struct(e + "f").unpack
    f64 = struct.Struct(e + "d").unpack

    def read(b: bytes) -> Any:
        n = len(b)
        if n not in sizes:
            return None if n == 0 else fallback(b)
        if fmt == _F.FLOAT:
            return Float32(f32(b)[0]) if n == 4 else f64(b)[0]
        if fmt in (_F.UUID, _F.IP_ADDRESS):
            return b
        if fmt == _F.PORT:
            return int.from_bytes(b, "big")
        return int.from_bytes(b, order, signed=signed)

    return read


@dataclass(slots=True, eq=False)
class _Fixed:
    """How a fixed-size field sits in a run: struct format, byte size, tuple slots, and its value expression."""

    fmt: str
    size: int
    slots: int
    build: Callable[[str, int], str]


class _Generator:
    def __init__(self, big: bool) -> None:
        self.big = big
        self.order = ">" if big else "<"
        self.lines: list[str] = []
        self.counter = 0
        self.dynamic_items = False
        u16 = struct.Struct(self.order + "H").unpack_from
        self.env: dict[str, Any] = {
            "_Err": PayloadError,
            "_run_short": _run_short,
            "_unpack": struct.unpack_from,
            "_u16": u16,
            "_zend2": _zstring_end(2),
            "_zend4": _zstring_end(4),
            "_ucs": code_point_text,
            "_swap16": _swap16,
            "_latin1": latin1_text,
        }

    def var(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any, prefix: str = "_c") -> str:
        name = self.var(prefix)
        self.env[name] = value
        return name

    def out(self, ind: int, text: str) -> None:
        self.lines.append("    " * ind + text)

    def fail(self, ind: int, message: str) -> None:
        self.out(ind, f"raise _Err(pos, {message!r})")

    # -- fixed-size fields --------------------------------------------------------------------------------------

    def leaf(self, f: FieldDef) -> tuple[str, int, str | None]:
        """(struct code, size, conversion) of one VALUEn element."""
        size = _VALUE_SIZE[f.encoding]
        fmt = _fmt(f)
        conv = None
        if size == 16 or fmt in (_F.HEX_BYTES, _F.IP_ADDRESS):
            code = f"{size}s"
        elif fmt == _F.FLOAT:
            code = "f" if size == 4 else "d"
        elif fmt in (_F.SIGNED_INT, _F.PID, _F.ERRNO, _F.TIME):
            code = _SIGNED[size]
        else:
            code = _UNSIGNED[size]
            if fmt == _F.STRING8:
                conv = "chr"
            elif fmt == _F.STRING_UTF:
                conv = "_ucs"
            elif fmt == _F.PORT and not self.big:
                conv = "_swap16"  # ports are in network order whatever the event's order
        return code, size, conv

    def fixed(self, f: FieldDef, as_element: bool = False) -> _Fixed | None:
        """The field's place in a fixed-size run, or None when its size depends on the payload."""
        if f.error is not None:
            return None
        array = ArrayKind.NONE if as_element else f.array
        reps = f.count if array == ArrayKind.FIXED else 1
        if array == ArrayKind.VARIABLE:
            return None
        if f.encoding in _VALUE_SIZE:
            code, size, conv = self.leaf(f)
            if array == ArrayKind.NONE:
                return _Fixed(code, size, 1, lambda t, i: f"{conv}({t}[{i}])" if conv else f"{t}[{i}]")
            if reps > _MAX_RUN_SLOTS:
                return None
            fmt = code * reps if code.endswith("s") else f"{reps}{code}"

            def build_array(t: str, i: int) -> str:
                if conv:
                    return f"[{conv}(x) for x in {t}[{i}:{i + reps}]]"
                return f"list({t}[{i}:{i + reps}])"

            return _Fixed(fmt, size * reps, reps, build_array)
        if f.encoding != ENCODING_STRUCT or f.children is None:
            return None
        parts = [self.fixed(c) for c in f.children]
        if any(p is None for p in parts):
            return None
        plan = [p for p in parts if p is not None]
        slots = sum(p.slots for p in plan)
        if slots * reps > _MAX_RUN_SLOTS:
            return None

        def build_struct(t: str, i: int) -> str:
            elements = []
            for _ in range(reps):
                exprs = []
                for p in plan:
                    exprs.append(p.build(t, i))
                    i += p.slots
                elements.append("[" + ", ".join(exprs) + "]")
            return elements[0] if array == ArrayKind.NONE else "[" + ", ".join(elements) + "]"

        fmt = "".join(p.fmt for p in plan) * reps
        return _Fixed(fmt, sum(p.size for p in plan) * reps, slots * reps, build_struct)

    def run(self, run: list[tuple[FieldDef, _Fixed]], ind: int) -> list[str]:
        fmt = "".join(x.fmt for _, x in run)
        unpacker = struct.Struct(self.order + fmt)
        size = unpacker.size
        if size:
            layout: list[tuple[int, str]] = []
            stop = 0
            for f, x in run:
                stop += x.size
                layout.append((stop, f.name))
            self.out(ind, f"if end - pos < {size}:")
            self.out(ind + 1, f"raise _run_short(pos, end, {self.const(tuple(layout), '_layout')})")
        t = self.var("t")
        if unpacker.size or fmt:
            self.out(ind, f"{t} = {self.const(unpacker.unpack_from, '_s')}(buf, pos)")
        if size:
            self.out(ind, f"pos += {size}")
        exprs = []
        i = 0
        for _, x in run:
            exprs.append(x.build(t, i))
            i += x.slots
        return exprs

    # -- everything else ----------------------------------------------------------------------------------------

    def fields(self, fields: list[FieldDef], ind: int) -> list[str]:
        exprs: list[str] = []
        pending: list[tuple[FieldDef, _Fixed]] = []
        for f in fields:
            plan = self.fixed(f)
            if plan is not None:
                pending.append((f, plan))
                continue
            if pending:
                exprs += self.run(pending, ind)
                pending = []
            exprs.append(self.field(f, ind))
        if pending:
            exprs += self.run(pending, ind)
        return exprs

    def field(self, f: FieldDef, ind: int) -> str:
        if f.error is not None:
            self.fail(ind, f.error)
            return "None"
        if f.array == ArrayKind.NONE:
            if f.children is not None:
                return "[" + ", ".join(self.fields(f.children, ind)) + "]"
            return self.variable_leaf(f, ind)
        if f.array == ArrayKind.FIXED:
            return self.array(f, str(f.count), ind)
        n = self.var("n")
        self.out(ind, "if end - pos < 2:")
        self.fail(ind + 1, f"field {f.name!r}: no room for its array length")
        self.out(ind, f"{n} = _u16(buf, pos)[0]")
        self.out(ind, "pos += 2")
        per = _element_items(f)
        self.out(ind, f"k += {n}" if per == 1 else f"k += {n} * {per}")
        self.dynamic_items = True
        return self.array(f, n, ind)

    def array(self, f: FieldDef, count: str, ind: int) -> str:
        v = self.var("a")
        element = None if f.encoding in _VALUE_SIZE else self.fixed(f, as_element=True)
        if f.encoding in _VALUE_SIZE or element is not None:
            if element is None:
                code, size, conv = self.leaf(f)
            else:
                size = element.size
            m = self.var("m")
            self.out(ind, f"{m} = {count} * {size}")
            self.out(ind, f"if end - pos < {m}:")
            self.fail(ind + 1, f"array {f.name!r} runs past the end of the event")
            if element is not None:
                unpacker = struct.Struct(self.order + element.fmt)
                it = self.const(unpacker.iter_unpack, "_it")
                if element.size == 0:
                    self.out(ind, f"{v} = [{element.build('t', 0)} for _ in range({count})]")
                else:
                    self.out(ind, f"{v} = [{element.build('t', 0)} for t in {it}(buf[pos:pos + {m}])]")
            elif code == "B" and conv is None:
                self.out(ind, f"{v} = list(buf[pos:pos + {m}])")
            elif code == "B" and conv == "chr":
                self.out(ind, f"{v} = list(_latin1(buf[pos:pos + {m}]))")
            elif code.endswith("s"):
                self.out(ind, f"{v} = [buf[p:p + {size}] for p in range(pos, pos + {m}, {size})]")
            else:
                spec = self.order + "%d" + code
                values = f"_unpack({spec!r} % {count}, buf, pos)"
                self.out(ind, f"{v} = [{conv}(x) for x in {values}]" if conv else f"{v} = list({values})")
            self.out(ind, f"pos += {m}")
            return v
        self.out(ind, f"{v} = []")
        self.out(ind, f"for _ in range({count}):")
        if f.children is not None:
            expr = "[" + ", ".join(self.fields(f.children, ind + 1)) + "]"
        else:
            expr = self.variable_leaf(f, ind + 1)
        self.out(ind + 1, f"{v}.append({expr})")
        return v

    def text_reader(self, f: FieldDef, unit: int) -> Callable[[bytes], Any] | None:
        """The function from a string field's bytes to its value; None to keep the bytes."""
        fmt = _fmt(f)
        big = self.big
        plain: Callable[[bytes], Any]
        if unit == 1:
            plain = utf8_text
        elif unit == 2:
            plain = (lambda b: utf16_text(b, True)) if big else (lambda b: utf16_text(b, False))
        else:
            plain = (lambda b: utf32_text(b, True)) if big else (lambda b: utf32_text(b, False))
        if fmt == _F.HEX_BYTES:
            return None
        if fmt == _F.STRING8:
            return latin1_text
        if fmt in (_F.STRING_UTF_BOM, _F.STRING_XML, _F.STRING_JSON):
            return bom_or(plain)
        if f.encoding in (_STRING_LENGTH16_CHAR8, _BINARY_LENGTH16_CHAR8) and fmt in SIZED_FORMATS:
            # Lengths the format does not fit fall back to the encoding's default: text, or hex bytes.
            fallback: Callable[[bytes], Any] = plain if f.encoding == _STRING_LENGTH16_CHAR8 else bytes
            return _sized_reader(fmt, big, fallback)
        return plain

    def variable_leaf(self, f: FieldDef, ind: int) -> str:
        """A scalar (or one array element) whose encoding is not a fixed-size value."""
        if f.encoding in _VALUE_SIZE:
            x = self.fixed(f, as_element=True)
            assert x is not None
            return self.run([(f, x)], ind)[0]
        v = self.var("v")
        if f.encoding in _ZSTRING:
            unit = _ZSTRING[f.encoding]
            i = self.var("i")
            if unit == 1:
                self.out(ind, f"{i} = buf.find(b'\\0', pos, end)")
            else:
                self.out(ind, f"{i} = _zend{unit}(buf, pos, end)")
            self.out(ind, f"if {i} < 0:")
            self.fail(ind + 1, f"string {f.name!r} has no terminating NUL before the end of the event")
            read = self.text_reader(f, unit)
            raw = f"buf[pos:{i}]"
            self.out(ind, f"{v} = {self.const(read, '_r')}({raw})" if read else f"{v} = {raw}")
            self.out(ind, f"pos = {i} + {unit}")
            return v
        if f.encoding in _LENGTH16:
            unit = _LENGTH16[f.encoding]
            m = self.var("m")
            self.out(ind, "if end - pos < 2:")
            self.fail(ind + 1, f"field {f.name!r}: no room for its length")
            shift = {1: "", 2: " << 1", 4: " << 2"}[unit]
            self.out(ind, f"{m} = _u16(buf, pos)[0]{shift}")
            self.out(ind, "pos += 2")
            self.out(ind, f"if end - pos < {m}:")
            self.fail(ind + 1, f"field {f.name!r} runs past the end of the event")
            read = self.text_reader(f, unit)
            raw = f"buf[pos:pos + {m}]"
            self.out(ind, f"{v} = {self.const(read, '_r')}({raw})" if read else f"{v} = {raw}")
            self.out(ind, f"pos += {m}")
            return v
        self.fail(ind, f"field {f.name!r} has invalid encoding {f.encoding}")
        return "None"


def compile_payload(fields: list[FieldDef], big_endian: bool, error: str | None = None) -> CompiledPayload:
    """The decoder of a payload laid out by `fields`; `error` (a problem in the metadata) fails every event."""
    gen = _Generator(big_endian)
    if error is not None:
        gen.fail(1, error)
        exprs: list[str] = []
    else:
        exprs = gen.fields(fields, 1)
        static = sum(_items(f) for f in fields)
        # The reference's last step (past the final item) counts too, hence the + 1.
        room = MOVE_NEXT_LIMIT - 1 - static
        if room < 0:
            gen.fail(1, f"more than {MOVE_NEXT_LIMIT - 1} values, arrays and structs to walk")
        elif gen.dynamic_items:
            gen.out(1, f"if k > {room}:")
            gen.fail(2, f"more than {MOVE_NEXT_LIMIT - 1} values, arrays and structs to walk")
    head = ["def decode(buf, pos, end):"]
    if gen.dynamic_items:
        head.append("    k = 0")
    source = "\n".join([*head, *gen.lines, "    return [" + ", ".join(exprs) + "]", ""])
    env = gen.env
    exec(compile(source, "<eventheader payload decoder>", "exec"), env)
    decode: PayloadDecoder = env["decode"]
    return CompiledPayload(decode, source)
