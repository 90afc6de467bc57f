"""Common Schema events (the layout OpenTelemetry's user_events and ETW exporters write) to OpenTelemetry records.

An exporter writes each log record or span as one event whose payload is:

    __csver__   u32 0x400
    PartA       struct: time (RFC 3339 text, UTC, 'Z'), the trace context and the service's cloud role
    PartB       struct: _typeName "Log" or "Span", then the record's own well-known fields
    PartC       struct, only when there are attributes: one field per attribute (bool, i64, f64, or text)

An event is taken for Common Schema by what is present: `__csver__` and whichever Parts are there, in any order
(docs/otel.md lists what each known exporter writes). The Rust logs exporter writes A, C, B; the OpenTelemetry C++
user_events logs exporter writes no Part A at all (so no time, trace context or service: the time is then the
sample's) and names the event after the record's event name, or "Logs".

The user_events exporters (opentelemetry-user-events-logs/-trace, Rust) put the trace context and role in Part A
directly (`ext_dt_traceId`, `ext_dt_spanId`, `ext_cloud_role`, `ext_cloud_roleInstance`); the ETW exporters
(opentelemetry-etw-logs/-traces) nest them (`ext_dt: {traceId, spanId}`, `ext_cloud: {role, roleInstance}`) and
may put Part C before Part B. Both are read here, from `Event.fields` alone, so that any source's decoder can use it.

What the layout does not carry comes back empty: observed time, trace flags, the instrumentation scope, and
resource attributes beyond the cloud role (an exporter told to copy some into Part C makes them attributes).
A span's status is `success` (true for OK and UNSET) plus an error message, so OK comes back as UNSET.
"""

from __future__ import annotations

import calendar
import json
import time
from typing import Any

from dyntel.event import Event, Format, Schema, fields_as_dict, schema_cached
from dyntel.otel.records import STATUS_ERROR, STATUS_UNSET, OtelLog, OtelSpan

__all__ = [
    "CS_VERSION",
    "SPAN_WELL_KNOWN_ATTRIBUTES",
    "hex_id",
    "is_common_schema",
    "parse_time",
    "severity_level",
    "to_otel",
]

CS_VERSION = 0x400

# Span attributes the Rust user_events span exporter moves into Part B, under these names.
SPAN_WELL_KNOWN_ATTRIBUTES = {
    "db.system.name": "dbSystem",
    "db.namespace": "dbName",
    "db.query.text": "dbStatement",
    "http.request.method": "httpMethod",
    "url.full": "httpUrl",
    "http.response.status_code": "httpStatusCode",
    "messaging.system": "messagingSystem",
    "messaging.destination.name": "messagingDestination",
    "messaging.url": "messagingUrl",
    "rpc.system.name": "rpcSystem",
    "rpc.response.status_code": "rpcGrpcStatusCode",
}
_SPAN_PART_B_TO_ATTRIBUTE = {v: k for k, v in SPAN_WELL_KNOWN_ATTRIBUTES.items()}

# EventHeader level to the lowest SeverityNumber of its range (FATAL, ERROR, WARN, INFO, DEBUG): the inverse of
# severity_level, used only when Part B carries no severityNumber.
_LEVEL_SEVERITY = {1: 21, 2: 17, 3: 13, 4: 9, 5: 5}

_FILETIME_UNIX_EPOCH = 116444736000000000  # 100 ns intervals from 1601 to 1970


def severity_level(severity_number: int) -> int:
    """The EventHeader level (1 critical .. 5 verbose) the exporters use for an OTel SeverityNumber; 0 for none."""
    if severity_number <= 0 or severity_number > 24:
        return 0
    if severity_number <= 8:  # TRACE*, DEBUG*
        return 5
    if severity_number <= 12:  # INFO*
        return 4
    if severity_number <= 16:  # WARN*
        return 3
    if severity_number <= 20:  # ERROR*
        return 2
    return 1  # FATAL*


