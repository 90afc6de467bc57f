"""Common Schema over ETW: one OpenTelemetry log record, written as the OpenTelemetry ETW exporter lays it out
(TraceLogging, Part A/B/C with nested ext_dt and ext_cloud) and as the user_events exporter does (EventHeader, flat
Part A), comes back from dyntel's two decoders as the same OTel record, so one rule works on both."""

from __future__ import annotations

import os

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from dyntel.decoders.etw_header import EVENT_HEADER_FLAG_64_BIT_HEADER, EVENT_HEADER_FLAG_EXTENDED_INFO, EtwEventHeader
from dyntel.decoders.eventheader import EventHeaderDecoder
from dyntel.decoders.tracelogging import TypeCache, decode_etw_event
from dyntel.encoders.tracelogging import Field, InType, OutType, encode_event
from dyntel.formatting import format_time_rfc3339 as format_time
from dyntel.otel import OtelLog, to_otel
from dyntel.producer import capture_pair
from dyntel.producer.otel import UserEventsLogProcessor
from dyntel.rules.condition import compile_condition

T = 1_700_000_000_123_456_700  # ETW's time text has 100 ns resolution at best; keep both paths exact
ATTRIBUTES = {"user": "alice", "retries": 3, "ok": True, "ratio": 0.25}


def user_events_record() -> tuple[OtelLog, bytes, bytes, object]:
    sink, reader = capture_pair()
    try:
        logs = LoggerProvider(resource=Resource({"service.name": "shop", "service.instance.id": "i-9"}))
        logs.add_log_record_processor(UserEventsLogProcessor("Shop", sink=sink))
        with TracerProvider().get_tracer("t").start_as_current_span("op") as span:
            logs.get_logger("s").emit(timestamp=T, severity_number=SeverityNumber.ERROR, severity_text="ERROR",
                                      body="payment failed", attributes=ATTRIBUTES)
            ctx = span.get_span_context()
        [(name, raw)] = sink.receive(reader)
    finally:
        os.close(sink.fd)
        reader.close()
    event = EventHeaderDecoder().decode(name, raw)
    record = to_otel(event)
    assert isinstance(record, OtelLog)
    return record, ctx.trace_id.to_bytes(16, "big"), ctx.span_id.to_bytes(8, "big"), event


def etw_event(trace_id: bytes, span_id: bytes) -> object:
    """The record as opentelemetry-etw-logs writes it: __csver__, Part A (time, ext_dt, ext_cloud), Part C (the
    attributes), Part B (_typeName, body, severity)."""
    s = InType.UNICODESTRING
    fields = [
        Field("__csver__", InType.UINT16),
        Field("PartA", InType.STRUCT, fields=(
            Field("time", s),
            Field("ext_dt", InType.STRUCT, fields=(Field("traceId", s), Field("spanId", s))),
            Field("ext_cloud", InType.STRUCT, fields=(Field("role", s), Field("roleInstance", s))))),
        Field("PartC", InType.STRUCT, fields=(
            Field("user", s), Field("retries", InType.INT64), Field("ok", InType.UINT32, out=OutType.BOOLEAN),
            Field("ratio", InType.DOUBLE))),
        Field("PartB", InType.STRUCT, fields=(
            Field("_typeName", s), Field("body", s), Field("severityText", s), Field("severityNumber", InType.INT16))),
    ]
    values = [0x400, [format_time(T), [trace_id.hex(), span_id.hex()], ["shop", "i-9"]],
              ["alice", 3, 1, 0.25], ["Log", "payment failed", "ERROR", SeverityNumber.ERROR.value]]
    enc = encode_event("Shop", "Log", fields, values)
    header = EtwEventHeader(provider_id=enc.provider_id, event_id=0, version=0, channel=11, level=2, opcode=0,
                            task=0, keyword=1, time_ns=T, pid=42, tid=43, processor=0, activity_id=bytes(16),
                            flags=EVENT_HEADER_FLAG_EXTENDED_INFO | EVENT_HEADER_FLAG_64_BIT_HEADER,
                            event_property=0)
    return decode_etw_event(header, enc.extended, enc.payload, types=TypeCache())


def test_the_same_record_over_etw_and_user_events() -> None:
    ue, trace_id, span_id, _ = user_events_record()
    etw = to_otel(etw_event(trace_id, span_id))  # type: ignore[arg-type]
    assert isinstance(etw, OtelLog)
    assert ue.trace_id == etw.trace_id == trace_id and ue.span_id == etw.span_id == span_id
    assert etw == ue
    assert etw.attributes == ATTRIBUTES and etw.body == "payment failed" and etw.severity_text == "ERROR"
    assert etw.resource == {"service.name": "shop", "service.instance.id": "i-9"}


def test_one_rule_condition_holds_on_both() -> None:
    _, trace_id, span_id, ue_event = user_events_record()
    etw = etw_event(trace_id, span_id)
    holds = compile_condition('fields.PartC.user == "alice" and fields.PartB.body == "payment failed"')
    assert holds(ue_event) and holds(etw)
