"""Lazy payloads (issue 18): a live tracepoint whose payload is costly to decode gives LazyEvents, decoded when
something first reads `values` or `fields`; whoever reads them gets exactly what the eager decode gives, and the
JSON is byte-for-byte the same. The perf sample parser sets Event's slots itself: every one of them."""

from __future__ import annotations

import copy
import dataclasses
import struct
from typing import Any

from dyntel.decoders.tracefs_format import parse_format
from dyntel.event import _COMPILE_AFTER, Encoding, Event, FieldInfo, LazyEvent, Schema
from dyntel.event_json import format_event
from dyntel.sources.perf import abi
from dyntel.sources.perf.header import Attr
from dyntel.sources.perf.live import SAMPLE_TYPE, _costly
from dyntel.sources.perf.sample import Recipe, _event_slots, compile_sample_parser

FORMAT = """name: demo_exec
ID: 4242
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:0;

print fmt: "filename=%s pid=%d", __get_str(filename), REC->pid
"""

INTS = FORMAT.replace("__data_loc char[] filename", "int filename").replace("char comm[16]", "long comm")


def _raw() -> bytes:
    name = b"/usr/bin/true\0"
    head = struct.pack("<HBBi", 4242, 0, 0, 77)
    return head + struct.pack("<Ii", len(name) << 16 | 32, 77) + b"bash".ljust(16, b"\0") + name


def _sample(raw: bytes) -> bytes:
    body = struct.pack("<QIIQII", 4242, 77, 78, 5_000, 1, 0) + struct.pack("<I", len(raw)) + raw
    size = 8 + len(body)
    size += -size % 8
    return (struct.pack("<IHH", abi.RECORD_SAMPLE, 0, size) + body).ljust(size, b"\0")


def _parse(lazy: bool, decode: Any = None) -> Event:
    fmt = parse_format(FORMAT, "demo")
    recipe = Recipe("demo", "demo_exec", fmt.schema, "tracepoint", decode=decode or fmt.decoder(False),
                    time_offset=1000, time_is_wall=True, lazy=lazy)
    parser = compile_sample_parser(Attr(2, 4242, SAMPLE_TYPE, 0, True), False, recipe)
    record = _sample(_raw())
    event = parser(record, 0, len(record))
    assert isinstance(event, Event)
    return event


def test_a_lazy_event_reads_as_the_eager_one() -> None:
    eager, lazy = _parse(False), _parse(True)
    assert type(eager) is Event and type(lazy) is LazyEvent
    assert lazy.fields == eager.fields == {"filename": "/usr/bin/true", "pid": 77, "comm": "bash"}
    assert format_event(_parse(True)) == format_event(eager)  # byte for byte, decoded by the writer's first read
    assert (lazy.time, lazy.pid, lazy.tid, lazy.cpu) == (eager.time, eager.pid, eager.tid, eager.cpu) == (6000, 77,
                                                                                                         78, 1)


def test_a_lazy_payload_is_decoded_once_and_only_when_read() -> None:
    fmt = parse_format(FORMAT, "demo")
    calls = []

    def decode(raw: bytes) -> Any:
        calls.append(raw)
        return fmt.decode(raw)

    event = _parse(True, decode)
    assert (event.provider, event.name, event.pid, event.level, event.callchain) == ("demo", "demo_exec", 77, None,
                                                                                     None)
    assert calls == []  # what rules read without fields costs no decode
    assert event.values[0] == "/usr/bin/true"
    assert event.fields["comm"] == "bash"
    assert len(calls) == 1


def test_a_lazy_event_copies_and_replaces_with_its_payload() -> None:
    assert copy.copy(_parse(True)).values == _parse(False).values
    assert dataclasses.replace(_parse(True), name="x").values == _parse(False).values
    event = _parse(True)
    event.values = (1, 2, 3)  # a setter wins over the pending decode
    assert event.values == (1, 2, 3)


def test_only_costly_formats_are_lazy() -> None:
    assert _costly(parse_format(FORMAT, "demo"))
    assert not _costly(parse_format(INTS, "demo"))


def test_the_parser_sets_every_slot_of_event() -> None:
    given = {name: "x" for name in ("provider", "name", "schema", "values", "source", "time_is_wall")}
    slots = [name for name, _ in _event_slots(given)]
    assert slots == [f.name for f in dataclasses.fields(Event)]
    del given["values"]
    lazy = [name for name, _ in _event_slots({**given, "_decode": "d", "_raw": "r"})]
    assert lazy == ["_decode", "_raw", *(f.name for f in dataclasses.fields(Event) if f.name != "values")]


def test_fields_of_a_flat_schema_and_of_a_short_entry() -> None:
    schema = Schema((FieldInfo("a", Encoding.VALUE32), FieldInfo("b'c", Encoding.VALUE32)))
    assert Event("p", "n", schema, (1, 2)).fields == {"a": 1, "b'c": 2}
    assert Event("p", "n", schema, (1,)).fields == {"a": 1}
    repeated = Schema((FieldInfo("a", Encoding.VALUE32), FieldInfo("a", Encoding.VALUE32)))
    assert Event("p", "n", repeated, (1, 2)).fields == {"a": 1}
    # Read often enough, a schema's mapping is built by compiled code, which gives the same dicts.
    for _ in range(_COMPILE_AFTER):
        assert Event("p", "n", schema, (3, 4)).fields == {"a": 3, "b'c": 4}
    assert schema.cache["fields_of"].__name__ == "fields_of"
    assert Event("p", "n", schema, (1, 2)).fields == {"a": 1, "b'c": 2}
    assert Event("p", "n", schema, (1,)).fields == {"a": 1}


def test_an_all_scalar_payload_is_unpacked_from_the_sample_as_the_decoder_would() -> None:
    fmt = parse_format(INTS, "demo")
    decoder = fmt.decoder(False)
    assert decoder.fixed is not None  # type: ignore[attr-defined]
    attr = Attr(2, 4242, SAMPLE_TYPE, 0, True)
    full = struct.pack("<HBBi", 4242, 0, 0, 77) + struct.pack("<iiq", 5, 77, -3)
    for raw in (full, full[:20], full[:9], b""):  # whole, and short entries (the decoder's own answer)
        record = _sample(raw)
        events = [compile_sample_parser(attr, False, Recipe("demo", "demo_exec", fmt.schema, "tracepoint",
                                                            decode=decoder, fixed=fixed))(record, 0, len(record))
                  for fixed in (decoder.fixed, None)]  # type: ignore[attr-defined]
        assert events[0].values == events[1].values == decoder(raw)
        assert format_event(events[0]) == format_event(events[1])
    assert _parse(False).values == parse_format(FORMAT, "demo").decode(_raw())
    assert parse_format(FORMAT, "demo").decoder(False).fixed is None  # type: ignore[attr-defined]
