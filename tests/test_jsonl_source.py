"""The JSON-lines source reads back what `dyntel decode` writes, and the pre-decode filter of every source."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, corpus_file

from dyntel.event import Event, Format
from dyntel.event_json import format_event
from dyntel.sources import Want
from dyntel.sources.files import jsonl
from dyntel.sources.recordings import open_recording, open_recording_bytes

DEMO = ROOT / "dyntel" / "data" / "demo.perf.data"


def decode(path: Path, fmt: str = "jsonl", order: str | None = None) -> bytes:
    argv = [sys.executable, "-m", "dyntel.cli", "decode", "--format", fmt, str(path)]
    if order:
        argv += ["--order", order]
    return subprocess.run(argv, check=True, capture_output=True, cwd=ROOT).stdout


def read_jsonl(data: bytes, name: str = "events.jsonl") -> tuple[list[Event], jsonl.JsonlSource]:
    source = jsonl.open_source(name, io.BytesIO(data))
    return list(source.events()), source


@pytest.mark.parametrize("which", ["demo", "corpus-perf", "corpus-dat"])
def test_round_trip_is_the_same_events(which: str, tmp_path: Path) -> None:
    if which == "demo":
        path = DEMO
    elif which == "corpus-perf":
        path = corpus_file("linuxtracepoints/perf.data")
    else:
        path = corpus_file("linuxtracepoints/EventHeaderInterceptorLE64.dat")
    text = decode(path)
    f = tmp_path / "events.jsonl"
    f.write_bytes(text)
    source = open_recording(str(f))
    assert isinstance(source, jsonl.JsonlSource)
    back = list(source.events())
    original_source = open_recording(str(path))
    original = list(original_source.events())
    assert source.stats.bad == 0
    assert len(back) == len(original) == text.count(b"\n")
    for a, b in zip(original, back, strict=True):
        assert (b.provider, b.name) == (a.provider, a.name)
        assert b.fields == a.fields or _same_json(a, b, original_source.field_tags)
        for attr in ("time", "time_is_wall", "cpu", "pid", "tid", "activity", "related_activity"):
            assert getattr(b, attr) == getattr(a, attr), attr
        # The JSON leaves out an identity member that is 0, as the reference does: it reads back as unknown.
        for attr in ("id", "version", "level", "keyword", "opcode", "tag"):
            assert getattr(b, attr) == (getattr(a, attr) or None), attr
    # Written again, the events are the same text, byte for byte.
    again = "".join(format_event(e, source.field_tags) + "\n" for e in back).encode("utf-8", "surrogateescape")
    assert again == text


def _same_json(a: Event, b: Event, tags: bool) -> bool:
    """Fields shown differently in Python (an errno, a time, a UUID read back as the string the JSON shows) are
    the same event when they write the same JSON."""
    return format_event(a, tags) == format_event(b, True)


def test_hex_strings_become_the_integers_the_recording_has(tmp_path: Path) -> None:
    path = corpus_file("linuxtracepoints/perf.data")
    back, _ = read_jsonl(decode(path))
    switch = next(e for e in back if e.name == "sched_switch")
    assert switch.fields["prev_pid"] == 0x950
    assert switch.schema.fields[switch.schema.names.index("prev_pid")].format == Format.HEX_INT
    assert switch.fields["prev_comm"] == "perf"
    assert switch.fields["prev_prio"] == 120


def test_schemas_are_shared_per_event_type() -> None:
    back, _ = read_jsonl(decode(DEMO))
    by_type: dict[str, set[int]] = {}
    for e in back:
        by_type.setdefault(e.provider + ":" + e.name, set()).add(id(e.schema))
    assert all(len(ids) == 1 for ids in by_type.values())


def test_whole_file_json_forms(tmp_path: Path) -> None:
    lines, _ = read_jsonl(decode(DEMO))
    whole, source = read_jsonl(decode(DEMO, "json"), "demo.json")
    assert source.stats.bad == 0
    assert [format_event(e) for e in whole] == [format_event(e) for e in lines]
    # The reference decoder's own file: a byte-order mark, no outer braces.
    ref = corpus_file("linuxtracepoints/perf.data.linux.json")
    assert jsonl.sniff(ref.read_bytes()[:64], str(ref))
    source = open_recording(str(ref))
    assert isinstance(source, jsonl.JsonlSource)
    events = list(source.events())
    assert len(events) == 539 and source.stats.bad == 0
    # A plain array of events
    arr = ("[" + ",".join(format_event(e) for e in lines[:3]) + "]").encode()
    back, source = read_jsonl(arr)
    assert [format_event(e) for e in back] == [format_event(e) for e in lines[:3]]


def test_meta_is_read_back() -> None:
    line = (b'{"n":"MyService:RequestDone","status":503,"path":"/api","ok":false,"ratio":0.25,"flags":"0x1F",'
            b'"lower":"0x1f","list":[1,2.5],"mixed":[1,"a"],"obj":{"a":1,"b":["x"]},'
            b'"meta":{"time":"2024-03-28T00:45:12.640913120Z","cpu":3,"pid":10,"tid":11,"id":7,"version":1,'
            b'"level":2,"keyword":"0xF0","opcode":1,"tag":"0x5",'
            b'"activity":"00112233-4455-6677-8899-aabbccddeeff","source":"user_events"}}\n')
    (e,), _ = read_jsonl(line)
    assert (e.provider, e.name, e.source) == ("MyService", "RequestDone", "user_events")
    assert e.time == 1711586712_640913120 and e.time_is_wall
    assert (e.cpu, e.pid, e.tid, e.id, e.version, e.level, e.keyword, e.opcode, e.tag) == (3, 10, 11, 7, 1, 2, 0xF0,
                                                                                           1, 5)
    assert e.activity == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert e.fields == {"status": 503, "path": "/api", "ok": False, "ratio": 0.25, "flags": 0x1F, "lower": "0x1f",
                        "list": [1.0, 2.5], "mixed": ["1", "a"], "obj": {"a": 1, "b": ["x"]}}


def test_raw_clock_times_keep_every_digit() -> None:
    (e,), _ = read_jsonl(b'{"n":"a:b","meta":{"time":123456789.000000001}}\n')
    assert e.time == 123456789_000000001 and not e.time_is_wall
    assert format_event(e) == '{"n":"a:b","meta":{"time":123456789.000000001}}'


def test_bad_lines_are_counted_with_line_and_offset_and_skipped() -> None:
    data = (b'{"n":"a:b","x":1}\n'
            b'\n'
            b'{"n":"a:b","x":\n'  # line 3, offset 19: not JSON
            b'[1,2]\n'  # line 4: not an object
            b'{"x":1}\n'  # line 5: no n
            b'{"n":"a:b","meta":{"time":"yesterday"}}\n'  # line 6: bad time
            b'{"n":"a:b","x":2}\n')
    events, source = read_jsonl(data)
    assert [e.fields["x"] for e in events] == [1, 2]
    stats = source.stats
    assert stats.bad == 4 and stats.events == 2 and stats.records == 6
    assert [p.offset for p in stats.problems] == [19, 35, 41, 49]
    assert [p.message.split(":")[0] for p in stats.problems] == ["line 3", "line 4", "line 5", "line 6"]
    assert source.position == len(data)


def test_sniff_and_registration() -> None:
    assert jsonl.sniff(b'  \n{"n":"a:b"}', "x")
    assert not jsonl.sniff(b"PERFILE2", "x")
    source = open_recording_bytes(b'{"n":"a:b","x":1}\n', "mem.jsonl")
    assert isinstance(source, jsonl.JsonlSource)
    assert [e.fields for e in source.events()] == [{"x": 1}]


# -- the pre-decode filter ---------------------------------------------------------------------------------------

def _only(names: set[str]) -> Want:
    return lambda provider, event, level: f"{provider}:{event}" in names


@pytest.mark.parametrize("order", ["file", "round"])
def test_perf_data_filter_drops_unwanted_tracepoints(order: str) -> None:
    full = open_recording(str(DEMO))
    full.order = order  # type: ignore[attr-defined]
    everything = [format_event(e) for e in full.events()]
    source = open_recording(str(DEMO))
    source.order = order  # type: ignore[attr-defined]
    asked: list[tuple[str, str, int | None]] = []

    def want(provider: str, event: str, level: int | None) -> bool:
        asked.append((provider, event, level))
        return event == "sched_process_exec"

    source.want = want  # type: ignore[attr-defined]
    kept = [format_event(e) for e in source.events()]
    assert kept == [t for t in everything if t.startswith('{"n":"sched:sched_process_exec"')]
    assert len(kept) == 83
    assert source.stats.skipped["filtered"] == len(everything) - 83
    assert source.stats.records == full.stats.records
    assert len(asked) == len(set(asked))  # once per event type, not per sample


def test_eventheader_filter_in_perf_data_and_dat() -> None:
    for rel in ("linuxtracepoints/perf.data", "linuxtracepoints/EventHeaderInterceptorLE64.dat"):
        path = corpus_file(rel)
        full = open_recording(str(path))
        everything = list(full.events())
        source = open_recording(str(path))
        source.want = lambda p, e, lvl: p == "TestProviderC" and lvl is not None and lvl <= 4  # type: ignore
        kept = list(source.events())
        expect = [format_event(e) for e in everything if e.provider == "TestProviderC" and e.level is not None
                  and e.level <= 4]
        assert expect and [format_event(e) for e in kept] == expect
        assert source.stats.skipped["filtered"] == len(everything) - len(expect)


def test_jsonl_filter() -> None:
    data = decode(DEMO)
    source = jsonl.open_source("x", io.BytesIO(data))
    source.want = _only({"signal:signal_generate"})
    kept = list(source.events())
    assert [e.name for e in kept] == ["signal_generate"]
    assert source.stats.skipped["filtered"] == data.count(b"\n") - 1


def test_decode_output_has_no_filter() -> None:
    # `dyntel decode` sets no filter: the jsonl read back has every event.
    text = decode(DEMO).decode()
    assert len(text.splitlines()) == 5657
    assert all(json.loads(line)["n"] for line in text.splitlines()[:10])
