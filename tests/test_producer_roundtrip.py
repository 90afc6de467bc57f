"""SDK records through the user_events processors, dyntel's EventHeader decoder and to_otel come back as they were."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from dyntel.decoders.eventheader import EventHeaderDecoder
from dyntel.otel import OtelLog, OtelSpan, to_otel
from dyntel.otel.records import STATUS_ERROR, STATUS_UNSET
from dyntel.producer import CaptureSink, capture_pair
from dyntel.producer.otel import UserEventsLogProcessor, UserEventsSpanProcessor

RESOURCE = Resource({"service.name": "shop", "service.instance.id": "i-9"})


@pytest.fixture
def capture() -> Iterator[tuple[CaptureSink, socket.socket]]:
    sink, reader = capture_pair()
    yield sink, reader
    os.close(sink.fd)
    reader.close()


def decoded(sink: CaptureSink, reader: socket.socket) -> list[OtelLog | OtelSpan | None]:
    d = EventHeaderDecoder()
    return [to_otel(d.decode(name, raw)) for name, raw in sink.receive(reader)]


@pytest.mark.parametrize("severity", list(SeverityNumber)[1:])
def test_logs_of_every_severity_come_back(capture: tuple[CaptureSink, socket.socket],
                                          severity: SeverityNumber) -> None:
    sink, reader = capture
    logs = LoggerProvider(resource=RESOURCE)
    logs.add_log_record_processor(UserEventsLogProcessor("rt", sink=sink))
    traces = TracerProvider(resource=RESOURCE)
    attributes = {"user": "bob", "n": -3, "ok": False, "r": 1e-3, "event_id": 5}
    with traces.get_tracer("t").start_as_current_span("op") as span:
        logs.get_logger("s").emit(timestamp=1_700_000_000_123_456_789, severity_number=severity,
                                  severity_text=severity.name, body="héllo", attributes=attributes)
        ctx = span.get_span_context()
    assert decoded(sink, reader) == [OtelLog(
        time_unix_nano=1_700_000_000_123_456_789, observed_time_unix_nano=None, severity_number=severity.value,
        severity_text=severity.name, body="héllo", attributes=attributes, trace_id=ctx.trace_id.to_bytes(16, "big"),
        span_id=ctx.span_id.to_bytes(8, "big"), flags=0, event_name=None,
        resource={"service.name": "shop", "service.instance.id": "i-9"}, scope_name=None)]


@pytest.mark.parametrize("body", ["text", 12, 1.5, True])
def test_scalar_bodies_keep_their_type(capture: tuple[CaptureSink, socket.socket], body: object) -> None:
    sink, reader = capture
    logs = LoggerProvider(resource=RESOURCE)
    logs.add_log_record_processor(UserEventsLogProcessor("rt", sink=sink))
    logs.get_logger("s").emit(severity_number=SeverityNumber.INFO, body=body)
    [record] = decoded(sink, reader)
    assert isinstance(record, OtelLog) and record.body == body and type(record.body) is type(body)


def test_spans_come_back(capture: tuple[CaptureSink, socket.socket]) -> None:
    sink, reader = capture
    traces = TracerProvider(resource=RESOURCE)
    traces.add_span_processor(UserEventsSpanProcessor("rt", sink=sink))
    tracer = traces.get_tracer("t")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        linked = parent.get_span_context()
        child = tracer.start_span("child", kind=SpanKind.CONSUMER, links=[Link(linked)],
                                  attributes={"db.system.name": "pg", "x": 1})
        child.set_status(Status(StatusCode.ERROR, "bad"))
        child.end()
    got = decoded(sink, reader)
    assert [s.name for s in got if isinstance(s, OtelSpan)] == ["child", "parent"]
    c, p = got
    assert isinstance(c, OtelSpan) and isinstance(p, OtelSpan)
    assert c.trace_id == p.trace_id == linked.trace_id.to_bytes(16, "big")
    assert c.parent_span_id == p.span_id and p.parent_span_id is None
    assert (c.kind, p.kind) == (SpanKind.CONSUMER.value + 1, SpanKind.SERVER.value + 1)
    assert (c.status_code, c.status_message, p.status_code) == (STATUS_ERROR, "bad", STATUS_UNSET)
    assert c.attributes == {"x": 1, "db.system.name": "pg"}
    assert c.links == [(linked.trace_id.to_bytes(16, "big"), linked.span_id.to_bytes(8, "big"))]
    assert c.start_time_unix_nano == child.start_time and c.end_time_unix_nano == child.end_time
    assert p.resource == {"service.name": "shop", "service.instance.id": "i-9"}
