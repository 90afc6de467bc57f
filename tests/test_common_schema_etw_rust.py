"""Common Schema over ETW as opentelemetry-etw-logs 0.12.0 (Rust) lays an event out, field for field from its source
(exporter/part_a.rs, part_b.rs, part_c.rs, common.rs): the exporter itself cannot be made to produce bytes on Linux
(docs/etw.md), so the layout is rebuilt here with dyntel's TraceLogging encoder and read back by dyntel's decoder.

What that source writes, and this test keeps: `__csver__` as a u16; Part A with `ext_dt {traceId, spanId}` (only
with a trace context), `ext_cloud {role, roleInstance}`, and `time` last (RFC 3339, nanoseconds when needed);
Part C before Part B; strings as counted 8-bit strings (`add_str8`, out type default) holding UTF-8; booleans as
BOOL32; integers i64, doubles f64, bytes as binary; arrays and maps as "" (without the crate's `serde_json`
feature, its default); Part B `_typeName`, body, `severityNumber` as an i16, severityText, `eventId` (i64, taken
from an `event_id` attribute), `name` (the event name)."""

from __future__ import annotations

from dyntel.decoders.etw_header import EVENT_HEADER_FLAG_64_BIT_HEADER, EVENT_HEADER_FLAG_EXTENDED_INFO, EtwEventHeader
from dyntel.decoders.tracelogging import TypeCache, decode_etw_event
from dyntel.encoders.tracelogging import Field, InType, encode_event
from dyntel.otel import OtelLog, to_otel

T = 1_700_000_000_123_456_789
TIME_TEXT = "2023-11-14T22:13:20.123456789Z"  # chrono's to_rfc3339_opts(AutoSi, true)
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "00f067aa0ba902b7"
S = InType.COUNTEDANSISTRING  # tracelogging_dynamic's add_str8


def decode(fields: list[Field], values: list[object], level: int = 2) -> object:
    enc = encode_event("otel_etw", "Log", fields, values)
    header = EtwEventHeader(provider_id=enc.provider_id, event_id=0, version=0, channel=11, level=level, opcode=0,
                            task=0, keyword=1, time_ns=T + 5_000, pid=42, tid=43, processor=0,
                            activity_id=bytes(16), flags=EVENT_HEADER_FLAG_EXTENDED_INFO
                            | EVENT_HEADER_FLAG_64_BIT_HEADER, event_property=0)
    return decode_etw_event(header, enc.extended, enc.payload, types=TypeCache())


def test_a_log_as_opentelemetry_etw_logs_writes_it() -> None:
    fields = [
        Field("__csver__", InType.UINT16),
        Field("PartA", InType.STRUCT, fields=(
            Field("ext_dt", InType.STRUCT, fields=(Field("traceId", S), Field("spanId", S))),
            Field("ext_cloud", InType.STRUCT, fields=(Field("role", S), Field("roleInstance", S))),
            Field("time", S))),
        Field("PartC", InType.STRUCT, fields=(
            Field("user", S), Field("retries", InType.INT64), Field("ok", InType.BOOL32),
            Field("ratio", InType.DOUBLE), Field("blob", InType.COUNTEDBINARY), Field("tags", S))),
        Field("PartB", InType.STRUCT, fields=(
            Field("_typeName", S), Field("body", S), Field("severityNumber", InType.INT16),
            Field("severityText", S), Field("eventId", InType.INT64), Field("name", S))),
    ]
    values = [0x400, [[TRACE, SPAN], ["checkout", "pod-7"], TIME_TEXT],
              ["\u00fcn\u00ef", 3, 1, 0.25, b"\xde\xad", ""],
              ["Log", "payment declined \u2013 order 1042", 17, "ERROR", 7001, "checkout.failed"]]
    record = to_otel(decode(fields, values))  # type: ignore[arg-type]
    assert isinstance(record, OtelLog)
    assert record.time_unix_nano == T
    assert (record.severity_number, record.severity_text) == (17, "ERROR")
    assert record.body == "payment declined \u2013 order 1042"  # UTF-8 in an 8-bit string: read as UTF-8
    assert record.event_name == "checkout.failed"
    assert record.trace_id == bytes.fromhex(TRACE) and record.span_id == bytes.fromhex(SPAN)
    assert record.resource == {"service.name": "checkout", "service.instance.id": "pod-7"}
    assert record.attributes == {"user": "\u00fcn\u00ef", "retries": 3, "ok": True, "ratio": 0.25,
                                 "blob": b"\xde\xad", "tags": "", "event_id": 7001}


def test_a_log_without_trace_context_or_service() -> None:
    # No trace context: Part A is ext_cloud (when the resource has a service) and time; no service: time alone.
    fields = [
        Field("__csver__", InType.UINT16),
        Field("PartA", InType.STRUCT, fields=(Field("time", S),)),
        Field("PartB", InType.STRUCT, fields=(
            Field("_typeName", S), Field("severityNumber", InType.INT16))),
    ]
    record = to_otel(decode(fields, [0x400, [TIME_TEXT], ["Log", 9]], level=4))  # type: ignore[arg-type]
    assert isinstance(record, OtelLog)
    assert (record.time_unix_nano, record.severity_number, record.body) == (T, 9, None)
    assert record.trace_id is None and record.span_id is None and record.resource == {}
    assert record.attributes == {}
