"""OTLP messages built with opentelemetry-proto's own classes: log records, spans, resources, export requests.

This is the reference form. The `otlp` action builds its one record per firing here; the forwarder's hot path
(dyntel.otel.otlp_wire) writes the same bytes by hand, and the tests hold the two to each other. A batch is sent as
one ExportLogsServiceRequest whose records were serialized one by one: protobuf's encoding of a repeated field is
the concatenation of its items, so records stored as bytes (the spool) join a request without being parsed again.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, cast

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from dyntel.otel.records import OtelLog, OtelSpan

# SeverityNumber of each severity word a rule may write (the first number of each range of the data model).
SEVERITY_NUMBERS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
SCOPE_NAME = "dyntel"

ExportLogsServiceRequest = logs_service_pb2.ExportLogsServiceRequest
ExportLogsServiceResponse = logs_service_pb2.ExportLogsServiceResponse
ExportTraceServiceRequest = trace_service_pb2.ExportTraceServiceRequest
ExportTraceServiceResponse = trace_service_pb2.ExportTraceServiceResponse
LogRecord = logs_pb2.LogRecord
Span = trace_pb2.Span


def default_resource() -> dict[str, Any]:
    """The resource dyntel's own records (alerts, forwarded non-Common-Schema events) carry."""
    return {"service.name": "dyntel", "host.name": socket.gethostname()}


def any_value(value: Any) -> Any:
    """An AnyValue for a Python value; bool before int (a bool is an int), other types as their text."""
    v = common_pb2.AnyValue()
    if value is None:
        return v
    if isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            v.int_value = value
        else:  # a u64 above int64's range: OTLP has no unsigned type, and a wrapped number would mislead
            v.string_value = str(value)
    elif isinstance(value, float):
        v.double_value = value
    elif isinstance(value, str):
        v.string_value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    elif isinstance(value, bytes | bytearray):
        v.bytes_value = bytes(value)
    elif isinstance(value, Mapping):
        v.kvlist_value.values.extend(key_values(value))
    elif isinstance(value, list | tuple):
        v.array_value.values.extend(any_value(x) for x in value)
    else:
        v.string_value = str(value)
    return v


def key_values(attributes: Mapping[str, Any]) -> list[Any]:
    return [common_pb2.KeyValue(key=str(k), value=any_value(v)) for k, v in attributes.items()]


def resource(attributes: Mapping[str, Any]) -> Any:
    return resource_pb2.Resource(attributes=key_values(attributes))


def scope(name: str | None) -> Any:
    return common_pb2.InstrumentationScope(name=name or "")


def log_record(log: OtelLog) -> Any:
    r = LogRecord(time_unix_nano=log.time_unix_nano, severity_number=cast(Any, log.severity_number),
                  attributes=key_values(log.attributes), flags=log.flags)
    if log.observed_time_unix_nano:
        r.observed_time_unix_nano = log.observed_time_unix_nano
    if log.severity_text:
        r.severity_text = log.severity_text
    if log.body is not None:
        r.body.CopyFrom(any_value(log.body))
    if log.trace_id:
        r.trace_id = log.trace_id
    if log.span_id:
        r.span_id = log.span_id
    if log.event_name:
        r.event_name = log.event_name
    return r


def span(s: OtelSpan) -> Any:
    m = Span(trace_id=s.trace_id, span_id=s.span_id, name=s.name, kind=cast(Any, s.kind),
             start_time_unix_nano=s.start_time_unix_nano, end_time_unix_nano=s.end_time_unix_nano,
             attributes=key_values(s.attributes))
    if s.parent_span_id:
        m.parent_span_id = s.parent_span_id
    if s.status_code or s.status_message:
        m.status.code = cast(Any, s.status_code)
        if s.status_message:
            m.status.message = s.status_message
    for trace_id, span_id in s.links:
        m.links.add(trace_id=trace_id, span_id=span_id)
    return m


def logs_request(resource_attributes: Mapping[str, Any], scope_name: str | None, records: list[Any]) -> Any:
    """One ExportLogsServiceRequest holding `records` (LogRecord messages) under one resource and scope."""
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.CopyFrom(resource(resource_attributes))
    sl = rl.scope_logs.add()
    sl.scope.CopyFrom(scope(scope_name))
    sl.log_records.extend(records)
    return request
