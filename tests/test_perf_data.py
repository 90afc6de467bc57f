"""The perf.data reader: against `perf script` on recordings made here, against the reference decoder's output for
the corpus recording, and against recordings built byte by byte in this file (every sample_type bit, both byte
orders, truncations and corruptions).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from support import corpus_file, deadline, load_reference_json, native_module

from dyntel.event import Event
from dyntel.event_json import format_event
from dyntel.sources.perf import abi
from dyntel.sources.perf import data as perf_data
from dyntel.sources.perf.header import Attr, parse_attr
from dyntel.sources.perf.sample import compile_full_parser
from dyntel.sources.perf.tracing_data import parse_tracing_data

# ---------------------------------------------------------------------------------------------------------------
# Building perf.data byte by byte

SYS_ENTER_ID = 21
SYS_ENTER_FORMAT = """name: sys_enter
ID: 21
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;

print fmt: "NR %ld (%lx, %lx, %lx, %lx, %lx, %lx)", REC->id, REC->args[0], REC->args[1], REC->args[2], \
REC->args[3], REC->args[4], REC->args[5]
"""


def order(be: bool) -> str:
    return ">" if be else "<"


def attr_bytes(be: bool, sample_type: int, *, type_: int = abi.TYPE_TRACEPOINT, config: int = SYS_ENTER_ID,
               read_format: int = 0, sample_id_all: bool = True, branch_sample_type: int = 0,
               regs_user: int = 0, regs_intr: int = 0, size: int = 128) -> bytes:
    o = order(be)
    b = bytearray(size)
    struct.pack_into(o + "IIQQQQ", b, 0, type_, size, config, 1, sample_type, read_format)
    if sample_id_all:
        b[42] |= 0x20 if be else 0x04  # bit-field order differs between the byte orders
    struct.pack_into(o + "QQ", b, 72, branch_sample_type, regs_user)
    struct.pack_into(o + "Q", b, 96, regs_intr)
    return bytes(b)


def record(be: bool, rtype: int, body: bytes) -> bytes:
    return struct.pack(order(be) + "IHH", rtype, 0, 8 + len(body)) + body


def sys_enter_raw(be: bool, nr: int, args: Sequence[int], pid: int = 1234) -> bytes:
    o = order(be)
    return struct.pack(o + "HBBiq6Q", SYS_ENTER_ID, 0, 0, pid, nr, *args)


def sample(be: bool, st: int, f: dict[str, Any], *, read_format: int = 0, branch_hw: bool = False,
           regs_user: int = 0, regs_intr: int = 0) -> bytes:
    """A PERF_RECORD_SAMPLE with the fields of `st`, values from `f` (defaults where absent)."""
    o = order(be)
    q = lambda v: struct.pack(o + "Q", v)  # noqa: E731
    out = b""
    if st & abi.SAMPLE_IDENTIFIER:
        out += q(f.get("id", 0))
    if st & abi.SAMPLE_IP:
        out += q(f.get("ip", 0xFFFFFFFF81000000))
    if st & abi.SAMPLE_TID:
        out += struct.pack(o + "II", f.get("pid", 0), f.get("tid", 0))
    if st & abi.SAMPLE_TIME:
        out += q(f.get("time", 0))
    if st & abi.SAMPLE_ADDR:
        out += q(f.get("addr", 0xDEAD))
    if st & abi.SAMPLE_ID:
        out += q(f.get("id", 0))
    if st & abi.SAMPLE_STREAM_ID:
        out += q(f.get("stream_id", 77))
    if st & abi.SAMPLE_CPU:
        out += struct.pack(o + "II", f.get("cpu", 0), 0)
    if st & abi.SAMPLE_PERIOD:
        out += q(1)
    if st & abi.SAMPLE_READ:
        per = 1 + bool(read_format & abi.FORMAT_ID) + bool(read_format & abi.FORMAT_LOST)
        head = bool(read_format & abi.FORMAT_TOTAL_TIME_ENABLED) + bool(read_format & abi.FORMAT_TOTAL_TIME_RUNNING)
        if read_format & abi.FORMAT_GROUP:
            n = 3
            out += q(n) + b"".join(q(100 + i) for i in range(head + n * per))
        else:
            out += b"".join(q(100 + i) for i in range(head + per))
    if st & abi.SAMPLE_CALLCHAIN:
        chain = f.get("chain", ())
        out += q(len(chain)) + b"".join(q(a) for a in chain)
    if st & abi.SAMPLE_RAW:
        raw = f.get("raw", b"")
        pad = (-(4 + len(raw))) % 8
        out += struct.pack(o + "I", len(raw) + pad) + raw + b"\0" * pad
    if st & abi.SAMPLE_BRANCH_STACK:
        out += q(2) + (q(9) if branch_hw else b"") + b"".join(q(i) for i in range(6))
    if st & abi.SAMPLE_REGS_USER:
        out += q(2) + b"".join(q(i) for i in range(regs_user.bit_count()))
    if st & abi.SAMPLE_STACK_USER:
        out += q(16) + b"s" * 16 + q(12)
    if st & (abi.SAMPLE_WEIGHT | abi.SAMPLE_WEIGHT_STRUCT):
        out += q(5)
    if st & abi.SAMPLE_DATA_SRC:
        out += q(6)
    if st & abi.SAMPLE_TRANSACTION:
        out += q(7)
    if st & abi.SAMPLE_REGS_INTR:
        out += q(2) + b"".join(q(i) for i in range(regs_intr.bit_count()))
    if st & abi.SAMPLE_PHYS_ADDR:
        out += q(8)
    if st & abi.SAMPLE_CGROUP:
        out += q(9)
    if st & abi.SAMPLE_DATA_PAGE_SIZE:
        out += q(4096)
    if st & abi.SAMPLE_CODE_PAGE_SIZE:
        out += q(4096)
    if st & abi.SAMPLE_AUX:
        out += q(8) + b"a" * 8
    return record(be, abi.RECORD_SAMPLE, out)


def finished_round(be: bool) -> bytes:
    return record(be, abi.RECORD_FINISHED_ROUND, b"")


def tracing_blob(be: bool, formats: dict[str, list[str]]) -> bytes:
    o = order(be)
    out = b"\x17\x08\x44tracing0.6\0" + bytes([int(be), 8]) + struct.pack(o + "I", 4096)
    page = b"field: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
    out += b"header_page\0" + struct.pack(o + "Q", len(page)) + page
    out += b"header_event\0" + struct.pack(o + "Q", 0)
    out += struct.pack(o + "I", 0)  # no ftrace formats
    out += struct.pack(o + "I", len(formats))
    for system, texts in formats.items():
        out += system.encode() + b"\0" + struct.pack(o + "I", len(texts))
        for text in texts:
            out += struct.pack(o + "Q", len(text)) + text.encode()
    out += struct.pack(o + "I", 0) + struct.pack(o + "I", 0)  # kallsyms, printk
    out += struct.pack(o + "Q", 5) + b"1 sh\n"  # saved_cmdlines
    return out


def event_desc_blob(be: bool, entries: Sequence[tuple[bytes, str, Sequence[int]]]) -> bytes:
    o = order(be)
    out = struct.pack(o + "II", len(entries), len(entries[0][0]))
    for attr, name, ids in entries:
        text = name.encode() + b"\0"
        text += b"\0" * ((-len(text)) % 64)
        out += attr + struct.pack(o + "II", len(ids), len(text)) + text
        out += b"".join(struct.pack(o + "Q", i) for i in ids)
    return out


def clock_data_blob(be: bool, wall_ns: int, clock_ns: int) -> bytes:
    return struct.pack(order(be) + "IIQQ", 1, 1, wall_ns, clock_ns)


def magic(be: bool) -> bytes:
    return abi.MAGIC_SWAPPED if be else abi.MAGIC


def perf_file(be: bool, attrs: Sequence[tuple[bytes, Sequence[int]]], data: bytes,
              features: dict[int, bytes]) -> bytes:
    """A file-mode perf.data: header, attrs with their ids, data section, feature sections."""
    o = order(be)
    attr_size = len(attrs[0][0]) + 16
    attrs_off = 104
    ids_off = attrs_off + attr_size * len(attrs)
    ids_blob = b""
    entries = b""
    for attr, ids in attrs:
        blob = b"".join(struct.pack(o + "Q", i) for i in ids)
        entries += attr + struct.pack(o + "QQ", ids_off + len(ids_blob), len(blob))
        ids_blob += blob
    data_off = ids_off + len(ids_blob)
    bits = sorted(features)
    table_off = data_off + len(data)
    blob_off = table_off + 16 * len(bits)
    table = b""
    blobs = b""
    for bit in bits:
        table += struct.pack(o + "QQ", blob_off + len(blobs), len(features[bit]))
        blobs += features[bit]
    flags = [0, 0, 0, 0]
    for bit in bits:
        flags[bit // 64] |= 1 << (bit % 64)
    head = magic(be) + struct.pack(o + "QQQQQQQQ4Q", 104, attr_size, attrs_off, attr_size * len(attrs), data_off,
                                   len(data), 0, 0, *flags)
    return head + entries + ids_blob + data + table + blobs


def perf_pipe(be: bool, attrs: Sequence[tuple[bytes, Sequence[int]]], data: bytes, features: dict[int, bytes],
              tracing: bytes | None = None, names: dict[int, str] | None = None) -> bytes:
    """A pipe-mode perf.data: the metadata as records ahead of the data."""
    o = order(be)
    out = magic(be) + struct.pack(o + "Q", 16)
    for attr, ids in attrs:
        out += record(be, abi.RECORD_HEADER_ATTR, attr + b"".join(struct.pack(o + "Q", i) for i in ids))
    for bit, blob in features.items():
        # perf does not pad these; a record's size need not be a multiple of 8
        out += record(be, abi.RECORD_HEADER_FEATURE, struct.pack(o + "Q", bit) + blob)
    if tracing is not None:
        padded = tracing + b"\0" * ((-len(tracing)) % 8)
        out += record(be, abi.RECORD_HEADER_TRACING_DATA, struct.pack(o + "I4x", len(padded))) + padded
    for ident, name in (names or {}).items():
        text = name.encode() + b"\0"
        text += b"\0" * ((-len(text)) % 8)
        out += record(be, abi.RECORD_EVENT_UPDATE, struct.pack(o + "QQ", 2, ident) + text)
    out += record(be, abi.RECORD_FINISHED_INIT, b"")
    return out + data


def decode(data: bytes, order_: str = "round") -> tuple[list[Event], perf_data.PerfDataSource]:
    """The built recordings put times out of order on purpose; most tests read them in perf-decode's order."""
    import io

    src = perf_data.open_source("test.data", io.BytesIO(data), order_)
    return list(src.events()), src


