"""PERF_RECORD_SAMPLE layouts, compiled: one Python function per sample layout and event recipe.

Which fields a sample holds, and so where each one starts, depends on its attr's sample_type (and for some fields
on read_format, branch_sample_type and the register masks). Rather than test those bits for every sample, the
layout is turned into Python source once: runs of fixed-size fields, together with the length word of the variable
part that follows them, become one precompiled `struct.Struct` read at a constant offset from the record start;
variable parts (READ with PERF_FORMAT_GROUP, CALLCHAIN, RAW, BRANCH_STACK, REGS_*, STACK_USER, AUX) become inline
length checks; and the function ends by building the `Event` directly. Reading one sample is then one call with no
per-field dispatch.

The generated source depends only on the layout and on the shape of the recipe, never on its values (names,
schema, decoder, clock offset): those are bound per attr through a closure, so a recording with many attrs of one
layout compiles the layout once, and so does every later recording with it (the factories are cached here).

Every length is checked against the record's end before it is used; a sample that does not fit raises
`SampleError` with the offset (within the record) of the field that overran.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dyntel.event import Event, LazyEvent, Schema
from dyntel.sources.perf import abi
from dyntel.sources.perf.header import Attr

SampleParser = Callable[[Any, int, int], Any]  # (buffer, record start, record end) -> Event, None, or dict (full)
EventBuilder = Callable[
    [bytes | None, int | None, int | None, int | None, int | None, tuple[int, ...] | None], Event | None
]


class SampleError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset  # from the start of the record


@dataclass(slots=True, eq=False)
class Recipe:
    """How a sample's parts become an Event.

    With `build` unset, the compiled parser builds `Event(provider, name, schema, decode(raw), source, ...)` inline
    (no decode: no values). With `build` set, it calls `build(raw, time, cpu, pid, tid, callchain)` instead
    (EventHeader events), which may return None to drop the sample. `time` is already moved by `time_offset`.
    """

    provider: str
    name: str
    schema: Schema
    source: str
    decode: Callable[[Any], Sequence[Any]] | None = None
    build: EventBuilder | None = None
    time_offset: int = 0  # added to the sample's time (nanoseconds from the clock's zero to the Unix epoch)
    time_is_wall: bool = False
    # Make LazyEvents: `decode(raw)` runs when something first reads the event's values (see dyntel.event).
    lazy: bool = False
    # A payload of fixed-size scalars only, which `decode` reads with one unpack: (its offset in the raw entry, the
    # struct). The parser then unpacks it from the sample itself (no raw copy, no decoder call) when the entry
    # holds it whole, and calls `decode` on the entry otherwise (its own answer for a short one).
    fixed: tuple[int, struct.Struct] | None = None


class _ChainStructs(dict[int, struct.Struct]):
    """Struct per call-chain length, made on first use (chains come in a few dozen lengths)."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self.order = order

    def __missing__(self, n: int) -> struct.Struct:
        s = self[n] = struct.Struct(f"{self.order}{n}Q")
        return s


_CHAIN_STRUCTS = {"<": _ChainStructs("<"), ">": _ChainStructs(">")}

# Fields that come after RAW in a sample; without any of them nothing needs the position after RAW.
_AFTER_RAW = (abi.SAMPLE_BRANCH_STACK | abi.SAMPLE_REGS_USER | abi.SAMPLE_STACK_USER | abi.SAMPLE_WEIGHT
              | abi.SAMPLE_DATA_SRC | abi.SAMPLE_TRANSACTION | abi.SAMPLE_REGS_INTR | abi.SAMPLE_PHYS_ADDR
              | abi.SAMPLE_AUX | abi.SAMPLE_CGROUP | abi.SAMPLE_DATA_PAGE_SIZE | abi.SAMPLE_CODE_PAGE_SIZE
              | abi.SAMPLE_WEIGHT_STRUCT)

# Fields the fast parser keeps for an Event; the full parser keeps everything.
_KEPT = frozenset({"pid", "tid", "time", "cpu"})


