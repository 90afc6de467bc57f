"""OpenTelemetry log and span records as dyntel hands them on, independent of where they came from.

These carry the OpenTelemetry data model (the OTLP protobuf's numbering), not an SDK's objects, so that a user_events
or ETW decoder can produce them and an OTLP forwarder can send them without either importing the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_CONSUMER",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_UNSPECIFIED",
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_UNSET",
    "OtelLog",
    "OtelSpan",
]

# opentelemetry.proto.trace.v1.Span.SpanKind. The Python SDK's SpanKind enum is these minus one (INTERNAL = 0 there);
# Common Schema's PartB.kind is the SDK's numbering.
SPAN_KIND_UNSPECIFIED = 0
SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
SPAN_KIND_PRODUCER = 4
SPAN_KIND_CONSUMER = 5

# opentelemetry.proto.trace.v1.Status.StatusCode (the SDK's StatusCode has the same values).
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


@dataclass(slots=True)
class OtelLog:
    """One log record. `severity_number` is SeverityNumber (1..24, 0 unspecified)."""

    time_unix_nano: int
    observed_time_unix_nano: int | None
    severity_number: int
    severity_text: str | None
    body: Any  # str | int | float | bool | bytes | list | dict | None
    attributes: dict[str, Any]
    trace_id: bytes | None  # 16 bytes
    span_id: bytes | None  # 8 bytes
    flags: int
    event_name: str | None
    resource: dict[str, Any]  # service.name, service.instance.id from Part A's cloud role fields
    scope_name: str | None


@dataclass(slots=True)
class OtelSpan:
    """One finished span. `kind` is SPAN_KIND_*, `status_code` STATUS_*."""

    name: str
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: int
    status_message: str | None
    attributes: dict[str, Any]
    links: list[tuple[bytes, bytes]]  # (trace_id, span_id)
    resource: dict[str, Any]
    scope_name: str | None