def summary(e: Event) -> tuple[Any, ...]:
    return (e.provider, e.name, e.time, e.time_is_wall, e.cpu, e.pid, e.tid, e.callchain, tuple(
        tuple(v) if isinstance(v, list) else v for v in e.values))


ST_TRACE = abi.SAMPLE_IP | abi.SAMPLE_TID | abi.SAMPLE_TIME | abi.SAMPLE_CPU | abi.SAMPLE_PERIOD | abi.SAMPLE_RAW
ARGS = (1, 2, 3, 0x7FFF0000, 5, 6)


def sys_enter_recording(be: bool, *, pipe: bool = False, st: int = ST_TRACE, n: int = 6, clock: bool = True,
                        **sample_kw: Any) -> bytes:
    """Samples of one tracepoint in two rounds, times deliberately out of order within each."""
    ids = [100, 101] if st & (abi.SAMPLE_ID | abi.SAMPLE_IDENTIFIER) else []
    attr = attr_bytes(be, st, **{k: v for k, v in sample_kw.items() if k in ("read_format", "regs_user",
                                                                            "regs_intr")})
    data = b""
    times = [50, 10, 30, 10, 20, 5][:n]
    for i, t in enumerate(times):
        chain = (abi.CONTEXT_KERNEL, 0xFFFFFFFF81000000 + i, abi.CONTEXT_USER, 0x401000 + i)
        f = {"time": 1_000_000 + t, "pid": 10 + i, "tid": 20 + i, "cpu": i % 2, "id": ids[i % 2] if ids else 0,
             "chain": chain, "raw": sys_enter_raw(be, i, ARGS)}
        data += sample(be, st, f, **{k: v for k, v in sample_kw.items() if k != "branch_sample_type"})
        if i == 2:
            data += finished_round(be)
    data += finished_round(be)
    features = {abi.HEADER_EVENT_DESC: event_desc_blob(be, [(attr, "raw_syscalls:sys_enter", ids)])}
    if clock:
        features[abi.HEADER_CLOCK_DATA] = clock_data_blob(be, 1_700_000_000_000_000_000, 500_000)
    tracing = tracing_blob(be, {"raw_syscalls": [SYS_ENTER_FORMAT]})
    if pipe:
        return perf_pipe(be, [(attr, ids)], data, features, tracing)
    features[abi.HEADER_TRACING_DATA] = tracing
    return perf_file(be, [(attr, ids)], data, features)


