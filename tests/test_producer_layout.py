"""The bytes the log and span processors write, against the layout the Rust user_events exporters prescribe, built
here by hand with struct.pack from that layout, not with dyntel's encoder.

Sources of the layout: opentelemetry-rust-contrib's opentelemetry-user-events-logs/src/logs/exporter.rs and
opentelemetry-user-events-trace/src/trace/exporter.rs (which fields, in which order, with which add_* call and
format) and LinuxTracepoints-Rust's eventheader_dynamic/src/builder.rs (what add_value/add_str/add_struct append:
name, NUL, encoding byte, 0x80|encoding plus a format byte when the format is not default; a bool is Value8, an
i32/u32 Value32, an i16 Value16, i64/f64 Value64, a str StringLength16Char8 = uint16 length + UTF-8) and
eventheader/src/_internal.rs (write_index, eventheader, metadata extension, payload).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from dyntel.producer import CaptureSink, capture_pair
from dyntel.producer.otel import UserEventsLogProcessor, UserEventsSpanProcessor

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7
Capture = tuple[CaptureSink, socket.socket]
TIME = 1_704_112_496_789_000_000  # 2024-01-01T12:34:56.789Z


def s(text: str) -> bytes:
    """A StringLength16Char8 value."""
    raw = text.encode()
    return struct.pack("<H", len(raw)) + raw


def header(level: int) -> bytes:
    # flags pointer64|little_endian|extension, version 0, id 0, tag 0, opcode Info (0), level
    return struct.pack("<BBHHBB", 0x07, 0, 0, 0, 0, level)


def with_metadata(level: int, meta: bytes, payload: bytes) -> bytes:
    return header(level) + struct.pack("<HH", len(meta), 0x0001) + meta + payload


@pytest.fixture
def resource() -> Resource:
    return Resource({"service.name": "checkout", "service.instance.id": "pod-1", "host.name": "h"})


@pytest.fixture
def capture() -> Iterator[Capture]:
    sink, reader = capture_pair()
    yield sink, reader
    os.close(sink.fd)
    reader.close()


def test_a_log_record_is_written_as_the_rust_exporter_writes_it(capture: Capture, resource: Resource) -> None:
    sink, reader = capture
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(UserEventsLogProcessor("myprovider", sink=sink))
    context = set_span_in_context(NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1))))
    provider.get_logger("scope").emit(
        timestamp=TIME, context=context, severity_number=SeverityNumber.ERROR, severity_text="ERROR",
        body="payment failed", attributes={"user": "alice", "amount": 42, "retry": True, "ratio": 0.25,
                                           "event_id": 7},
        event_name="checkout.failure")
    [(name, raw)] = sink.receive(reader)
    assert name == "myprovider_L2K1"  # ERROR -> Level::Error (2), keyword 1

    meta = (
        b"Log\0"
        + b"__csver__\0" + b"\x84\x01"            # add_value(u32, UnsignedInt): Value32 + format
        + b"PartA\0" + b"\x81\x05"                # add_struct_with_bookmark, count set to 5
        + b"time\0\x0a"                          # add_str, Default format: no format byte
        + b"ext_dt_traceId\0\x0a"
        + b"ext_dt_spanId\0\x0a"
        + b"ext_cloud_role\0\x0a"
        + b"ext_cloud_roleInstance\0\x0a"
        + b"PartC\0" + b"\x81\x04"                # event_id is not in Part C
        + b"user\0\x0a"
        + b"amount\0" + b"\x85\x02"               # i64, SignedInt
        + b"retry\0" + b"\x82\x07"                # bool: Value8, Boolean
        + b"ratio\0" + b"\x85\x08"                # f64, Float
        + b"PartB\0" + b"\x81\x06"
        + b"_typeName\0\x0a"
        + b"body\0\x0a"
        + b"severityNumber\0" + b"\x83\x02"       # i16, SignedInt
        + b"severityText\0\x0a"
        + b"eventId\0" + b"\x85\x02"              # i64, SignedInt
        + b"name\0\x0a"
    )
    payload = (
        struct.pack("<I", 1024)
        + s("2024-01-01T12:34:56.789Z") + s("0af7651916cd43dd8448eb211c80319c") + s("00f067aa0ba902b7")
        + s("checkout") + s("pod-1")
        + s("alice") + struct.pack("<q", 42) + b"\x01" + struct.pack("<d", 0.25)
        + s("Log") + s("payment failed") + struct.pack("<h", 17) + s("ERROR") + struct.pack("<q", 7)
        + s("checkout.failure")
    )
    assert raw == with_metadata(2, meta, payload)


def test_a_log_without_context_attributes_or_resource(capture: Capture) -> None:
    sink, reader = capture
    provider = LoggerProvider(resource=Resource({}))
    provider.add_log_record_processor(UserEventsLogProcessor("p", sink=sink))
    provider.get_logger("scope").emit(timestamp=TIME, severity_number=SeverityNumber.DEBUG, body=12)
    [(name, raw)] = sink.receive(reader)
    assert name == "p_L5K1"
    meta = (b"Log\0" + b"__csver__\0\x84\x01" + b"PartA\0\x81\x01" + b"time\0\x0a"
            + b"PartB\0\x81\x03" + b"_typeName\0\x0a" + b"body\0\x85\x02" + b"severityNumber\0\x83\x02")
    payload = struct.pack("<I", 1024) + s("2024-01-01T12:34:56.789Z") + s("Log") + struct.pack("<qh", 12, 5)
    assert raw == with_metadata(5, meta, payload)


def test_a_span_is_written_as_the_rust_exporter_writes_it(capture: Capture, resource: Resource) -> None:
    sink, reader = capture
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(UserEventsSpanProcessor("myprovider", sink=sink))
    parent = set_span_in_context(NonRecordingSpan(SpanContext(TRACE_ID, 0x1111111111111111, False,
                                                                TraceFlags(1))))
    span = provider.get_tracer("t").start_span("GET /cart", context=parent, kind=SpanKind.CLIENT,
                                               attributes={"http.request.method": "GET", "retries": 2},
                                               start_time=TIME)
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span_id = span.get_span_context().span_id
    span.end(end_time=TIME + 1_000_000_000)
    [(name, raw)] = sink.receive(reader)
    assert name == "myprovider_L4K1"
    meta = (
        b"Span\0"
        + b"__csver__\0\x84\x01"
        + b"PartA\0\x81\x05" + b"time\0\x0a" + b"ext_dt_traceId\0\x0a" + b"ext_dt_spanId\0\x0a"
        + b"ext_cloud_role\0\x0a" + b"ext_cloud_roleInstance\0\x0a"
        + b"PartB\0\x81\x08" + b"_typeName\0\x0a" + b"name\0\x0a" + b"startTime\0\x0a"
        + b"success\0\x82\x07"                    # bool, Boolean
        + b"kind\0\x84\x01"                       # integer literal (i32), UnsignedInt
        + b"parentId\0\x0a" + b"httpMethod\0\x0a" + b"statusMessage\0\x0a"
        + b"PartC\0\x81\x01" + b"retries\0\x85\x02"
    )
    payload = (
        struct.pack("<I", 1024) + s("2024-01-01T12:34:57.789Z") + s(f"{TRACE_ID:032x}") + s(f"{span_id:016x}")
        + s("checkout") + s("pod-1")
        + s("Span") + s("GET /cart") + s("2024-01-01T12:34:56.789Z") + b"\x00" + struct.pack("<I", 2)
        + s("1111111111111111") + s("GET") + s("boom")
        + struct.pack("<q", 2)
    )
    assert raw == with_metadata(4, meta, payload)


def test_nothing_is_encoded_while_the_tracepoint_is_disabled(capture: Capture) -> None:
    sink, reader = capture
    processor = UserEventsLogProcessor("p", sink=sink)
    provider = LoggerProvider()
    provider.add_log_record_processor(processor)
    sink.set_enabled("p_L4K1", False)
    logger = provider.get_logger("scope")
    assert not logger.enabled(severity_number=SeverityNumber.INFO)
    assert logger.enabled(severity_number=SeverityNumber.WARN)
    logger.emit(severity_number=SeverityNumber.INFO, body=object())  # unencodable: proves it was not encoded
    assert sink.receive(reader) == [] and processor.writer.errors == 0
    logger.emit(severity_number=SeverityNumber.UNSPECIFIED, body="x")
    logger.emit(body="no severity")
    assert sink.receive(reader) == [] and processor.writer.dropped == 2
