"""Common Schema events to OpenTelemetry records: the edge cases of the mapping, on events built by hand and decoded
by dyntel's EventHeader decoder, as `dyntel run` decodes them. What the real Rust exporters write is tested on their
own recordings (tests/test_otel_rust_recording.py); the OpenTelemetry C++ exporter's layout, which cannot be built
here, on a fixture of its layout (tests/test_otel_cpp_layout.py)."""

from __future__ import annotations

import struct

import pytest

from dyntel.decoders.eventheader import EventHeaderDecoder
from dyntel.event import Event
from dyntel.formatting import format_time_rfc3339 as format_time
from dyntel.otel import OtelLog, OtelSpan, is_common_schema, to_otel
from dyntel.otel.common_schema import parse_time, severity_level
from dyntel.otel.records import STATUS_UNSET

STRUCT, U8, U16, U32, U64, STR16 = 1, 2, 3, 4, 5, 10
UNSIGNED, SIGNED, BOOLEAN, FLOAT = 1, 2, 7, 8


class Hand:
    """Metadata and payload, appended as EventBuilder appends them (a format byte only when not default)."""

    def __init__(self, name: str) -> None:
        self.meta = name.encode() + b"\0"
        self.data = b""

    def field(self, name: str, encoding: int, fmt: int = 0) -> None:
        self.meta += name.encode() + b"\0" + (bytes([0x80 | encoding, fmt]) if fmt else bytes([encoding]))

    def struct(self, name: str, count: int) -> None:
        self.field(name, STRUCT, count)

    def str(self, name: str, value: str) -> None:
        self.field(name, STR16)
        raw = value.encode()
        self.data += struct.pack("<H", len(raw)) + raw

    def value(self, name: str, code: str, encoding: int, fmt: int, value: object) -> None:
        self.field(name, encoding, fmt)
        self.data += struct.pack("<" + code, value)

    def event(self, level: int, opcode: int = 0) -> bytes:
        return (struct.pack("<BBHHBB", 0x07, 0, 0, 0, opcode, level) + struct.pack("<HH", len(self.meta), 1)
                + self.meta + self.data)


TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "00f067aa0ba902b7"
T = 1_704_112_496_789_000_000


def decode(provider: str, level: int, raw: bytes) -> Event:
    return EventHeaderDecoder().decode(f"{provider}_L{level:x}K1", raw)


def test_a_log_without_trace_context_or_attributes() -> None:
    h = Hand("Log")
    h.value("__csver__", "I", U32, UNSIGNED, 0x400)
    h.struct("PartA", 1)
    h.str("time", "2024-01-01T12:34:56Z")
    h.struct("PartB", 3)
    h.str("_typeName", "Log")
    h.value("body", "q", U64, SIGNED, 7)
    h.value("severityNumber", "h", U16, SIGNED, 9)
    record = to_otel(decode("p", 4, h.event(4)))
    assert isinstance(record, OtelLog)
    assert (record.body, record.severity_number, record.trace_id, record.span_id, record.attributes) == (
        7, 9, None, None, {})
    assert record.time_unix_nano == 1_704_112_496_000_000_000 and record.event_name is None


def test_the_etw_layout_nests_trace_context_and_cloud_role() -> None:
    h = Hand("Log")
    h.value("__csver__", "H", U16, UNSIGNED, 0x400)
    h.struct("PartA", 3)
    h.struct("ext_dt", 2)
    h.str("traceId", TRACE)
    h.str("spanId", SPAN)
    h.struct("ext_cloud", 2)
    h.str("role", "svc")
    h.str("roleInstance", "i-1")
    h.str("time", "2024-01-01T13:34:56.789+01:00")
    h.struct("PartC", 1)
    h.str("k", "v")
    h.struct("PartB", 3)
    h.str("_typeName", "Log")
    h.str("body", "b")
    h.value("severityNumber", "h", U16, SIGNED, 17)
    record = to_otel(decode("p", 2, h.event(2)))
    assert isinstance(record, OtelLog)
    assert record.trace_id == bytes.fromhex(TRACE) and record.span_id == bytes.fromhex(SPAN)
    assert record.resource == {"service.name": "svc", "service.instance.id": "i-1"}
    assert record.time_unix_nano == T and record.attributes == {"k": "v"}


def test_an_event_that_is_not_common_schema_is_none() -> None:
    h = Hand("Tick")
    h.value("seq", "I", U32, 0, 1)
    h.struct("PartA", 1)
    h.str("time", "x")
    event = decode("p", 4, h.event(4))
    assert not is_common_schema(event) and to_otel(event) is None
    assert to_otel(Event("p", "e")) is None


@pytest.mark.parametrize("nanos, text", [
    (T, "2024-01-01T12:34:56.789Z"),
    (1_704_112_496_000_000_000, "2024-01-01T12:34:56Z"),
    (1_704_112_496_000_001_000, "2024-01-01T12:34:56.000001Z"),
    (1_704_112_496_000_000_001, "2024-01-01T12:34:56.000000001Z"),
])
def test_time_text_as_chrono_autosi_writes_it(nanos: int, text: str) -> None:
    assert format_time(nanos) == text
    assert parse_time(text) == nanos


def test_bad_times_are_none() -> None:
    assert parse_time("yesterday") is None and parse_time(None) is None and parse_time("2024-01-01T12:34:56+1") is None


@pytest.mark.parametrize("severity, level", [(0, 0), (1, 5), (8, 5), (9, 4), (12, 4), (13, 3), (17, 2), (21, 1),
                                             (24, 1), (25, 0)])
def test_severity_to_eventheader_level(severity: int, level: int) -> None:
    assert severity_level(severity) == level


def test_status_unset_when_success() -> None:
    h = Hand("Span")
    h.value("__csver__", "I", U32, UNSIGNED, 0x400)
    h.struct("PartA", 3)
    h.str("time", "2024-01-01T12:34:56.789Z")
    h.str("ext_dt_traceId", TRACE)
    h.str("ext_dt_spanId", SPAN)
    h.struct("PartB", 5)
    h.str("_typeName", "Span")
    h.str("name", "n")
    h.str("startTime", "2024-01-01T12:34:56.789Z")
    h.value("success", "B", U8, BOOLEAN, 1)
    h.value("kind", "i", U32, UNSIGNED, 0)
    span = to_otel(decode("p", 4, h.event(4)))
    assert isinstance(span, OtelSpan)
    assert (span.status_code, span.kind, span.parent_span_id, span.links) == (STATUS_UNSET, 1, None, [])
