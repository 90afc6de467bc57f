"""`dyntel decode` through the native writer (EventHeader and tracefs samples in C) against the Python path, byte for
byte, on every EventHeader recording there is: the corpus perf.data and .dat, and perf.data files built here from
every hand-made EventHeader case (both byte orders, with a tracefs tracepoint mixed in, activity ids, event identity,
tags shown or not). A malformed event anywhere makes the native writer leave the file to the Python decoder, so the
counted problems are the Python decoder's own.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest
from support import corpus_file, native_module
from test_eventheader import CASES, STRUCT_CASES, event_bytes
from test_perf_data import (
    ST_TRACE,
    SYS_ENTER_FORMAT,
    attr_bytes,
    clock_data_blob,
    event_desc_blob,
    finished_round,
    perf_file,
    sample,
    sys_enter_raw,
    tracing_blob,
)

from dyntel.decode import DecodeOptions, decode_files
from dyntel.decoders import eventheader
from dyntel.decoders.eventheader import EventHeaderDecoder, TypeCache
from dyntel.errors import DecodeError
from dyntel.sources.perf import abi
from dyntel.sources.perf import data as perf_data
from dyntel.sources.perf import fast as perf_fast

native_module("dyntel._speedups")
native_module("dyntel._eventheader")

EH_FORMAT = """name: {name}
ID: {id}
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:u8 eventheader_flags;\toffset:8;\tsize:1;\tsigned:0;
\tfield:u8 version;\toffset:9;\tsize:1;\tsigned:0;
\tfield:u16 id;\toffset:10;\tsize:2;\tsigned:0;
\tfield:u16 tag;\toffset:12;\tsize:2;\tsigned:0;
\tfield:u8 opcode;\toffset:14;\tsize:1;\tsigned:0;
\tfield:u8 level;\toffset:15;\tsize:1;\tsigned:0;