class _Gen:
    """Writes the parser body. The read position is `base + k`: `base` is "pos" until the first variable-length
    part, then "p", and `k` is a constant, so fixed fields need no position arithmetic at run time."""

    def __init__(self, order: str, full: bool) -> None:
        self.order = order
        self.full = full
        self.lines: list[str] = []
        self.env: dict[str, Any] = {"SampleError": SampleError, "_chains": _CHAIN_STRUCTS[order]}
        self.base = "pos"
        self.k = 8
        self.checked = 8  # bytes from `base` already known to be inside the record
        self.run_fmt = ""
        self.run_codes: list[str] = []  # one struct code per value of the run
        self.run_names: list[str] = []
        self.run_what: list[str] = []
        self.run_start = 8
        self.n_structs = 0
        self.n_unused = 0
        self.defined: list[str] = []  # names the full parser returns, in sample order

    def line(self, text: str, indent: int = 0) -> None:
        self.lines.append("    " * (indent + 1) + text)

    def at(self, extra: int = 0) -> str:
        k = self.k + extra
        return f"{self.base} + {k}" if k else self.base

    def rel(self) -> str:
        """The current position as an offset within the record (for error messages)."""
        return f"{self.at()} - pos" if self.base != "pos" else str(self.k)

    def fixed(self, fmt: str, names: Sequence[str | None], what: str) -> None:
        """Fixed-size fields; a None name is a value the parser does not keep."""
        if not self.run_fmt:
            self.run_start = self.k
        self.run_fmt += fmt
        self.run_codes.extend(c for c in fmt if c.isalpha())
        for n in names:
            if n is None or (not self.full and n not in _KEPT and not n.startswith("_")):
                self.n_unused += 1
                n = f"_u{self.n_unused}"
            elif self.full and not n.startswith("_"):
                self.defined.append(n)
            self.run_names.append(n)
        self.run_what.append(what)
        self.k += struct.calcsize("<" + fmt)

    def flush(self) -> None:
        if not self.run_fmt:
            return
        size = struct.calcsize("<" + self.run_fmt)
        what = "/".join(self.run_what)
        start = self.run_start
        where = f"{self.base} + {start}" if start else self.base
        rel = str(start) if self.base == "pos" else f"{where} - pos"
        self.line(f"if {where} + {size} > end: raise SampleError('sample too short for {what}', {rel})")
        kept = [n for n in self.run_names if not n.startswith("_u")]
        if kept:
            # Values nobody keeps are pad bytes in the Struct: no int objects made for them.
            fmt = "".join(f"{struct.calcsize('<' + c)}x" if n.startswith("_u") else c
                          for c, n in zip(self.run_codes, self.run_names, strict=True))
            s = f"_s{self.n_structs}"
            self.n_structs += 1
            self.env[s] = struct.Struct(self.order + fmt)
            self.line(f"{', '.join(kept)}, = {s}.unpack_from(buf, {where})")
        self.run_fmt = ""
        self.run_codes = []
        self.run_names = []
        self.run_what = []

    def length_word(self, fmt: str, var: str, what: str) -> None:
        """The count or size that starts a variable part, read along with the fixed run before it."""
        self.fixed(fmt, [var], what)
        self.flush()

    def advance(self, nbytes_expr: str) -> None:
        """Move past a variable number of bytes (already checked to be inside the record)."""
        self.line(f"p = {self.at()} + {nbytes_expr}")
        self.base = "p"
        self.k = 0

    def check_words(self, count: str, what: str) -> None:
        self.line(f"if {count} > (end - ({self.at()})) >> 3: "
                  f"raise SampleError('{what} runs past the end of the sample', {self.rel()})")

    def check_bytes(self, count: str, what: str, indent: int = 0) -> None:
        self.line(f"if {count} > end - ({self.at()}): "
                  f"raise SampleError('{what} runs past the end of the sample', {self.rel()})", indent)

    def keep(self, name: str, expr: str, indent: int = 0) -> None:
        if self.full:
            self.line(f"{name} = {expr}", indent)
            self.defined.append(name)