# ---------------------------------------------------------------------------------------------------------------
# Built recordings


@pytest.mark.parametrize("pipe", [False, True], ids=["file", "pipe"])
@pytest.mark.parametrize("be", [False, True], ids=["le", "be"])
def test_built_recording_decodes(be: bool, pipe: bool) -> None:
    events, src = decode(sys_enter_recording(be, pipe=pipe, st=ST_TRACE | abi.SAMPLE_CALLCHAIN))
    assert src.stats.bad == 0, src.stats.problems
    assert [e.time for e in events] == [1_700_000_000_000_000_000 - 500_000 + 1_000_000 + t
                                        for t in (10, 30, 50, 5, 10, 20)]
    assert all(e.time_is_wall for e in events)
    first = events[0]
    assert (first.provider, first.name, first.source) == ("raw_syscalls", "sys_enter", "tracepoint")
    assert (first.pid, first.tid, first.cpu) == (11, 21, 1)
    assert first.callchain == (abi.CONTEXT_KERNEL, 0xFFFFFFFF81000001, abi.CONTEXT_USER, 0x401001)
    assert first.fields == {"id": 1, "args": list(ARGS)}
    assert src.stats.events == 6
    assert src.stats.skipped["FINISHED_ROUND"] == 2
    if pipe:
        assert src.stats.skipped["HEADER_ATTR"] == 1 and src.stats.skipped["HEADER_TRACING_DATA"] == 1


def test_both_byte_orders_give_the_same_events() -> None:
    st = ST_TRACE | abi.SAMPLE_CALLCHAIN | abi.SAMPLE_IDENTIFIER
    le, _ = decode(sys_enter_recording(False, st=st))
    be, _ = decode(sys_enter_recording(True, st=st))
    assert [summary(e) for e in le] == [summary(e) for e in be]


def test_round_order_sorts_within_rounds_only_and_keeps_file_order_for_equal_times() -> None:
    data = sys_enter_recording(False, clock=False)
    by_round, _ = decode(data, "round")
    in_file, _ = decode(data, "file")
    assert [e.values[0] for e in in_file] == [0, 1, 2, 3, 4, 5]
    # round 1 holds samples 0..2 (times 50, 10, 30); round 2 samples 3..5 (10, 20, 5)
    assert [e.values[0] for e in by_round] == [1, 2, 0, 5, 3, 4]
    assert not any(e.time_is_wall for e in by_round)
    assert [e.time for e in by_round] == [1_000_010, 1_000_030, 1_000_050, 1_000_005, 1_000_010, 1_000_020]
    # equal times keep file order
    data = sys_enter_recording(False, n=4, clock=False).replace(
        struct.pack("<Q", 1_000_030), struct.pack("<Q", 1_000_010))
    events, _ = decode(data)
    assert [e.values[0] for e in events if e.time == 1_000_010] == [1, 2, 3]


