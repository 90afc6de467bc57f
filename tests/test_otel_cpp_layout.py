"""The OpenTelemetry C++ user_events logs exporter's layout (opentelemetry-cpp-contrib exporters/user_events,
src/recordable.cc): `__csver__` u16 0x400, then PartB {_typeName "Log", severityNumber u16, severityText, eventId
(when the record has an EventId), body} and PartC (the attributes), and no PartA at all; the event is named after
the record's event name, or "Logs". No C++ exporter can be built here, so its bytes are built with dyntel's
producer as a layout fixture only; dyntel must take them for Common Schema by what is present and map them to the
records the application logged (time from the sample, as the exporter relies on the tracepoint's own timestamp)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from dyntel.decoders.eventheader import EventHeaderDecoder
from dyntel.event import Event
from dyntel.otel import OtelLog, is_common_schema, to_otel
from dyntel.otel.otlp_events import EventEncoder
from dyntel.producer import CaptureSink, capture_pair
from dyntel.producer.fields import BOOL8, F64, I64, STR8, U16, Field, struct_of

SAMPLE_TIME = 1_796_561_848_000_000_123


@pytest.fixture
def capture() -> Iterator[tuple[CaptureSink, socket.socket]]:
    sink, reader = capture_pair()
    yield sink, reader
    os.close(sink.fd)
    reader.close()


def cpp_log(capture: tuple[CaptureSink, socket.socket], event_name: str, level: int, part_b: list[Field],
            b_values: list[Any], part_c: list[Field], c_values: list[Any]) -> Event:
    """One event in the C++ exporter's layout, through dyntel's producer, decoded as `dyntel run` decodes it."""
    from dyntel.producer import Provider

    sink, reader = capture
    fields = [Field("__csver__", U16), Field("PartB", struct_of(*part_b))]
    values: list[Any] = [0x400, tuple(b_values)]
    if part_c:
        fields.append(Field("PartC", struct_of(*part_c)))
        values.append(tuple(c_values))
    with Provider("opentelemetry_logs", sink=sink) as provider:
        assert provider.event(event_name, fields, level=level, keyword=1).write(values)
        [(name, raw)] = sink.receive(reader)
    event = EventHeaderDecoder().decode(name, raw)
    event.time, event.time_is_wall = SAMPLE_TIME, True  # the perf sample's time
    return event


def test_a_cpp_log_with_event_name_and_attributes_maps_to_the_record(
        capture: tuple[CaptureSink, socket.socket]) -> None:
    event = cpp_log(
        capture, "checkout.failed", 2,
        [Field("_typeName", STR8), Field("severityNumber", U16), Field("severityText", STR8),
         Field("eventId", I64), Field("body", STR8)],
        ["Log", 18, "ERROR2", 7001, "payment declined"],
        [Field("order.id", STR8), Field("retry", BOOL8), Field("attempt", I64), Field("amount", F64)],
        ["1042", 1, 3, 99.5])
    assert "PartA" not in event.fields and is_common_schema(event)
    assert to_otel(event) == OtelLog(
        time_unix_nano=SAMPLE_TIME, observed_time_unix_nano=None, severity_number=18, severity_text="ERROR2",
        body="payment declined", attributes={"order.id": "1042", "retry": True, "attempt": 3, "amount": 99.5,
                                             "event_id": 7001},
        trace_id=None, span_id=None, flags=0, event_name="checkout.failed", resource={}, scope_name=None)


def test_a_cpp_log_without_event_name_or_attributes(capture: tuple[CaptureSink, socket.socket]) -> None:
    # TRACE2: the level says only "verbose"; Part B's severityNumber is what the application logged.
    event = cpp_log(capture, "Logs", 5,
                    [Field("_typeName", STR8), Field("severityNumber", U16), Field("severityText", STR8),
                     Field("body", STR8)], ["Log", 2, "TRACE2", "tick"], [], [])
    record = to_otel(event)
    assert isinstance(record, OtelLog)
    assert (record.severity_number, record.severity_text, record.body, record.event_name, record.attributes) == (
        2, "TRACE2", "tick", None, {})
    assert record.time_unix_nano == SAMPLE_TIME


def test_cpp_logs_are_forwarded_as_the_records_they_were(capture: tuple[CaptureSink, socket.socket]) -> None:
    event = cpp_log(
        capture, "login", 4,
        [Field("_typeName", STR8), Field("severityNumber", U16), Field("severityText", STR8),
         Field("body", STR8)], ["Log", 10, "INFO2", "alice logged in"],
        [Field("user", STR8), Field("mfa", BOOL8)], ["alice", 1])
    request = ExportLogsServiceRequest.FromString(EventEncoder().requests([event])["logs"])
    [record] = [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert (record.severity_number, record.severity_text, record.body.string_value, record.event_name) == (
        10, "INFO2", "alice logged in", "login")
    assert record.time_unix_nano == SAMPLE_TIME
    attrs = {kv.key: kv.value for kv in record.attributes}
    assert attrs["user"].string_value == "alice" and attrs["mfa"].bool_value is True
    assert set(attrs) == {"user", "mfa"}  # Part B's fields are the record's, not attributes


def test_parts_in_any_order_and_a_part_a_alone() -> None:
    from dyntel.event import Encoding, FieldInfo, Format, Schema

    part = Schema((FieldInfo("time", Encoding.STRING_LENGTH16_CHAR8, Format.DEFAULT),))
    schema = Schema((FieldInfo("__csver__", Encoding.VALUE16), FieldInfo("PartA", Encoding.STRUCT, children=part)))
    event = Event("p", "Custom", schema, [0x400, ["2024-01-01T12:34:56Z"]], level=3)
    record = to_otel(event)
    assert isinstance(record, OtelLog)
    # No Part B: a log with the time Part A gives and the severity the level gives (WARN), named after the event.
    assert (record.time_unix_nano, record.severity_number, record.event_name) == (1_704_112_496_000_000_000, 13,
                                                                                   "Custom")
    assert not is_common_schema(Event("p", "x", Schema((FieldInfo("__csver__", Encoding.VALUE16),)), [0x400]))