def _read_format_words(read_format: int) -> tuple[int, int]:
    """(words before the values, words per value) of a read_format with PERF_FORMAT_GROUP."""
    head = 1 + bool(read_format & abi.FORMAT_TOTAL_TIME_ENABLED) + bool(read_format & abi.FORMAT_TOTAL_TIME_RUNNING)
    per = 1 + bool(read_format & abi.FORMAT_ID) + bool(read_format & abi.FORMAT_LOST)
    return head, per


def _layout_key(attr: Attr) -> tuple[int, ...]:
    """What of an attr decides its sample layout."""
    st = attr.sample_type
    return (
        st,
        attr.read_format if st & abi.SAMPLE_READ else 0,
        attr.branch_sample_type & abi.BRANCH_HW_INDEX if st & abi.SAMPLE_BRANCH_STACK else 0,
        attr.sample_regs_user.bit_count() if st & abi.SAMPLE_REGS_USER else 0,
        attr.sample_regs_intr.bit_count() if st & abi.SAMPLE_REGS_INTR else 0,
    )


def sample_source(attr: Attr, big_endian: bool, full: bool,
                  fixed: bool = False) -> tuple[list[str], dict[str, Any], list[str]]:
    """The parser body's lines, the globals it needs, and (full) the names of the fields it reads. `fixed`: the
    payload's values are unpacked from the sample into `values` (see Recipe.fixed), and no `raw` is made."""
    st = attr.sample_type
    g = _Gen(">" if big_endian else "<", full)
    if st & abi.SAMPLE_IDENTIFIER:
        g.fixed("Q", ["identifier"], "IDENTIFIER")
    if st & abi.SAMPLE_IP:
        g.fixed("Q", ["ip"], "IP")
    if st & abi.SAMPLE_TID:
        g.fixed("II", ["pid", "tid"], "TID")
    if st & abi.SAMPLE_TIME:
        g.fixed("Q", ["time"], "TIME")
    if st & abi.SAMPLE_ADDR:
        g.fixed("Q", ["addr"], "ADDR")
    if st & abi.SAMPLE_ID:
        g.fixed("Q", ["id"], "ID")
    if st & abi.SAMPLE_STREAM_ID:
        g.fixed("Q", ["stream_id"], "STREAM_ID")
    if st & abi.SAMPLE_CPU:
        g.fixed("II", ["cpu", None], "CPU")
    if st & abi.SAMPLE_PERIOD:
        g.fixed("Q", ["period"], "PERIOD")
    if st & abi.SAMPLE_READ:
        rf = attr.read_format
        if rf & abi.FORMAT_GROUP:
            head, per = _read_format_words(rf)
            g.length_word("Q", "_rn", "READ")
            words = f"{head - 1} + _rn * {per}"
            g.check_words(f"({words})", "READ group")
            g.keep("read", f"bytes(buf[{g.at(-8)}:{g.at()} + (({words}) << 3)])")
            g.advance(f"(({words}) << 3)")
        else:
            n = 1 + sum(bool(rf & b) for b in (abi.FORMAT_TOTAL_TIME_ENABLED, abi.FORMAT_TOTAL_TIME_RUNNING,
                                                abi.FORMAT_ID, abi.FORMAT_LOST))
            names = [f"_read{i}" if full else None for i in range(n)]
            g.fixed("Q" * n, names, "READ")
            if full:
                g.flush()
                g.keep("read", "(" + "".join(f"_read{i}, " for i in range(n)) + ")")
    if st & abi.SAMPLE_CALLCHAIN:
        g.length_word("Q", "_nr", "CALLCHAIN")
        g.check_words("_nr", "CALLCHAIN")
        g.line(f"chain = _chains[_nr].unpack_from(buf, {g.at()}) if _nr else ()")
        if full:
            g.defined.append("chain")
        if full or st & (_AFTER_RAW | abi.SAMPLE_RAW):
            g.advance("(_nr << 3)")
    if st & abi.SAMPLE_RAW:
        g.length_word("I", "_rs", "RAW")
        g.check_bytes("_rs", "RAW")
        if fixed and not full:
            g.line(f"if _rs >= _fneed: values = _fixed(buf, {g.at()} + _fstart)")
            g.line(f"else: values = _decode(buf[{g.at()}:{g.at()} + _rs])")
        else:
            g.line(f"raw = buf[{g.at()}:{g.at()} + _rs]")
        if full:
            g.defined.append("raw")
        if full or st & _AFTER_RAW:
            g.advance("_rs")
    if st & abi.SAMPLE_BRANCH_STACK:
        hw = int(bool(attr.branch_sample_type & abi.BRANCH_HW_INDEX))
        g.length_word("Q", "_bn", "BRANCH_STACK")
        g.check_words(f"({hw} + _bn * 3)", "BRANCH_STACK")
        g.keep("branch_stack", f"bytes(buf[{g.at()}:{g.at()} + (({hw} + _bn * 3) << 3)])")
        g.advance(f"(({hw} + _bn * 3) << 3)")
    tail = ((abi.SAMPLE_REGS_USER, attr.sample_regs_user, "REGS_USER"),
            (abi.SAMPLE_STACK_USER, 0, "STACK_USER"),
            (abi.SAMPLE_WEIGHT_STRUCT | abi.SAMPLE_WEIGHT, 0, "WEIGHT"),
            (abi.SAMPLE_DATA_SRC, 0, "DATA_SRC"),
            (abi.SAMPLE_TRANSACTION, 0, "TRANSACTION"),
            (abi.SAMPLE_REGS_INTR, attr.sample_regs_intr, "REGS_INTR"),
            (abi.SAMPLE_PHYS_ADDR, 0, "PHYS_ADDR"),
            (abi.SAMPLE_CGROUP, 0, "CGROUP"),
            (abi.SAMPLE_DATA_PAGE_SIZE, 0, "DATA_PAGE_SIZE"),
            (abi.SAMPLE_CODE_PAGE_SIZE, 0, "CODE_PAGE_SIZE"),
            (abi.SAMPLE_AUX, 0, "AUX"))
    for bit, mask, what in tail:
        if not st & bit:
            continue
        key = what.lower()
        if what in ("REGS_USER", "REGS_INTR"):
            # The registers are there only when the abi word is nonzero (no user context: abi 0, no registers).
            nbytes = mask.bit_count() * 8
            var = f"{key}_abi" if full else f"_{key}_abi"
            g.length_word("Q", var, what)
            if full:
                g.defined.append(var)
            g.line(f"_gn = {nbytes} if {var} else 0")
            g.check_bytes("_gn", what)
            g.keep(key, f"bytes(buf[{g.at()}:{g.at()} + _gn])")
            g.advance("_gn")
        elif what == "STACK_USER":
            g.length_word("Q", "_ss", what)
            g.check_bytes("_ss", what)
            g.keep(key, f"bytes(buf[{g.at()}:{g.at()} + _ss])")
            g.advance("_ss")
            # dyn_size follows only a non-empty dump
            g.keep("stack_user_dyn_size", "None")
            g.line("if _ss:")
            g.line(f"if p + 8 > end: raise SampleError('sample too short for STACK_USER dyn_size', {g.rel()})", 1)
            if full:
                g.env["_u64"] = struct.Struct(g.order + "Q").unpack_from
                g.keep("stack_user_dyn_size", "_u64(buf, p)[0]", 1)
            g.line("p += 8", 1)
        elif what == "AUX":
            g.length_word("Q", "_as", what)
            g.check_bytes("_as", what)
            g.keep(key, f"bytes(buf[{g.at()}:{g.at()} + _as])")
            g.advance("_as")
        else:
            g.fixed("Q", [key], what)
    g.flush()
    if full:
        g.line(f"p = {g.at()}")
    return g.lines, g.env, g.defined