def parse_time(value: Any) -> int | None:
    """Nanoseconds since the Unix epoch from Part A's time: RFC 3339 text (any offset, any fraction digits), or a
    FILETIME integer; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value - _FILETIME_UNIX_EPOCH) * 100
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:
        seconds = calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    rest = value[19:]
    nanos = 0
    if rest.startswith("."):
        digits = 0
        while 1 + digits < len(rest) and rest[1 + digits].isdigit():
            digits += 1
        fraction = rest[1 : 1 + digits][:9]
        nanos = int(fraction.ljust(9, "0")) if fraction else 0
        rest = rest[1 + digits :]
    if rest in ("Z", "z", ""):
        offset = 0
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        try:
            offset = (int(rest[1:3]) * 60 + int(rest[4:6])) * 60 * (1 if rest[0] == "+" else -1)
        except ValueError:
            return None
    else:
        return None
    return (seconds - offset) * 1_000_000_000 + nanos


def hex_id(value: Any, size: int) -> bytes | None:
    """A trace or span id as Part A holds it (hex text, or the bytes of a binary field); None for none or zero."""
    if isinstance(value, bytes) and len(value) == size:  # a GUID or binary field
        return value
    if not isinstance(value, str) or len(value) != size * 2:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if any(raw) else None


PARTS = ("PartA", "PartB", "PartC")
# Event names that say nothing of the record: the Rust logs exporter names every log event "Log" (the record's
# event name is Part B's `name`), the C++ logs exporter names it "Logs" when the record has no event name.
_GENERIC_EVENT_NAMES = frozenset(("Log", "Logs", "Span"))


def is_common_schema(event: Event) -> bool:
    """Whether the event is a Common Schema record, by what is present: `__csver__` and at least one of Part A,
    B and C as a struct, in any order. Exporters differ in which Parts they write (the C++ logs exporter writes no
    Part A) and in their order (Rust: A, C, B for logs), so no one exporter's full layout is required."""
    fields = event.fields
    return "__csver__" in fields and any(isinstance(fields.get(part), dict) for part in PARTS)


def to_otel(event: Event) -> OtelLog | OtelSpan | None:
    """The OpenTelemetry record a Common Schema event holds; None when the event is not one (or holds neither a
    log nor a span)."""
    if not is_common_schema(event):
        return None
    fields = _payload(event)
    part_a_value, part_b_value = fields.get("PartA"), fields.get("PartB")
    part_a: dict[str, Any] = part_a_value if isinstance(part_a_value, dict) else {}
    part_b: dict[str, Any] = part_b_value if isinstance(part_b_value, dict) else {}
    part_c = fields.get("PartC")
    attributes: dict[str, Any] = dict(part_c) if isinstance(part_c, dict) else {}
    type_name = part_b.get("_typeName")
    if type_name == "Span":
        return _span(event, part_a, part_b, attributes)
    if type_name == "Log" or type_name is None:
        return _log(event, part_a, part_b, attributes)
    return None


def _has_boolean(schema: Schema) -> bool:
    return any(f.format == Format.BOOLEAN or (f.children is not None and _has_boolean(f.children))
               for f in schema.fields)


def _as_dict(schema: Schema, values: Any) -> dict[str, Any]:
    """Event.fields, but with boolean-formatted integers as bools."""
    return fields_as_dict(schema, values, booleans=True)


def _payload(event: Event) -> dict[str, Any]:
    if schema_cached(event.schema, "otel.has_boolean", _has_boolean):
        return _as_dict(event.schema, event.values)
    return event.fields


def _trace_context(part_a: dict[str, Any]) -> tuple[Any, Any]:
    nested = part_a.get("ext_dt")
    if isinstance(nested, dict):
        return nested.get("traceId"), nested.get("spanId")
    return part_a.get("ext_dt_traceId"), part_a.get("ext_dt_spanId")


