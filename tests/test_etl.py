"""ETL files made by Windows, read by dyntel and compared with what the etl-parser package (1.0.1) reads from them,
or, where etl-parser reads nothing, with what PerfView's own tests say the file holds.

The files are PerfView's TraceEvent test inputs in ../shared/corpus/etw/ (see its README); zipped ones are read
from the zip in memory, never copied.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from support import corpus_file

from dyntel.decoders.etw_header import EtwEventHeader, guid_text
from dyntel.decoders.tracelogging import decode_etw_event
from dyntel.event import Event
from dyntel.event_json import format_event, format_uuid
from dyntel.sources.etw.etl import EtlSource
from dyntel.sources.etw.etl_logfile import ticks_to_unix_ns
from dyntel.sources.recordings import open_recording_bytes

FILES = {
    "SelfDescribingSingleEvent.etl": None,
    "primitive-types.etl.zip": "primitive-types.etl",
    "gcevents.etl.zip": "gcevents/PerfViewData.etl",
    "gcrundownevents.etl.zip": "gcrundownevents/PerfViewData.clrRundown.etl",
    "net.4.5.2.x64.etl.zip": "net.4.5.2.x64.etl",
}


def etl_bytes(name: str) -> bytes:
    path = corpus_file("etw/" + name)
    member = FILES[name]
    if member is None:
        return path.read_bytes()
    with zipfile.ZipFile(path) as z:
        return z.read(member)


def read(name: str) -> tuple[EtlSource, list[Event]]:
    source = open_recording_bytes(etl_bytes(name), name)
    assert isinstance(source, EtlSource), "the recordings registry must pick the ETL reader by its sniff"
    events = list(source.events())
    return source, events


# -- etl-parser as a second opinion ------------------------------------------------------------------------------


def _ep_guid(g: Any) -> str:
    i = g.inner
    return guid_text(struct.pack("<IHH8B", i.data1, i.data2, i.data3, *i.data4))


def etl_parser_records(data: bytes) -> list[dict[str, Any]]:
    """What etl-parser reports for each record its observer sees (it skips the header buffer)."""
    import etl.etl as etl
    import etl.parsers.tracelogging as tlparse
    from etl.parsers.tracelogging import TraceLogging

    # etl-parser lacks one in-type, FILETIME (17: a little-endian u64 of 100 ns ticks since 1601, as Windows
    # documents it), and raises there, which would leave every later field of the event unread. Teach it that one
    # type, returned as a marker the comparison converts, and let every other type (and every error) be its own.
    read_field = tlparse.read_field

    def read_field_with_filetime(stream: Any, tag: int) -> Any:
        if tag & 0x1F == tlparse.TagIn.FILETIME.value:
            return ("FILETIME", struct.unpack("<Q", stream.read_exact(8))[0])
        return read_field(stream, tag)

    tlparse.read_field = read_field_with_filetime

    out: list[dict[str, Any]] = []

    class Observer(etl.IEtlFileObserver):  # type: ignore[misc, name-defined]
        def on_event_record(self, event: Any) -> None:
            h = event.source.event_header
            d = h.event_descriptor
            rec: dict[str, Any] = {"kind": "event", "guid": _ep_guid(h.provider_id), "id": d.Id,
                                   "version": d.Version, "opcode": d.Opcode, "level": d.Level, "keyword": d.Keyword,
                                   "pid": h.process_id, "tid": h.thread_id, "ticks": h.timestamp,
                                   "user_data": bytes(event.source.user_data)}
            for item in event.source.extended_data or ():
                if item.ext_type == 11:
                    tl = TraceLogging()
                    tl.load(item.data_item, event.source.user_data)
                    rec["tl_name"] = tl.scheme.name if tl.scheme is not None else None
                    rec["tl_fields"] = dict(tl)
            out.append(rec)

        def on_trace_record(self, event: Any) -> None:
            out.append({"kind": "classic"})

        def on_perfinfo_trace(self, obj: Any) -> None:
            out.append({"kind": "perfinfo"})

        def on_system_trace(self, obj: Any) -> None:
            out.append({"kind": "system", "pid": obj.get_process_id(), "tid": obj.get_thread_id()})

        def on_win_trace(self, obj: Any) -> None:
            out.append({"kind": "message"})

    try:
        etl.build_from_stream(data).parse(Observer())
    finally:
        tlparse.read_field = read_field
    return out


def _filetime_text(ticks: int) -> str:
    """FILETIME ticks as dyntel writes them (seven fraction digits, Z), computed here from the ticks alone."""
    when = datetime(1601, 1, 1) + timedelta(microseconds=ticks // 10)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{ticks % 10**7:07d}Z"


@pytest.mark.parametrize("name,expected", [
    ("primitive-types.etl.zip", 5), ("gcevents.etl.zip", 69), ("gcrundownevents.etl.zip", 110),
])
def test_same_events_as_etl_parser(name: str, expected: int) -> None:
    data = etl_bytes(name)
    theirs = etl_parser_records(data)
    assert len(theirs) == expected  # the corpus README's figure: the comparison is with the same etl-parser
    source, ours = read(name)
    assert not source.stats.problems
    assert source.header is not None and source.header.clock_type == 1 and source.header.pointer_size == 8
    # etl-parser skips the header buffer: the log file header and one more EventTrace record.
    head = ours[: len(ours) - len(theirs)]
    assert [(e.provider, e.name) for e in head] == [("Windows Kernel", "EventTrace")] * 2
    clock = source.header.clock()
    for mine, rec in zip(ours[len(head):], theirs, strict=True):
        assert rec["kind"] == "event"
        assert (mine.id, mine.version, mine.opcode, mine.level, mine.keyword, mine.pid, mine.tid) == (
            rec["id"], rec["version"], rec["opcode"], rec["level"], rec["keyword"], rec["pid"], rec["tid"])
        assert mine.time == ticks_to_unix_ns(rec["ticks"], clock)
        if "tl_name" in rec:
            assert mine.name == rec["tl_name"]
            for key, value in rec["tl_fields"].items():
                got = mine.fields[key]
                if hasattr(value, "inner"):  # a GUID, as etl-parser's container
                    assert format_uuid(got) == _ep_guid(value), key
                elif isinstance(value, tuple) and value[0] == "FILETIME":
                    assert got == _filetime_text(value[1]), key
                elif hasattr(value, "milliseconds"):  # a SYSTEMTIME, as etl-parser's container
                    v = value
                    assert got == (f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
                                   f"{v.second:02d}.{v.milliseconds:03d}"), key
                elif isinstance(got, str) and isinstance(value, int):
                    assert ord(got) == value, key  # out-type STRING on a UINT8: etl-parser ignores out-types
                else:
                    assert got == value, key
            assert list(rec["tl_fields"]) == list(mine.fields)  # every field, in order, none left unread
        else:
            assert mine.provider == rec["guid"]
            assert mine.values == (rec["user_data"],)
    # The files' own dates: within the minutes the recordings were made.
    first = min(e.time for e in ours if e.time is not None)
    last = max(e.time for e in ours if e.time is not None)
    assert 0 <= last - first < 3600 * 10**9
    assert 1_600_000_000 * 10**9 < first < 1_700_000_000 * 10**9


def test_primitive_types_every_in_type() -> None:
    """krabsetw/PerfView's primitive-types.etl: five TraceLogging events, one per planet, each with a string,
    boolean, char, int16/32/64, uint16/32/64, GUID, FILETIME and SYSTEMTIME (etl-parser stops at the FILETIME)."""
    _, events = read("primitive-types.etl.zip")
    tl = [e for e in events if e.provider == "solar_system"]
    assert [e.fields["string_type"] for e in tl] == ["Mercury", "Venus", "Earth", "Mars", "Jupiter"]
    assert all(e.name == "PrimitiveTypesTest" for e in tl)
    first = tl[0].fields
    assert first["char_type"] == "M" and first["boolean_type"] == 0
    assert (first["int16_type"], first["int32_type"], first["uint16_type"], first["uint32_type"]) == (-51, -102, 51,
                                                                                                        102)
    # The writer declared int64_type with in-type UINT64: read as the schema says, -204 as an unsigned number.
    assert first["int64_type"] == 2**64 - 204 and first["uint64_type"] == 204
    assert first["file_time_type"] == "2021-09-09T14:59:35.7990000Z"
    assert first["system_time_type"] == "2021-09-09T14:59:35.799"
    line = format_event(tl[0])
    assert '"guid_type":"0ad614c4-0ef4-4225-8013-f44f37cb0397"' in line
    assert line.startswith('{"n":"solar_system:PrimitiveTypesTest","string_type":"Mercury","boolean_type":false,')


def test_self_describing_single_event() -> None:
    """PerfView's Issue1618 test: MySource/TestEvent's payload 0 is the struct { "b":"Hello", "c":"World!" }.
    etl-parser reads nothing here: the file's buffers are compressed (BufferFlag 0x40), and it takes BufferSize
    for the buffer stride and SavedOffset for the filled size of an uncompressed buffer."""
    source, events = read("SelfDescribingSingleEvent.etl")
    assert not source.stats.problems
    assert source.kinds == {"system": 3, "classic": 18, "event": 1}
    (tl,) = [e for e in events if e.name == "TestEvent"]
    assert tl.provider == "MySource"
    assert tl.fields == {"a": {"b": "Hello", "c": "World!"}}
    assert (tl.pid, tl.tid, tl.id, tl.level) == (111592, 52284, 3, 5)
    assert format_event(tl).startswith('{"n":"MySource:TestEvent","a":{"b":"Hello","c":"World!"},"meta":{"time":'
                                       '"2022-04-20T21:27:16.')


def test_net_452_compressed_perfview_collection() -> None:
    """A whole PerfView collection (kernel and CLR), 4.9 MB of compressed buffers: every record has a kind and a
    size that fits; none is a problem."""
    source, events = read("net.4.5.2.x64.etl.zip")
    assert not source.stats.problems and not source.stats.skipped
    assert source.kinds == {"system": 3191, "perfinfo": 100157, "classic": 7983, "event": 68143}
    assert len(events) == 179474
    counts = Counter(e.provider for e in events)
    assert counts["e13c0d23-ccbc-4e12-931b-d9cc2eee27e4"] > 0  # Microsoft-Windows-DotNETRuntime
    assert counts["a669021c-c450-4609-a035-5af59af4df18"] > 0  # its rundown provider
    assert etl_parser_records(etl_bytes("net.4.5.2.x64.etl.zip")) == []


def test_decode_etw_event_live_shape() -> None:
    """The entry point the live session calls: a TraceLogging schema, traits, a related activity and a stack."""
    meta = b"Ev\0" + b"n\0" + bytes([0x08]) + b"s\0" + bytes([0x16]) + b"arr\0" + bytes([0x46])
    meta = (len(meta) + 3).to_bytes(2, "little") + b"\0" + meta
    traits = b"Prov\0"
    traits = (len(traits) + 2).to_bytes(2, "little") + traits
    user = (7).to_bytes(4, "little") + (4).to_bytes(2, "little") + "hi".encode("utf-16-le")
    user += (2).to_bytes(2, "little") + struct.pack("<2H", 1, 2)
    activity = bytes(range(16))
    header = EtwEventHeader(bytes(16), 0, 1, 11, 4, 0, 0, 0x10, 123, 10, 11, 2, activity, 0, 0)
    event = decode_etw_event(header, [(11, meta), (12, traits), (1, bytes(range(16, 32))),
                                      (6, struct.pack("<QQQ", 0, 0x1000, 0x2000))], user)
    assert (event.provider, event.name) == ("Prov", "Ev")
    assert event.fields == {"n": 7, "s": "hi", "arr": [1, 2]}
    assert event.callchain == (0x1000, 0x2000)
    assert event.activity == bytes([3, 2, 1, 0, 5, 4, 7, 6]) + bytes(range(8, 16))
    assert event.source == "etw" and event.time == 123 and event.keyword == 0x10


def test_jsonl_round_trip_through_decode() -> None:
    """`dyntel decode --format jsonl` lines for ETW events read back as events with the same fields."""
    from dyntel.sources.files.jsonl import JsonlSource

    _, events = read("primitive-types.etl.zip")
    text = "\n".join(format_event(e) for e in events).encode()
    back = list(JsonlSource("x", io.BytesIO(text)).events())
    assert [e.fields.get("string_type") for e in back] == [e.fields.get("string_type") for e in events]
    assert [e.time for e in back] == [e.time for e in events]