def compile_full_parser(attr: Attr, big_endian: bool) -> SampleParser:
    """A parser that returns every field of the sample as a dict (for tests and inspection; not the fast path).

    The dict's "size" is how many bytes the fields took, header included, which should equal the record's size.
    """
    lines, env, names = sample_source(attr, big_endian, full=True)
    lines.append("    return {" + "".join(f"{n!r}: {n}, " for n in names) + "'size': p - pos}")
    src = "def parse(buf, pos, end):\n" + "\n".join(lines) + "\n"
    exec(compile(src, "<perf sample parser (full)>", "exec"), env)
    parser: SampleParser = env["parse"]
    return parser


_FACTORIES: dict[tuple[Any, ...], Callable[..., SampleParser]] = {}
_MAX_FACTORIES = 256  # distinct layouts seen; a corrupted file can make up any number of them


def compile_sample_parser(attr: Attr, big_endian: bool, recipe: Recipe) -> SampleParser:
    """The fast parser: (buffer, record start, record end) -> Event, or None when the recipe drops the sample."""
    shape = (_layout_key(attr), big_endian, recipe.build is not None, recipe.decode is not None,
             recipe.time_offset != 0, _payload_kind(attr, recipe))
    factory = _FACTORIES.get(shape)
    if factory is None:
        if len(_FACTORIES) >= _MAX_FACTORIES:
            _FACTORIES.clear()
        factory = _FACTORIES[shape] = _make_factory(attr, big_endian, recipe)
    fixed = recipe.fixed
    return factory(recipe.provider, recipe.name, recipe.schema, recipe.source, recipe.decode, recipe.build,
                   recipe.time_offset, recipe.time_is_wall, fixed[1].unpack_from if fixed else None,
                   fixed[0] if fixed else 0, fixed[0] + fixed[1].size if fixed else 0)