def _resource(part_a: dict[str, Any]) -> dict[str, Any]:
    nested = part_a.get("ext_cloud")
    if isinstance(nested, dict):
        role, instance = nested.get("role"), nested.get("roleInstance")
    else:
        role, instance = part_a.get("ext_cloud_role"), part_a.get("ext_cloud_roleInstance")
    resource: dict[str, Any] = {}
    if role is not None:
        resource["service.name"] = role
    if instance is not None:
        resource["service.instance.id"] = instance
    return resource


def _event_time(event: Event, part_a: dict[str, Any]) -> int:
    t = parse_time(part_a.get("time"))
    if t is not None:
        return t
    return event.time if event.time is not None and event.time_is_wall else 0


def _log(event: Event, part_a: dict[str, Any], part_b: dict[str, Any], attributes: dict[str, Any]) -> OtelLog:
    trace_id, span_id = _trace_context(part_a)
    severity = part_b.get("severityNumber")
    if not isinstance(severity, int) or isinstance(severity, bool):
        # No severity in Part B: the EventHeader level says at least the severity's range.
        severity = _LEVEL_SEVERITY.get(event.level or 0, 0)
    event_id = part_b.get("eventId")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        # The exporters take an `event_id` attribute out of Part C and write it as eventId.
        attributes["event_id"] = event_id
    name = part_b.get("name")
    if not (isinstance(name, str) and name.strip()) and event.name not in _GENERIC_EVENT_NAMES:
        name = event.name  # the C++ exporter names the event after the record's event name
    text = part_b.get("severityText")
    return OtelLog(
        time_unix_nano=_event_time(event, part_a),
        observed_time_unix_nano=None,
        severity_number=severity,
        severity_text=text if isinstance(text, str) else None,
        body=part_b.get("body"),
        attributes=attributes,
        trace_id=hex_id(trace_id, 16),
        span_id=hex_id(span_id, 8),
        flags=0,
        event_name=name if isinstance(name, str) and name.strip() else None,
        resource=_resource(part_a),
        scope_name=None,
    )


def _links(value: Any) -> list[tuple[bytes, bytes]]:
    if not isinstance(value, str) or not value:
        return []
    try:
        items = json.loads(value)
    except ValueError:
        return []
    links: list[tuple[bytes, bytes]] = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                t, s = hex_id(item.get("toTraceId"), 16), hex_id(item.get("toSpanId"), 8)
                if t is not None and s is not None:
                    links.append((t, s))
    return links


def _span(event: Event, part_a: dict[str, Any], part_b: dict[str, Any], attributes: dict[str, Any]) -> OtelSpan | None:
    trace_hex, span_hex = _trace_context(part_a)
    trace_id, span_id = hex_id(trace_hex, 16), hex_id(span_hex, 8)
    if trace_id is None or span_id is None:
        return None
    for key, value in part_b.items():
        attribute = _SPAN_PART_B_TO_ATTRIBUTE.get(key)
        if attribute is not None:
            attributes[attribute] = value
    end = _event_time(event, part_a)
    start = parse_time(part_b.get("startTime"))
    kind = part_b.get("kind")
    success = part_b.get("success")
    message = part_b.get("statusMessage")
    name = part_b.get("name")
    return OtelSpan(
        name=name if isinstance(name, str) else "",
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=hex_id(part_b.get("parentId"), 8),
        # Part B's kind is the SDK's SpanKind (INTERNAL = 0); OTLP counts from UNSPECIFIED = 0.
        kind=kind + 1 if isinstance(kind, int) and not isinstance(kind, bool) and 0 <= kind <= 4 else 0,
        start_time_unix_nano=start if start is not None else end,
        end_time_unix_nano=end,
        status_code=STATUS_UNSET if success is None or bool(success) else STATUS_ERROR,
        status_message=message if isinstance(message, str) else None,
        attributes=attributes,
        links=_links(part_b.get("links")),
        resource=_resource(part_a),
        scope_name=None,
    )
