"""The EventHeader interceptor `.dat` reader: the corpus file decodes to exactly what the reference decoder printed,
and broken files end in counted problems, never exceptions."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import pytest
from support import corpus_file, load_reference_json

from dyntel.decoders.eventheader import EventHeaderDecoder
from dyntel.event_json import format_event
from dyntel.sources.files import interceptor_dat
from dyntel.sources.recordings import open_recording

DAT = "linuxtracepoints/EventHeaderInterceptorLE64.dat"
REF = "linuxtracepoints/EventHeaderInterceptorLE64.dat.linux.json"


def read(data: bytes, name: str = "test.dat") -> tuple[list[Any], interceptor_dat.InterceptorDatSource]:
    source = interceptor_dat.open_source(name, io.BytesIO(data))
    return list(source.events()), source


def record(name: bytes, event: bytes) -> bytes:
    return struct.pack("<I", 4 + len(name) + 1 + len(event)) + name + b"\0" + event


def simple_event(value: int = 7, level: int = 5) -> bytes:
    meta = b"Ev\0v\0\x02"
    return struct.pack("<BBHHBB", 0x07, 0, 0, 0, 0, level) + struct.pack("<HH", len(meta), 1) + meta + bytes([value])


def test_corpus_equals_the_reference_event_for_event() -> None:
    path = corpus_file(DAT)
    [(_, ref_events)] = load_reference_json(corpus_file(REF))
    with open(path, "rb") as stream:
        source = interceptor_dat.open_source(str(path), stream)
        events = list(source.events())
    assert source.stats.bad == 0 and source.stats.records == source.stats.events == len(events) == 374
    assert len(ref_events) == 374  # type: ignore[arg-type]
    for i, (event, ref) in enumerate(zip(events, ref_events, strict=True)):  # type: ignore[call-overload]
        ours = json.loads(format_event(event, source.field_tags), object_pairs_hook=list)
        assert ours == ref, f"event {i}:\n ours: {ours}\n  ref: {ref}"


def test_corpus_opens_by_sniffing() -> None:
    source = open_recording(str(corpus_file(DAT)))
    assert isinstance(source, interceptor_dat.InterceptorDatSource)
    assert sum(1 for _ in source.events()) == 374


def test_sniff() -> None:
    head = corpus_file(DAT).read_bytes()[:64]
    assert interceptor_dat.sniff(head, "x.dat")
    assert interceptor_dat.sniff(record(b"P_L5K1", simple_event()), "x")
    assert interceptor_dat.sniff(head[:10], "x.dat")  # a long name cut by the sniff window
    assert not interceptor_dat.sniff(corpus_file("linuxtracepoints/perf.data").read_bytes()[:64], "perf.data")
    assert not interceptor_dat.sniff(b"", "x.dat")
    assert not interceptor_dat.sniff(b"hello world, this is text\n", "x.dat")
    assert not interceptor_dat.sniff(record(b"NotEventHeader", simple_event()), "x.dat")
    assert not interceptor_dat.sniff(struct.pack("<I", 4) + b"P_L5K1\0", "x.dat")


def test_events_carry_only_what_the_eventheader_says() -> None:
    [event], source = read(record(b"Prov_L5K3", simple_event(9)))
    assert (event.provider, event.name, event.values, event.keyword, event.level) == ("Prov", "Ev", [9], 3, 5)
    assert event.time is None and event.cpu is None and event.pid is None and event.tid is None
    assert json.loads(format_event(event)) == {"n": "Prov:Ev", "v": 9, "meta": {"level": 5, "keyword": "0x3"}}
    assert (source.stats.records, source.stats.events, source.stats.bad) == (1, 1, 0)


def test_tagged_fields_are_named_as_the_reference_dat_tools_print_them() -> None:
    meta = b"E\0a\0\x82\x81\x12\x00"
    event_data = struct.pack("<BBHHBBHH", 7, 0, 0, 0, 0, 5, len(meta), 1) + meta + b"\x05"
    [event], source = read(record(b"P_L5K1", event_data))
    assert event.schema.fields[0].tag == 0x12 and event.fields == {"a": 5}
    assert source.field_tags
    assert json.loads(format_event(event, source.field_tags))["a;tag=0x12"] == 5


def test_a_bad_record_is_counted_and_the_next_one_read() -> None:
    good = record(b"P_L5K1", simple_event(1))
    not_eventheader = record(b"P_L4K1", simple_event(2))  # level in the name differs from the header's
    short_payload = record(b"P_L5K1", simple_event(3)[:-1])
    no_nul = struct.pack("<I", 10) + b"P_L5K1"
    data = good + not_eventheader + short_payload + no_nul + good
    events, source = read(data)
    assert [e.values for e in events] == [[1], [1]]
    assert (source.stats.records, source.stats.events, source.stats.bad) == (5, 2, 3)
    offsets = [p.offset for p in source.stats.problems]
    assert offsets[0] == len(good) + 4 + 7 + 7  # the header's level byte, after the size and "P_L4K1\0"
    assert offsets[1] == len(good) + len(not_eventheader) + len(short_payload)  # where the u8 should have been
    assert offsets[2] == len(good) + len(not_eventheader) + len(short_payload) + 4
    assert "level" in source.stats.problems[0].message
    assert "'v' needs 1 bytes, 0 left" in source.stats.problems[1].message
    assert "NUL" in source.stats.problems[2].message


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 12, 20])
def test_a_truncated_file_ends_with_a_counted_problem(cut: int) -> None:
    good = record(b"P_L5K1", simple_event(1))
    second = record(b"P_L5K1", simple_event(2))
    data = good + second[:cut]
    events, source = read(data)
    assert [e.values for e in events] == [[1]]
    assert source.stats.bad == 1 and source.stats.problems[0].offset == len(good)
    assert "file ends" in source.stats.problems[0].message


def test_a_record_size_too_small_stops_the_file() -> None:
    good = record(b"P_L5K1", simple_event(1))
    events, source = read(good + struct.pack("<I", 3) + good)
    assert len(events) == 1 and source.stats.bad == 1 and source.stats.problems[0].offset == len(good)


def test_a_huge_record_size_costs_only_the_file() -> None:
    events, source = read(struct.pack("<I", 0xFFFFFFF0) + b"P_L5K1\0" + simple_event())
    assert events == [] and source.stats.bad == 1 and "file ends" in source.stats.problems[0].message


def test_the_stream_is_closed_when_done() -> None:
    stream = io.BytesIO(record(b"P_L5K1", simple_event()))
    source = interceptor_dat.InterceptorDatSource("x.dat", stream, EventHeaderDecoder())
    assert len(list(source.events())) == 1
    assert stream.closed


def test_every_truncated_prefix_of_the_corpus() -> None:
    data = corpus_file(DAT).read_bytes()
    boundaries = set()
    pos = 0
    while pos < len(data):
        boundaries.add(pos)
        pos += struct.unpack_from("<I", data, pos)[0]
    full = len(read(data)[0])
    for cut in range(0, len(data), 7):
        events, source = read(data[:cut])
        assert len(events) <= full
        assert (source.stats.bad == 0) == (cut in boundaries)