ALL_BITS = [1 << b for b in range(25)]


def _full_layout_attr(st: int, read_format: int, be: bool) -> Attr:
    return parse_attr(attr_bytes(be, st, read_format=read_format, regs_user=0b1011, regs_intr=0b11,
                                 branch_sample_type=abi.BRANCH_HW_INDEX), 0, 128, be)


@pytest.mark.parametrize("be", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("read_format", [0, abi.FORMAT_ID | abi.FORMAT_LOST,
                                         abi.FORMAT_GROUP | abi.FORMAT_ID | abi.FORMAT_TOTAL_TIME_ENABLED
                                         | abi.FORMAT_TOTAL_TIME_RUNNING | abi.FORMAT_LOST])
@pytest.mark.parametrize("extra", [0, *ALL_BITS, sum(ALL_BITS)], ids=lambda b: f"{b:#x}")
def test_every_sample_type_bit_keeps_later_fields_in_place(extra: int, read_format: int, be: bool) -> None:
    """Whatever bits come before or after RAW, the time, cpu, pid/tid, chain and raw payload are where they were
    written, and the full parser's fields add up to the record's size."""
    st = abi.SAMPLE_TIME | abi.SAMPLE_TID | abi.SAMPLE_CPU | abi.SAMPLE_RAW | extra
    attr = attr_bytes(be, st, read_format=read_format, regs_user=0b1011, regs_intr=0b11,
                      branch_sample_type=abi.BRANCH_HW_INDEX)
    chain = (abi.CONTEXT_KERNEL, 0xFFFFFFFF81234567)
    f = {"time": 123456789, "pid": 7, "tid": 8, "cpu": 3, "id": 100, "chain": chain,
         "raw": sys_enter_raw(be, 42, ARGS)}
    rec = sample(be, st, f, read_format=read_format, branch_hw=True, regs_user=0b1011, regs_intr=0b11)
    data = perf_file(be, [(attr, [100])], rec + finished_round(be),
                     {abi.HEADER_TRACING_DATA: tracing_blob(be, {"raw_syscalls": [SYS_ENTER_FORMAT]})})
    events, src = decode(data)
    assert src.stats.bad == 0, src.stats.problems
    [e] = events
    assert (e.time, e.pid, e.tid, e.cpu) == (123456789, 7, 8, 3)
    assert e.callchain == (chain if st & abi.SAMPLE_CALLCHAIN else None)
    assert e.fields == {"id": 42, "args": list(ARGS)}

    full = compile_full_parser(_full_layout_attr(st, read_format, be), be)(rec, 0, len(rec))
    assert full["size"] == len(rec)
    assert full["time"] == 123456789 and full["raw"].startswith(sys_enter_raw(be, 42, ARGS))
    if st & abi.SAMPLE_AUX:
        assert full["aux"] == b"a" * 8
    if st & abi.SAMPLE_CODE_PAGE_SIZE:
        assert full["code_page_size"] == 4096
    if st & abi.SAMPLE_STACK_USER:
        assert full["stack_user"] == b"s" * 16 and full["stack_user_dyn_size"] == 12
    if st & abi.SAMPLE_REGS_USER:
        assert full["regs_user_abi"] == 2 and len(full["regs_user"]) == 3 * 8


def test_sample_id_position_without_identifier() -> None:
    """PERF_SAMPLE_ID (no IDENTIFIER): the id sits after IP/TID/TIME/ADDR; two attrs tell their samples apart."""
    st = ST_TRACE | abi.SAMPLE_ID | abi.SAMPLE_ADDR
    a1 = attr_bytes(False, st)
    a2 = attr_bytes(False, st, type_=abi.TYPE_SOFTWARE, config=9)
    data = b""
    for i, ident in enumerate([7, 8, 7, 99]):
        data += sample(False, st, {"time": 10 + i, "id": ident, "raw": sys_enter_raw(False, i, ARGS)})
    features = {abi.HEADER_TRACING_DATA: tracing_blob(False, {"raw_syscalls": [SYS_ENTER_FORMAT]}),
                abi.HEADER_EVENT_DESC: event_desc_blob(False, [(a1, "raw_syscalls:sys_enter", [7]),
                                                               (a2, "dummy:HG", [8])])}
    events, src = decode(perf_file(False, [(a1, [7]), (a2, [8])], data, features))
    assert [(e.provider, e.name) for e in events] == [("raw_syscalls", "sys_enter"), ("dummy", "HG"),
                                                      ("raw_syscalls", "sys_enter")]
    # No tracepoint format for the software event: its payload is one hex-bytes field, as the reference shows it,
    # padding included (the kernel counts the padding in the RAW size).
    raw = sys_enter_raw(False, 1, ARGS) + b"\0" * 4
    assert events[1].schema.names == ("raw",) and events[1].values == (raw,)
    assert json.loads(format_event(events[1]))["raw"] == raw.hex(" ")
    assert src.stats.skipped["SAMPLE with an unknown sample id"] == 1


def test_single_attr_without_ids_and_names_from_the_format() -> None:
    st = ST_TRACE
    attr = attr_bytes(False, st)
    data = sample(False, st, {"time": 5, "raw": sys_enter_raw(False, 3, ARGS)})
    # no EVENT_DESC: provider and name come from the tracepoint format
    events, src = decode(perf_file(False, [(attr, [])], data, {
        abi.HEADER_TRACING_DATA: tracing_blob(False, {"raw_syscalls": [SYS_ENTER_FORMAT]})}))
    assert [(e.provider, e.name, e.values[0], e.time_is_wall) for e in events] == [
        ("raw_syscalls", "sys_enter", 3, False)]
    assert src.stats.records == 1


def test_pipe_mode_names_from_event_update() -> None:
    st = ST_TRACE | abi.SAMPLE_IDENTIFIER
    attr = attr_bytes(False, st, type_=abi.TYPE_SOFTWARE, config=9)
    data = sample(False, st, {"id": 5, "time": 1, "raw": b"\1\2\3\4"})
    events, _ = decode(perf_pipe(False, [(attr, [5])], data, {}, names={5: "dummy:HG"}))
    assert [(e.provider, e.name, e.values) for e in events] == [("dummy", "HG", (b"\1\2\3\4",))]


def test_unknown_and_foreign_records_are_counted_by_name() -> None:
    extra = record(False, 200, b"12345678") + record(False, abi.RECORD_COMM, b"\0" * 16)
    attr = attr_bytes(False, ST_TRACE)
    body = (sample(False, ST_TRACE, {"time": 1, "raw": sys_enter_raw(False, 0, ARGS)}) + extra
            + finished_round(False))
    events, src = decode(perf_file(False, [(attr, [])], body, {}))
    assert len(events) == 1 and src.stats.bad == 0
    assert src.stats.skipped == {"UNKNOWN_200": 1, "COMM": 1, "FINISHED_ROUND": 1}
    assert src.stats.records == 4


def test_bad_record_sizes_are_problems_with_offsets_and_reading_resyncs() -> None:
    good = sys_enter_recording(False, clock=False)
    n_good = len(decode(good)[0])
    hdr_size = struct.unpack_from("<Q", good, 8)[0]
    data_off = struct.unpack_from("<Q", good, 40)[0]
    assert hdr_size == 104
    first_size = struct.unpack_from("<H", good, data_off + 6)[0]
    # a record with size 0 in the middle: one problem naming its offset, the others still decoded
    broken = bytearray(good)
    struct.pack_into("<H", broken, data_off + first_size + 6, 0)
    events, src = decode(bytes(broken))
    assert src.stats.bad >= 1
    assert src.stats.problems[0].offset == data_off + first_size
    assert "less than its 8-byte header" in src.stats.problems[0].message
    assert n_good - 1 <= len(events) < n_good
    # a sample whose call chain claims more than the record holds
    st = ST_TRACE | abi.SAMPLE_CALLCHAIN
    rec = bytearray(sample(False, st, {"chain": (1, 2), "raw": b""}))
    struct.pack_into("<Q", rec, 8 + 40, 1000)
    events, src = decode(perf_file(False, [(attr_bytes(False, st), [])], bytes(rec), {}))
    assert events == [] and src.stats.bad == 1
    assert "CALLCHAIN runs past the end" in src.stats.problems[0].message




@pytest.mark.parametrize("pipe", [False, True], ids=["file", "pipe"])
def test_every_prefix_is_counted_problems_never_an_exception(pipe: bool) -> None:
    data = sys_enter_recording(False, pipe=pipe, st=ST_TRACE | abi.SAMPLE_CALLCHAIN | abi.SAMPLE_IDENTIFIER)
    full, src = decode(data)
    assert src.stats.bad == 0 and len(full) == 6
    silent = 0
    with deadline(120):
        for cut in range(8, len(data)):
            events, src = decode(data[:cut])
            assert len(events) <= len(full)
            for p in src.stats.problems:
                assert 0 <= p.offset <= len(data) and p.message
            if src.stats.bad == 0:
                silent += 1
    if not pipe:
        assert silent == 0  # in file mode every cut loses part of a section the header promised
    else:
        # a pipe-mode cut exactly between records looks like a shorter recording
        assert silent <= 30


def test_random_corruption_is_counted_problems_never_an_exception() -> None:
    data = sys_enter_recording(False, pipe=False, st=ST_TRACE | abi.SAMPLE_CALLCHAIN | abi.SAMPLE_IDENTIFIER)
    pipe = sys_enter_recording(True, pipe=True, st=ST_TRACE | abi.SAMPLE_CALLCHAIN | abi.SAMPLE_READ,
                               read_format=abi.FORMAT_GROUP | abi.FORMAT_ID)
    rng = random.Random(7)
    with deadline(120):
        for base in (data, pipe):
            for _ in range(1500):
                mutated = bytearray(base)
                for _ in range(rng.randint(1, 6)):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                events, src = decode(bytes(mutated))
                for e in events:
                    format_event(e)
                for p in src.stats.problems:
                    assert p.offset >= 0 and p.message


@pytest.mark.parametrize("chunk", [1, 13, 4096])
def test_pipe_mode_through_a_real_pipe_in_small_chunks(chunk: int, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """Read sequentially from a pipe (no seeking), with records and tracing data split across reads."""
    data = sys_enter_recording(False, pipe=True, st=ST_TRACE | abi.SAMPLE_CALLCHAIN)
    path = tmp_path / "pipe.data"
    path.write_bytes(data)
    expected, _ = decode(data)
    monkeypatch.setattr(perf_data, "CHUNK", chunk)
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        src = perf_data.open_source("stdin", proc.stdout, "round")
        events = list(src.events())
    assert [summary(e) for e in events] == [summary(e) for e in expected]
    assert src.stats.bad == 0


def test_file_mode_through_a_pipe_is_read_whole(tmp_path: Path) -> None:
    data = sys_enter_recording(False)
    path = tmp_path / "file.data"
    path.write_bytes(data)
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        events = list(perf_data.open_source("stdin", proc.stdout).events())
    with path.open("rb") as f:
        mapped = list(perf_data.open_source(str(path), f).events())
    assert [summary(e) for e in events] == [summary(e) for e in mapped] and len(events) == 6


def test_tracing_data_parts_and_truncation() -> None:
    blob = tracing_blob(False, {"raw_syscalls": [SYS_ENTER_FORMAT], "sched": [SYS_ENTER_FORMAT]})
    td = parse_tracing_data(blob)
    assert td.error is None and (td.version, td.long_size, td.page_size) == ("0.6", 8, 4096)
    assert [e.system for e in td.events] == ["raw_syscalls", "sched"] and td.saved_cmdlines == b"1 sh\n"
    for cut in range(len(blob)):
        part = parse_tracing_data(blob[:cut])
        assert part.error is not None and len(part.events) <= 2


# ---------------------------------------------------------------------------------------------------------------
# The reference corpus

def corpus_events(order_: str) -> tuple[list[Event], perf_data.PerfDataSource]:
    path = corpus_file("linuxtracepoints/perf.data")
    with path.open("rb") as f:
        src = perf_data.open_source(str(path), f, order_)
        return list(src.events()), src


def reference_events() -> list[Any]:
    [(_, ref)] = load_reference_json(corpus_file("linuxtracepoints/perf.data.linux.json"))
    assert isinstance(ref, list)
    return ref


def as_json(e: Event) -> Any:
    return json.loads(format_event(e), object_pairs_hook=list)


def test_corpus_count_names_and_sample_meta() -> None:
    events, src = corpus_events("file")
    ref = reference_events()
    assert len(events) == 539 == len(ref)
    assert src.stats.bad == 0 and src.stats.events == 539
    assert src.features.clock is not None
    # what comes from the sample itself: time (as wall time, via HEADER_CLOCK_DATA), cpu, pid, tid
    for ours, theirs in zip(events, ref, strict=True):
        meta = dict(dict(theirs)["meta"])
        assert as_json(ours)[-1][1][:4] == [(k, meta[k]) for k in ("time", "cpu", "pid", "tid")]
    assert dict(as_json(events[0])[-1][1])["time"] == "2024-03-28T00:45:12.640913120Z"
    # tracefs events, names and fields
    sched = [(e, r) for e, r in zip(events, ref, strict=True) if e.provider == "sched"]
    assert len(sched) == 285
    for e, r in sched:
        assert as_json(e) == r


def test_corpus_field_for_field_in_file_order() -> None:
    """The corpus JSON is what the reference library's own test prints (decode-perf-utest, file order)."""
    events, _ = corpus_events("file")
    ref = reference_events()
    ours = [as_json(e) for e in events]
    diffs = [i for i, (a, b) in enumerate(zip(ours, ref, strict=True)) if a != b]
    assert not diffs, f"{len(diffs)} events differ; first: {diffs[0]}\n ours: {ours[diffs[0]]}\n  ref: {ref[diffs[0]]}"


def file_to_pipe(data: bytes) -> bytes:
    """The same recording as `perf record -o -` would have written it: the file's attrs (with their ids), its
    feature sections and its tracing data as records ahead of its data section, byte for byte. (perf 6.1's `perf
    inject` refuses the corpus file, so the test converts it; the conversion moves sections, it decodes nothing.)"""
    assert data[:8] == abi.MAGIC, "a little-endian file-mode perf.data"
    attr_size, attrs_off, attrs_size, data_off, data_size = struct.unpack_from("<5Q", data, 16)
    flags = struct.unpack_from("<4Q", data, 72)
    attrs = []
    for at in range(attrs_off, attrs_off + attrs_size, attr_size):
        ids_off, ids_size = struct.unpack_from("<QQ", data, at + attr_size - 16)
        ids = struct.unpack_from(f"<{ids_size // 8}Q", data, ids_off)
        attrs.append((data[at : at + attr_size - 16], ids))
    bits = [bit for bit in range(256) if flags[bit // 64] >> (bit % 64) & 1]
    table = data_off + data_size
    features: dict[int, bytes] = {}
    tracing = None
    for i, bit in enumerate(bits):
        off, size = struct.unpack_from("<QQ", data, table + 16 * i)
        if bit == abi.HEADER_TRACING_DATA:
            tracing = data[off : off + size]
        else:
            features[bit] = data[off : off + size]
    return perf_pipe(False, attrs, data[data_off:table], features, tracing)


def test_corpus_in_pipe_mode_field_for_field(tmp_path: Path) -> None:
    """The corpus as a pipe-mode stream, through `dyntel decode -` (standard input, as `perf record -o - | dyntel
    decode -` runs): the reference decoder's JSON, event for event, field tags aside (the reference predates them)."""
    from support import untagged

    piped = tmp_path / "corpus.pipe.data"
    piped.write_bytes(file_to_pipe(corpus_file("linuxtracepoints/perf.data").read_bytes()))
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "decode", "-", "--format", "jsonl"],
                          stdin=piped.open("rb"), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    ours = [untagged(json.loads(line.decode("utf-8", "surrogateescape"), object_pairs_hook=list))
            for line in proc.stdout.splitlines()]
    ref = reference_events()
    assert len(ours) == len(ref) == 539
    diffs = [i for i, (a, b) in enumerate(zip(ours, ref, strict=True)) if a != b]
    assert not diffs, f"{len(diffs)} events differ; first: {diffs[0]}\n ours: {ours[diffs[0]]}\n  ref: {ref[diffs[0]]}"


def test_corpus_round_order_is_the_reference_order_sorted_within_rounds() -> None:
    """perf-decode's order: within each FINISHED_ROUND the samples sorted by time, stable."""
    by_round, _ = corpus_events("round")
    in_file, _ = corpus_events("file")
    # the corpus has 46 samples before its first FINISHED_ROUND and 493 after
    rounds = [in_file[:46], in_file[46:]]
    expected = [e for r in rounds for e in sorted(r, key=lambda e: e.time or 0)]
    assert [as_json(e) for e in by_round] == [as_json(e) for e in expected]


# ---------------------------------------------------------------------------------------------------------------
# Recorded here, compared with perf script

PERF = shutil.which("perf")


def _need_perf() -> None:
    if PERF is None or os.geteuid() != 0:
        message = "needs perf and root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def _record(tmp_path: Path, pipe: bool) -> Path:
    _need_perf()
    out = tmp_path / ("pipe.data" if pipe else "file.data")
    cmd = ["perf", "record", "-q", "-e", "raw_syscalls:sys_enter", "-g", "-a", "-o", "-" if pipe else str(out),
           "--", "sh", "-c", "ls / > /dev/null; cat /etc/hostname > /dev/null"]
    with out.open("ab") as sink:
        proc = subprocess.run(cmd, stdout=sink if pipe else subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        message = f"perf record failed: {proc.stderr.decode(errors='replace')[-300:]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return out


def _perf_script(path: Path, *args: str) -> str:
    # perf reads a pipe-mode recording from standard input only, and a file-mode one from a path only
    pipe = path.read_bytes()[8:16] == struct.pack("<Q", 16)
    with path.open("rb") as f:
        proc = subprocess.run(["perf", "script", "-i", "-" if pipe else str(path), *args],
                              stdin=f if pipe else subprocess.DEVNULL, capture_output=True, check=True)
    return proc.stdout.decode(errors="replace")


_TRACE_LINE = re.compile(r"^\s*(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d{9}):\s+NR (-?\d+) \(([0-9a-f, ]*)\)\s*$")
_DUMP_SAMPLE = re.compile(r"^(\d+) (\d+) 0x[0-9a-f]+ \[0x[0-9a-f]+\]: PERF_RECORD_SAMPLE\(.*?\): (\d+)/(\d+): ")
_DUMP_CHAIN = re.compile(r"^\.\.\. FP chain: nr:(\d+)")
_DUMP_ENTRY = re.compile(r"^\.\.\.\.\.\s+\d+: ([0-9a-f]+)")


def perf_script_fields(path: Path) -> list[tuple[Any, ...]]:
    """(pid, tid, cpu, time, id, args) per sample, from `perf script -F pid,tid,cpu,time,trace --ns`."""
    out = []
    for line in _perf_script(path, "-F", "pid,tid,cpu,time,trace", "--ns").splitlines():
        m = _TRACE_LINE.match(line)
        if m:
            args = tuple(int(a, 16) for a in m[7].split(", ")) if m[7] else ()
            out.append((int(m[1]), int(m[2]), int(m[3]), int(m[4]) * 10**9 + int(m[5]), int(m[6]), args))
    return out


def perf_script_chains(path: Path) -> list[tuple[Any, ...]]:
    """(pid, tid, cpu, time, call chain as stored, markers included) per sample, from `perf script -D`."""
    out: list[tuple[Any, ...]] = []
    current: list[Any] | None = None
    for line in _perf_script(path, "-D").splitlines():
        m = _DUMP_SAMPLE.match(line)
        if m:
            current = [int(m[3]), int(m[4]), int(m[1]), int(m[2]), []]
            out.append(current)  # type: ignore[arg-type]
            continue
        if current is not None and (e := _DUMP_ENTRY.match(line)):
            current[4].append(int(e[1], 16))
    return [(p, t, c, tm, tuple(chain)) for p, t, c, tm, chain in out]


@pytest.mark.kernel
@pytest.mark.parametrize("pipe", [False, True], ids=["file", "pipe"])
def test_recorded_samples_match_perf_script(tmp_path: Path, pipe: bool) -> None:
    path = _record(tmp_path, pipe)
    with path.open("rb") as f:
        src = perf_data.open_source(str(path), f, "round")
        events = list(src.events())
    assert src.stats.bad == 0, src.stats.problems
    assert events and all(not e.time_is_wall for e in events)  # no -k: perf's own clock
    assert {(e.provider, e.name) for e in events} == {("raw_syscalls", "sys_enter")}

    fields = perf_script_fields(path)
    ours = sorted((e.pid, e.tid, e.cpu, e.time, e.values[0], tuple(e.values[1])) for e in events)
    assert len(ours) == len(fields) > 0
    assert ours == sorted(fields)

    chains = perf_script_chains(path)
    ours_chains = sorted((e.pid, e.tid, e.cpu, e.time, e.callchain) for e in events)
    assert ours_chains == sorted(chains)
    assert any(abi.CONTEXT_KERNEL in (e.callchain or ()) for e in events)

    # every round comes out sorted by time
    times = [e.time for e in events]
    assert sum(1 for a, b in itertools.pairwise(times) if b < a) <= src.stats.skipped["FINISHED_ROUND"]


@pytest.mark.kernel
def test_recorded_pipe_mode_from_a_pipe(tmp_path: Path) -> None:
    path = _record(tmp_path, pipe=True)
    with path.open("rb") as f:
        expected = list(perf_data.open_source(str(path), f).events())
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        src = perf_data.open_source("stdin", proc.stdout)
        events = list(src.events())
    assert src.stats.bad == 0
    assert [summary(e) for e in events] == [summary(e) for e in expected]


# ---------------------------------------------------------------------------------------------------------------
# The native fast path writes exactly what the Python path writes, or declines


def _fast_output(path: Path, tmp_path: Path, **seps: bytes) -> bytes | None:
    from dyntel.sources.perf import fast as perf_fast
    native_module("dyntel._speedups")
    out = tmp_path / "fast.out"
    with path.open("rb") as f, out.open("wb") as sink:
        src = perf_data.open_source(str(path), f)
        events = src.events()
        written = perf_fast.write_samples(src, sink.fileno(), **seps)
        if written is None:
            assert out.stat().st_size == 0
            list(events)
            return None
        events.close()
        assert written == src.stats.events
    return out.read_bytes()


def _python_output(path: Path) -> bytes:
    with path.open("rb") as f:
        return b"".join((format_event(e) + "\n").encode("utf-8", "surrogateescape")
                        for e in perf_data.open_source(str(path), f).events())


@pytest.mark.parametrize("st", [ST_TRACE, ST_TRACE | abi.SAMPLE_CALLCHAIN | abi.SAMPLE_IDENTIFIER,
                                ST_TRACE | abi.SAMPLE_ID | abi.SAMPLE_STREAM_ID | abi.SAMPLE_ADDR])
@pytest.mark.parametrize("clock", [False, True])
def test_fast_path_writes_what_the_python_path_writes(st: int, clock: bool, tmp_path: Path) -> None:
    path = tmp_path / "rec.data"
    path.write_bytes(sys_enter_recording(False, st=st, clock=clock))
    fast = _fast_output(path, tmp_path)
    assert fast is not None and fast == _python_output(path)
    json_framed = _fast_output(path, tmp_path, first_sep=b"\n ", sep=b",\n ", suffix=b"")
    assert json_framed is not None and json_framed.startswith(b"\n {") and json_framed.count(b",\n {") == 5


@pytest.mark.parametrize("case", ["big-endian", "pipe", "read", "corrupt"])
def test_fast_path_declines_what_it_does_not_cover(case: str, tmp_path: Path) -> None:
    if case == "corrupt":
        # a RAW size that runs past its sample
        raw = bytearray(sys_enter_recording(False))
        data_off = struct.unpack_from("<Q", raw, 40)[0]
        struct.pack_into("<I", raw, data_off + 8 + 40, 4000)
        data = bytes(raw)
    else:
        data = {
            "big-endian": lambda: sys_enter_recording(True),
            "pipe": lambda: sys_enter_recording(False, pipe=True),
            "read": lambda: sys_enter_recording(False, st=ST_TRACE | abi.SAMPLE_READ),
        }[case]()
    path = tmp_path / "rec.data"
    path.write_bytes(data)
    assert _fast_output(path, tmp_path) is None


def test_fast_path_writes_the_corpus_eventheader_events_too(tmp_path: Path) -> None:
    # EventHeader samples are written by dyntel/_eventheader.c (tests/test_decode_native.py compares it fully).
    path = corpus_file("linuxtracepoints/perf.data")
    fast = _fast_output(path, tmp_path)
    with path.open("rb") as f:
        python = b"".join((format_event(e, True) + "\n").encode("utf-8", "surrogateescape")
                          for e in perf_data.open_source(str(path), f).events())
    assert fast is not None and fast == python


@pytest.mark.kernel
def test_fast_path_on_a_recording(tmp_path: Path) -> None:
    path = _record(tmp_path, pipe=False)
    fast = _fast_output(path, tmp_path)
    assert fast is not None and fast == _python_output(path)


def test_short_sample_at_the_end_and_compressed_records() -> None:
    st = ST_TRACE | abi.SAMPLE_IDENTIFIER
    head = perf_pipe(False, [(attr_bytes(False, st), [1])], b"", {})
    events, src = decode(head + record(False, abi.RECORD_SAMPLE, b"\1" * 8))
    assert events == [] and src.stats.bad == 1
    assert src.stats.problems[0].offset == len(head) + 8  # where the fixed fields should have started
    events, src = decode(head + record(False, abi.RECORD_COMPRESSED, b"\1" * 8))
    assert events == [] and src.stats.bad == 1  # not zstd data: a counted problem (tests/test_perf_zstd.py)
    assert "zstd" in src.stats.problems[0].message and src.stats.problems[0].offset == len(head)