def _payload_kind(attr: Attr, recipe: Recipe) -> str:
    """How the parser gets the payload's values: "build" (the recipe's builder), "none" (no decode, or no RAW),
    "lazy" (a LazyEvent decodes on first read), "fixed" (one unpack from the sample), else "decode"."""
    if recipe.build is not None:
        return "build"
    if recipe.decode is None or not attr.sample_type & abi.SAMPLE_RAW:
        return "none"
    if recipe.lazy:
        return "lazy"
    return "fixed" if recipe.fixed is not None else "decode"


def _make_factory(attr: Attr, big_endian: bool, recipe: Recipe) -> Callable[..., SampleParser]:
    kind = _payload_kind(attr, recipe)
    lines, env, _ = sample_source(attr, big_endian, full=False, fixed=kind == "fixed")
    st = attr.sample_type
    shape_lazy = kind == "lazy"
    env["LazyEvent"] = LazyEvent
    time = "time" if st & abi.SAMPLE_TIME else "None"
    if time != "None" and recipe.time_offset:
        time = "time + _toff"
    cpu = "cpu" if st & abi.SAMPLE_CPU else "None"
    pid, tid = ("pid", "tid") if st & abi.SAMPLE_TID else ("None", "None")
    chain = "chain" if st & abi.SAMPLE_CALLCHAIN else "None"
    raw = "raw" if st & abi.SAMPLE_RAW else "None"
    env["Event"] = Event
    if recipe.build is not None:
        lines.append(f"    return _build({raw}, {time}, {cpu}, {pid}, {tid}, {chain})")
    else:
        values = "()" if recipe.decode is None else "values" if kind == "fixed" else f"_decode({raw})"
        # The Event's slots are stored here, one by one, on an object made by object.__new__: calling the class
        # (its dataclass __init__, 19 arguments) cost about twice as much per event (measured: 580 ns against 320
        # ns on this project's 2-CPU VM). Every slot is set, as __init__ would set it (_event_slots).
        given = {"provider": "_provider", "name": "_name", "schema": "_schema", "values": values,
                 "source": "_source", "time": time, "time_is_wall": "_wall", "cpu": cpu, "pid": pid, "tid": tid,
                 "callchain": chain}
        if shape_lazy:
            # The values slot stays unset until LazyEvent.values decodes (it reads _decode first).
            lines.append("    e = _new(LazyEvent)")
            del given["values"]
            given["_decode"], given["_raw"] = "_decode", raw
        else:
            lines.append("    e = _new(Event)")
        lines += [f"    e.{slot} = {value}" for slot, value in _event_slots(given)]
        lines.append("    return e")
        env["_new"] = object.__new__
    body = "\n".join("    " + line for line in lines)
    src = ("def factory(_provider, _name, _schema, _source, _decode, _build, _toff, _wall, _fixed, _fstart, _fneed):\n"
           "    def parse(buf, pos, end):\n" + body + "\n    return parse\n")
    exec(compile(src, f"<perf sample parser, sample_type {st:#x}>", "exec"), env)
    factory: Callable[..., SampleParser] = env["factory"]
    return factory


