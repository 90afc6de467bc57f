"""The native fast path for perf.data: tracefs and EventHeader samples written as JSON straight from the mapped file.

`dyntel._speedups.write_tracefs_samples` (C, optional) walks a data section, in file order or sorting each round's
samples by time as perf-decode does, and writes each sample in the reference's JSON without building an Event. This
module prepares what it needs from a `PerfDataSource` whose metadata has been read (by calling `events()`): the data
section, one "plan" per attr (the JSON text before the fields, and per field its name, how it is shown and where its
bytes are), the clock offset.

It covers the common case only and declines (returns None, having written nothing) for anything else, so that the
Python decoder, which counts and reports problems, handles the file: no native module, pipe mode, big-endian files,
attrs whose sample layouts the C code cannot tell apart, samples of an attr without a tracepoint format, a metadata
problem, field offsets or a clock offset beyond the C code's integer types, and (found by the C code itself) any
malformed record, unknown sample id, field that does not fit its sample, or EventHeader sample that is not
EventHeader after all or whose payload does not match its metadata.

EventHeader samples (dyntel/_eventheader.c, compiled into the same extension) are checked and written by the C code;
their event types come from `eventheader_native.program`, asked once per distinct metadata, with the field tags shown
as `source.field_tags` says.
"""

from __future__ import annotations

from typing import Any

from dyntel.decoders.eventheader_name import parse_tracepoint_name
from dyntel.decoders.eventheader_native import program
from dyntel.event import ArrayKind
from dyntel.event_json import json_string
from dyntel.sources.perf import abi
from dyntel.sources.perf.data import PerfDataSource

# sample_type bits the C code reads (it declines files with any other)
_SUPPORTED = (abi.SAMPLE_IP | abi.SAMPLE_TID | abi.SAMPLE_TIME | abi.SAMPLE_ADDR | abi.SAMPLE_CALLCHAIN
              | abi.SAMPLE_ID | abi.SAMPLE_CPU | abi.SAMPLE_PERIOD | abi.SAMPLE_STREAM_ID | abi.SAMPLE_RAW
              | abi.SAMPLE_IDENTIFIER)

# The C code's field kinds (0 hex bytes, 1 hex, 2 unsigned, 3 signed, 4 string) by tracefs FieldShow name
_KIND = {"BLOB": 0, "HEX": 1, "UNSIGNED": 2, "SIGNED": 3, "STRING": 4}
_ARRAY = {"data_loc": 2, "rel_loc": 3}
_U32 = 0xFFFFFFFF
_I64 = 1 << 63


def _plan(source: PerfDataSource, fmt: Any, provider: str, name: str) -> tuple[bytes, tuple[Any, ...]] | None:
    fields = []
    for f in fmt.user_fields:
        kind = _KIND.get(f.show.name)
        if kind is None or f.element_size not in (1, 2, 4, 8) or not 0 <= f.offset <= _U32 or not 0 <= f.size <= _U32:
            return None
        array = _ARRAY[f.dynamic] if f.dynamic else 1 if f.array == ArrayKind.FIXED else 0
        member = ("," + json_string(f.name) + ":").encode("utf-8", "surrogateescape")
        fields.append((member, kind, f.offset, f.size, f.element_size, array))
    prefix = ('{"n":' + json_string(provider + ":" + name)).encode("utf-8", "surrogateescape")
    return prefix, tuple(fields)


def _eventheader_plan(fmt: Any) -> tuple[bytes, int, int, int] | None:
    """(JSON text up to the event name, level, keyword, eventheader offset) for an EventHeader tracepoint; None when
    its name is not an EventHeader name (the Python decoder shows its samples as tracefs fields)."""
    try:
        tp = parse_tracepoint_name(fmt.name)
    except ValueError:
        return None
    prefix = ('{"n":' + json_string(tp.provider + ":")[:-1]).encode("utf-8", "surrogateescape")
    return prefix, tp.level, tp.keyword, fmt.eventheader_offset


def write_samples(source: PerfDataSource, fd: int, *, first_sep: bytes = b"", sep: bytes = b"",
                  suffix: bytes = b"\n") -> int | None:
    """Write the samples of `source` to the file descriptor `fd`: each as `sep` (`first_sep` for the first), its
    JSON, `suffix`. The number written, or None when this recording needs the Python decoder (nothing written).

    Call `source.events()` first (it reads the metadata); close that iterator when this returns a number, and
    iterate it when this returns None. Flush anything buffered for `fd` before calling.
    """
    try:
        from dyntel import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    hdr = source.header
    if (hdr is None or hdr.pipe or source.big_endian or source.buffer is None
            or source.data_range is None or source.stats.bad or not source.attrs):
        return None
    attrs = source.attrs
    tags = source.field_tags
    traced = [a for a in attrs if a.type == abi.TYPE_TRACEPOINT and a.sample_type & abi.SAMPLE_RAW]
    if not traced:
        return None
    sample_type = traced[0].sample_type
    if sample_type & ~_SUPPORTED or any(a.sample_type != sample_type for a in traced):
        return None
    if any(a.sample_type != sample_type for a in attrs) and not all(
            a.sample_type & abi.SAMPLE_IDENTIFIER for a in attrs):
        # Without PERF_SAMPLE_IDENTIFIER the sample id's place depends on the layout, which the C code takes as
        # one for the whole file: it could read another attr's id from the wrong place.
        return None
    if not sample_type & (abi.SAMPLE_ID | abi.SAMPLE_IDENTIFIER) and len(attrs) != 1:
        return None
    plans: list[tuple[Any, ...] | None] = []
    plan_ids: dict[int, int] = {}
    for attr in attrs:
        plan: tuple[Any, ...] | None = None
        if attr.sample_type == sample_type and attr in traced:
            fmt = source.formats.get(attr.config & 0xFFFFFFFF)
            if fmt is not None and fmt.kind == "tracefs":
                provider, name = source.event_name(attr)
                plan = _plan(source, fmt, provider, name)
            elif fmt is not None and fmt.kind == "eventheader":
                plan = _eventheader_plan(fmt)
        for ident in attr.ids:
            plan_ids[ident] = len(plans)
        plans.append(plan)
    clock = source.features.clock
    if clock is not None and not -_I64 <= clock.offset_ns < _I64:
        return None  # a clock (wall time past 2262, say) whose offset the C code cannot hold: Python's integers can
    start, end = source.data_range
    written: int | None = _speedups.write_tracefs_samples(
        buffer=source.buffer, start=start, end=end, sample_type=sample_type, plan_ids=plan_ids, plans=plans,
        time_is_wall=clock is not None, clock_offset=clock.offset_ns if clock is not None else 0,
        first_sep=first_sep, sep=sep, suffix=suffix, fd=fd, sort=source.order == "round",
        eh_compile=lambda meta, big: program(meta, big, tags))
    if written is not None:
        source.stats.events += written
    return written