print fmt: "eventheader"
"""

# (tracepoint name, tracefs id, sample id)
TRACEPOINTS = [("Prov_L5K1", 30, 200), ("Other_L4K2Gmsft", 31, 201), ("Prov_L5K1f", 32, 202)]


def eh_recording(events: list[tuple[int, bytes]], *, mixed: bool = True, clock: bool = True) -> bytes:
    """A file-mode perf.data of EventHeader samples (tracepoint index, event bytes), in two rounds, times out of
    order within each; with a tracefs sys_enter sample after every third when `mixed`."""
    st = ST_TRACE | abi.SAMPLE_IDENTIFIER
    attrs = [(attr_bytes(False, st, config=tid), [sid]) for _, tid, sid in TRACEPOINTS]
    sys_attr = attr_bytes(False, st, config=21)
    if mixed:
        attrs.append((sys_attr, [300]))
    data = b""
    for i, (tp, ev) in enumerate(events):
        _, tid, sid = TRACEPOINTS[tp]
        raw = struct.pack("<HBBi", tid, 0, 0, 77) + ev
        t = 1_000_000 + (i * 7919) % 1000
        data += sample(False, st, {"id": sid, "time": t, "pid": 77, "tid": 78 + i % 3, "cpu": i % 4, "raw": raw})
        if mixed and i % 3 == 2:
            data += sample(False, st, {"id": 300, "time": t + 1, "pid": 9, "tid": 9, "cpu": 1,
                                       "raw": sys_enter_raw(False, i, (1, 2, 3, 4, 5, 6))})
        if i % 50 == 49:
            data += finished_round(False)
    data += finished_round(False)
    names = [(a, f"user_events:{n}", [sid]) for (a, _), (n, _, sid) in zip(attrs, TRACEPOINTS, strict=False)]
    if mixed:
        names.append((sys_attr, "raw_syscalls:sys_enter", [300]))
    features = {abi.HEADER_EVENT_DESC: event_desc_blob(False, names)}
    if clock:
        features[abi.HEADER_CLOCK_DATA] = clock_data_blob(False, 1_700_000_000_000_000_000, 500_000)
    formats = {"user_events": [EH_FORMAT.format(name=n, id=tid) for n, tid, _ in TRACEPOINTS]}
    if mixed:
        formats["raw_syscalls"] = [SYS_ENTER_FORMAT]
    features[abi.HEADER_TRACING_DATA] = tracing_blob(False, formats)
    return perf_file(False, attrs, data, features)


def case_events() -> list[tuple[int, bytes]]:
    """Every hand-made case as an event, in both byte orders, under each tracepoint, with identities and ids."""
    out = []
    for i, (label, meta, payload) in enumerate(CASES + STRUCT_CASES):
        fields = b"v\0" + meta if (label, meta, payload) in CASES else meta
        tp = i % 3
        level = 4 if tp == 1 else 5
        extensions: list[tuple[int, bytes]] = []
        if i % 4 == 1:
            extensions = [(2, bytes(range(16)))]
        elif i % 4 == 2:
            extensions = [(2, bytes(range(32))), (7, b"unknown kind")]
        header = (i % 3, i * 13 % 70000 % 65536, (i * 7) % 3 * 0x1234, i % 2 * 11)
        for big in (False, True):
            data = event_bytes(fields, payload, big=big, level=level, header=header, extensions=extensions,
                               event_name=b"Ev" + str(i).encode() + (b";x=1" if i % 5 == 0 else b""))
            try:  # the payloads are little-endian: keep the big-endian events whose bytes still fit
                EventHeaderDecoder(TypeCache(native=False)).decode(TRACEPOINTS[tp][0], data)
            except DecodeError:
                assert big
                continue
            out.append((tp, data))
    return out


def decode_both(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, tags: bool = True,
                **options: Any) -> tuple[bytes, bytes, list[str]]:
    """(native output, Python output, problems) of `dyntel decode` on `path`; the Python side with the Python
    EventHeader decoder too."""
    real = perf_data.PerfDataSource.__init__

    def init(self: perf_data.PerfDataSource, *a: Any, **k: Any) -> None:
        real(self, *a, **k)
        self.field_tags = tags

    monkeypatch.setattr(perf_data.PerfDataSource, "__init__", init)
    outs = []
    errs = []
    for native in (True, False):
        out = tmp_path / f"out-{native}.json"
        err = io.StringIO()
        with out.open("w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            decode_files([str(path)], f, DecodeOptions(native=native, **options), err)
        outs.append(out.read_bytes())
        errs.append(err.getvalue())
    eventheader.set_native(True)
    assert errs[0] == errs[1]
    return outs[0], outs[1], errs[0].splitlines()


def native_written(path: Path, tags: bool = True) -> int | None:
    with path.open("rb") as f, open("/dev/null", "wb") as sink:
        src = perf_data.open_source(str(path), f)
        src.field_tags = tags
        events = src.events()
        n = perf_fast.write_samples(src, sink.fileno())
        events.close()
        return n


@pytest.mark.parametrize("tags", [False, True], ids=["plain", "tags"])
@pytest.mark.parametrize(("order", "fmt"), [("file", "json"), ("round", "json"), ("round", "jsonl")])
def test_corpus_recording_native_equals_python(order: str, fmt: str, tags: bool, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = corpus_file("linuxtracepoints/perf.data")
    assert native_written(path, tags) == 539  # the native writer takes the whole file, EventHeader and tracefs
    native, python, problems = decode_both(path, tmp_path, monkeypatch, tags=tags, order=order, format=fmt)
    assert native == python and not problems
    assert (b";tag=0x" in native) == tags


def test_corpus_interceptor_dat_native_decoder_equals_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # .dat files go through the Python writer; their EventHeader payloads through the native decoder.
    native, python, problems = decode_both(corpus_file("linuxtracepoints/EventHeaderInterceptorLE64.dat"), tmp_path,
                                           monkeypatch)
    assert native == python and not problems


@pytest.mark.parametrize("mixed", [True, False], ids=["mixed", "eventheader-only"])
@pytest.mark.parametrize("tags", [False, True], ids=["plain", "tags"])
def test_every_case_in_a_recording(mixed: bool, tags: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "eh.data"
    events = case_events()
    path.write_bytes(eh_recording(events, mixed=mixed, clock=mixed))
    assert native_written(path, tags) == len(events) + (len(events) // 3 if mixed else 0)
    for order in ("file", "round"):
        native, python, problems = decode_both(path, tmp_path, monkeypatch, tags=tags, order=order)
        assert native == python and not problems


@pytest.mark.parametrize("damage", ["payload cut", "bad metadata", "not eventheader", "level"])
def test_a_bad_event_leaves_the_file_to_the_python_decoder(damage: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    events = case_events()[:40]
    good = event_bytes(b"s\0\x07", b"hello\0")
    bad = {
        "payload cut": event_bytes(b"s\0\x0a", b"\x40\x00hi"),  # 64 bytes said, 2 there (and the padding)
        "bad metadata": event_bytes(b"s\0\x07\x00\x81", b"x\0"),
        "not eventheader": b"\x02" + good[1:8],  # no extension flag: no metadata
        "level": event_bytes(b"s\0\x07", b"hello\0", level=3),
    }[damage]
    events.insert(17, (0, bad))
    path = tmp_path / "eh.data"
    path.write_bytes(eh_recording(events))
    assert native_written(path) is None
    native, python, problems = decode_both(path, tmp_path, monkeypatch)
    assert native == python
    if damage in ("payload cut", "bad metadata"):
        assert problems and "1 bad record" in problems[0]


def test_random_damage_gives_the_python_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Bytes changed anywhere in the samples (headers, extension blocks, metadata, payloads, record sizes): the
    # native writer takes what it can check and leaves the rest to the Python decoder; the output is the same.
    import random

    rng = random.Random(11)
    base = eh_recording(case_events()[:60])
    data_off, data_size = struct.unpack_from("<QQ", base, 40)
    taken = 0
    for _ in range(60):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[data_off + rng.randrange(data_size)] = rng.choice([0, 1, 0xFF, rng.randrange(256)])
        path = tmp_path / "eh.data"
        path.write_bytes(bytes(data))
        taken += native_written(path) is not None
        native, python, _ = decode_both(path, tmp_path, monkeypatch)
        assert native == python
    assert 0 < taken < 60