def _event_slots(given: dict[str, str]) -> list[tuple[str, str]]:
    """(slot, expression) for every field of Event: those of `given`, the rest their default (which must be None:
    a field added to Event with another default has to be added here, and this says so rather than leave the
    slot unset). A LazyEvent's `values` is left out (given has no "values"), its _decode and _raw put first."""
    out: list[tuple[str, str]] = [(name, given[name]) for name in ("_decode", "_raw") if name in given]
    for f in dataclasses.fields(Event):
        if f.name == "values" and "values" not in given:
            continue
        if f.name in given:
            out.append((f.name, given[f.name]))
        elif f.default is None:
            out.append((f.name, "None"))
        else:
            raise TypeError(f"Event.{f.name} has a default other than None: give its value in _make_factory")
    return out


def eventheader_builder(fmt: Any, tracefs: Recipe, decoder: Any, want: Callable[[str, str, int | None], bool] | None,
                        skip: Callable[[str], None],
                        not_eventheader: Callable[[str], None] | None = None) -> Callable[..., Event | None]:
    """The sample-to-Event step of a user_events tracepoint written with EventHeader, shared by the recording and
    the live reader: decode by the header; samples that are not EventHeader after all show as the tracepoint's
    tracefs fields, under its own name, as in the reference. A payload that contradicts its own metadata raises
    DecodeError, which the caller counts as a problem. `want` drops events no rule can match (counted "filtered")
    before their payload is decoded. `not_eventheader` is told the reason of each sample shown as plain fields."""
    from dyntel.decoders.eventheader import NotEventHeader
    from dyntel.event import SOURCE_USER_EVENTS

    eh_decode = decoder.decode
    tp_name: str = fmt.name
    eh_offset: int = fmt.eventheader_offset
    provider, name, schema, source = tracefs.provider, tracefs.name, tracefs.schema, tracefs.source
    wall = tracefs.time_is_wall
    tracefs_decode = tracefs.decode
    assert tracefs_decode is not None
    tracefs_wanted = want is None or bool(want(provider, name, None))

    def build(raw: bytes | None, time: int | None, cpu: int | None, pid: int | None, tid: int | None,
              chain: tuple[int, ...] | None) -> Event | None:
        if raw is not None:
            try:
                event: Event | None = (eh_decode(tp_name, raw, eh_offset) if want is None
                                       else eh_decode(tp_name, raw, eh_offset, want=want))
            except NotEventHeader as e:
                if not_eventheader is not None:
                    not_eventheader(e.reason or "other")
            else:
                if event is None:
                    skip("filtered")
                    return None
                event.source = SOURCE_USER_EVENTS
                event.time = time
                event.time_is_wall = wall
                event.cpu = cpu
                event.pid = pid
                event.tid = tid
                event.callchain = chain
                return event
        if not tracefs_wanted:
            skip("filtered")
            return None
        return Event(provider, name, schema, tracefs_decode(raw), source, time, wall, cpu, pid, tid, callchain=chain)

    return build
