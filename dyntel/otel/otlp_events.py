"""Decoded events to OTLP records (wire bytes) and export requests: what the forwarder sends.

- A Common Schema event (Part A/B/C, as OpenTelemetry's user_events and ETW exporters write them) becomes the log
  record or span it holds (dyntel.otel.common_schema.to_otel), under its own resource (the service's cloud role)
  and, as scope, the provider it was written to.
- A metric point event (provider `otlp_metrics`, dyntel.decoders.otlp_metrics) becomes a Metric with that one
  point, of its kind and temporality, under its own resource and scope (dyntel.otel.otlp_metrics_wire).
- Any other event becomes a log record: its fields are the attributes (structs as key-value lists, arrays as
  arrays), plus `process.pid` and `thread.id`; `event_name` is `provider:event`; the severity follows the level
  (1 FATAL, 2 ERROR, 3 WARN, 4 INFO, 5 DEBUG, above TRACE); the activity id, when set, is the trace id. Resource:
  dyntel's own (service.name dyntel, host.name); scope: the provider.

Per schema (one per event type), the attribute keys are encoded once and kept on the schema (Schema.cache); per
(provider, event, level) the severity and event name; so an event costs the encoding of its values and little else.
Common Schema logs in the user_events exporters' flat layout (the common case) are read the same way, by a plan
made once per schema that knows where each Part A/B/C field sits, instead of through to_otel's dictionaries;
anything the plan does not know (the ETW layout, a repeated name, an odd time) goes through to_otel. The tests
hold the two to the same records.
"""

from __future__ import annotations

import calendar
import ipaddress
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dyntel.decoders.otlp_metrics import METRIC_PROVIDER
from dyntel.event import ArrayKind, Event, FieldInfo, Format, Schema, fields_as_dict, schema_cached
from dyntel.otel import otlp_wire
from dyntel.otel.common_schema import hex_id, to_otel
from dyntel.otel.otlp_metrics_wire import is_metric_point, metric_record
from dyntel.otel.otlp_proto import default_resource
from dyntel.otel.otlp_transport import LOGS, METRICS, TRACES
from dyntel.otel.otlp_wire import field_bytes, key_bytes
from dyntel.otel.records import OtelLog

# EventHeader/ETW level to (SeverityNumber, text): the inverse of dyntel.otel.common_schema.severity_level.
_LEVELS = {1: (21, "FATAL"), 2: (17, "ERROR"), 3: (13, "WARN"), 4: (9, "INFO"), 5: (5, "DEBUG")}
pack_fixed64 = otlp_wire.pack_fixed64
_KV = b"\x12"
_PID_KEY = key_bytes("process.pid")
_EVENT_ID_KEY = key_bytes("event_id")
_TID_KEY = key_bytes("thread.id")

# One field's attribute: (key bytes, converter of its value or None, index in the values).
_FieldPlan = tuple[bytes, Callable[[Any], Any] | None, int]


def severity(level: int | None) -> tuple[int, str] | None:
    if level is None or level <= 0:
        return None
    return _LEVELS.get(level, (1, "TRACE"))


def _uuid(v: Any) -> Any:
    return str(uuid.UUID(bytes=bytes(v))) if isinstance(v, bytes | bytearray) and len(v) == 16 else v


def _ip(v: Any) -> Any:
    return str(ipaddress.ip_address(bytes(v))) if isinstance(v, bytes | bytearray) and len(v) in (4, 16) else v


def _boolean(v: Any) -> Any:
    return [bool(x) for x in v] if isinstance(v, list) else bool(v) if isinstance(v, int) else v


def _converter(info: FieldInfo) -> Callable[[Any], Any] | None:
    """How a field's decoded value becomes an attribute value, when not as it is."""
    children = info.children
    if children is not None:
        if info.array == ArrayKind.NONE:
            return lambda v: fields_as_dict(children, v)
        return lambda v: [fields_as_dict(children, x) for x in v]
    if info.format == Format.BOOLEAN:
        return _boolean
    if info.format == Format.UUID:
        return (lambda v: [_uuid(x) for x in v]) if info.array != ArrayKind.NONE else _uuid
    if info.format in (Format.IP_ADDRESS, Format.IP_ADDRESS_OBSOLETE):
        return (lambda v: [_ip(x) for x in v]) if info.array != ArrayKind.NONE else _ip
    return None


def _plan(schema: Schema) -> tuple[_FieldPlan, ...]:
    seen: set[str] = set()
    plan = []
    for i, info in enumerate(schema.fields):
        if info.name in seen:  # a repeated name: the first wins, as in Event.fields
            continue
        seen.add(info.name)
        plan.append((key_bytes(info.name), _converter(info), i))
    return tuple(plan)


def _is_common_schema(schema: Schema) -> bool:
    # By presence, as dyntel.otel.common_schema.is_common_schema: __csver__ and any Part.
    names = schema.names
    return "__csver__" in names and ("PartB" in names or "PartA" in names or "PartC" in names)


class EventEncoder:
    """Encodes events; keeps what repeats. Used from one thread (the forwarder's sender)."""

    def __init__(self, resource: Mapping[str, Any] | None = None) -> None:
        self.resource = otlp_wire.resource(resource if resource is not None else default_resource())
        self._identity: dict[tuple[str, str, int | None], bytes] = {}
        self._cs_resources: dict[tuple[Any, Any], bytes] = {}

    def encode(self, event: Event, observed: int) -> tuple[str, bytes, bytes, bytes]:
        """(signal, resource field, scope field, record bytes) of one event."""
        if event.provider == METRIC_PROVIDER and is_metric_point(event):
            return (METRICS, *metric_record(event))
        if schema_cached(event.schema, "otlp.common_schema", _is_common_schema):
            plan = schema_cached(event.schema, "otlp.cs_log", _cs_log_plan)
            if plan is not None:
                fast = self._cs_log(plan, event, observed)
                if fast is not None:
                    return LOGS, fast[0], otlp_wire.scope(event.provider), fast[1]
            mapped = to_otel(event)
            if mapped is not None:
                scope = otlp_wire.scope(mapped.scope_name or event.provider)
                resource = otlp_wire.resource(mapped.resource)
                if isinstance(mapped, OtelLog):
                    if mapped.observed_time_unix_nano is None:
                        mapped.observed_time_unix_nano = observed
                    return LOGS, resource, scope, otlp_wire.log_record(mapped)
                return TRACES, resource, scope, otlp_wire.span(mapped)
        return LOGS, self.resource, otlp_wire.scope(event.provider), self.log_record(event, observed)

    def log_record(self, event: Event, observed: int) -> bytes:
        """A plain event's LogRecord bytes (fields as attributes)."""
        key = (event.provider, event.name, event.level)
        head = self._identity.get(key)
        if head is None:
            head = self._identity[key] = _identity(event)
        parts = [head]
        if event.time is not None and event.time_is_wall:
            parts.append(b"\x09" + pack_fixed64(event.time))
        parts.append(b"\x59" + pack_fixed64(observed))
        values = event.values
        n = len(values)
        any_value = otlp_wire.any_value
        for key_field, convert, i in schema_cached(event.schema, "otlp.fields", _plan):
            if i >= n:
                break
            value = values[i]
            if value is None:
                continue
            if convert is not None:
                value = convert(value)
            parts.append(field_bytes(b"\x32", key_field + field_bytes(_KV, any_value(value))))
        if event.pid is not None:
            parts.append(field_bytes(b"\x32", _PID_KEY + field_bytes(_KV, any_value(event.pid))))
        if event.tid is not None:
            parts.append(field_bytes(b"\x32", _TID_KEY + field_bytes(_KV, any_value(event.tid))))
        activity = event.activity
        if activity and len(activity) == 16 and any(activity):
            parts.append(b"\x4a\x10" + bytes(activity))
        return b"".join(parts)

    def _cs_log(self, plan: _CsPlan, event: Event, observed: int) -> tuple[bytes, bytes] | None:
        """(resource field, LogRecord bytes) of a Common Schema log by its schema's plan; None to use to_otel."""
        values = event.values
        try:
            a = values[plan.part_a]
            b = values[plan.part_b]
            if plan.type_name is not None and b[plan.type_name] != "Log":
                return None
            when = _rfc3339(a[plan.time]) if plan.time is not None else None
        except (IndexError, TypeError, ValueError):
            return None
        if when is None:
            return None
        parts = [b"\x09" + pack_fixed64(when), b"\x59" + pack_fixed64(observed)]
        severity = b[plan.severity_number] if plan.severity_number is not None else None
        if type(severity) is int and severity:
            parts.append(b"\x10" + otlp_wire.varint(severity & 0xFFFFFFFFFFFFFFFF))
        text = b[plan.severity_text] if plan.severity_text is not None else None
        if type(text) is str and text:
            parts.append(field_bytes(b"\x1a", otlp_wire.text_bytes(text)))
        if plan.body is not None:
            body = b[plan.body]
            if body is not None:
                if plan.body_boolean:
                    body = bool(body)
                parts.append(field_bytes(b"\x2a", otlp_wire.any_value(body)))
        any_value = otlp_wire.any_value
        if plan.part_c is not None:
            c = values[plan.part_c]
            for key_field, boolean, i in plan.attributes:
                v = c[i]
                if v is None:
                    parts.append(field_bytes(b"\x32", key_field + b"\x12\x00"))
                    continue
                if boolean:
                    v = bool(v)
                parts.append(field_bytes(b"\x32", key_field + field_bytes(_KV, any_value(v))))
        if plan.event_id is not None:
            event_id = b[plan.event_id]
            if type(event_id) is int:
                parts.append(field_bytes(b"\x32", _EVENT_ID_KEY + field_bytes(_KV, any_value(event_id))))
        for index, tag, size in ((plan.trace_id, b"\x4a", 16), (plan.span_id, b"\x52", 8)):
            if index is not None:
                raw = hex_id(a[index], size)
                if raw is not None:
                    parts.append(field_bytes(tag, raw))
        if plan.name is not None:
            name = b[plan.name]
            if type(name) is str and name.strip():
                parts.append(field_bytes(b"\x62", otlp_wire.text_bytes(name)))
        role = a[plan.role] if plan.role is not None else None
        instance = a[plan.instance] if plan.instance is not None else None
        resource = self._cs_resources.get((role, instance))
        if resource is None:
            attrs = {}
            if role is not None:
                attrs["service.name"] = role
            if instance is not None:
                attrs["service.instance.id"] = instance
            resource = self._cs_resources[(role, instance)] = otlp_wire.resource(attrs)
            if len(self._cs_resources) > 1024:
                self._cs_resources.clear()
        return resource, b"".join(parts)

    def requests(self, events: list[Event]) -> dict[str, bytes]:
        """One export request per signal for a batch of events."""
        observed = time.time_ns()
        groups: dict[str, dict[bytes, dict[bytes, list[bytes]]]] = {}
        for event in events:
            signal, resource, scope, record = self.encode(event, observed)
            groups.setdefault(signal, {}).setdefault(resource, {}).setdefault(scope, []).append(record)
        return {signal: otlp_wire.request(g) for signal, g in groups.items()}


def _identity(event: Event) -> bytes:
    """Severity, severity text and event name: the same for every event of one provider, name and level."""
    out = b""
    sev = severity(event.level)
    if sev is not None:
        out += b"\x10" + otlp_wire.varint(sev[0]) + field_bytes(b"\x1a", sev[1].encode())
    return out + field_bytes(b"\x62", otlp_wire.text_bytes(f"{event.provider}:{event.name}"))


# --- Common Schema logs by plan ---------------------------------------------------------------------------------

_PART_A = ("time", "ext_dt_traceId", "ext_dt_spanId", "ext_cloud_role", "ext_cloud_roleInstance")
_PART_B = ("_typeName", "body", "severityNumber", "severityText", "eventId", "name")


@dataclass(frozen=True, slots=True)
class _CsPlan:
    part_a: int
    part_b: int
    part_c: int | None
    time: int | None
    trace_id: int | None
    span_id: int | None
    role: int | None
    instance: int | None
    type_name: int | None
    body: int | None
    body_boolean: bool
    severity_number: int | None
    severity_text: int | None
    event_id: int | None
    name: int | None
    attributes: tuple[tuple[bytes, bool, int], ...]  # (key field, boolean-formatted, index in Part C)



def _scalar(info: FieldInfo) -> bool:
    return info.children is None and info.array == ArrayKind.NONE


def _cs_log_plan(schema: Schema) -> _CsPlan | None:
    """Where the flat (user_events) layout's fields sit in this schema; None for any other layout."""
    top = {f.name: i for i, f in enumerate(schema.fields)}
    if len(top) != len(schema.fields) or "PartA" not in top or "PartB" not in top:
        return None
    part_c = top.get("PartC")
    children: list[Schema | None] = []
    for name in ("PartA", "PartB", "PartC"):
        if name not in top:
            children.append(None)
            continue
        info = schema.fields[top[name]]
        if info.children is None or info.array != ArrayKind.NONE:
            return None
        children.append(info.children)
    a, b, c = children
    assert a is not None and b is not None
    a_index = {f.name: i for i, f in enumerate(a.fields)}
    b_index = {f.name: i for i, f in enumerate(b.fields)}
    if (len(a_index) != len(a.fields) or len(b_index) != len(b.fields) or not set(a_index) <= set(_PART_A)
            or not set(b_index) <= set(_PART_B) or not all(_scalar(f) for f in (*a.fields, *b.fields))
            or any(f.format == Format.BOOLEAN for f in a.fields)):
        return None
    attributes: list[tuple[bytes, bool, int]] = []
    if c is not None:
        names = [f.name for f in c.fields]
        if len(set(names)) != len(names) or "event_id" in names or not all(_scalar(f) for f in c.fields):
            return None
        attributes = [(key_bytes(f.name), f.format == Format.BOOLEAN, i) for i, f in enumerate(c.fields)]
    # Only the body may be boolean-formatted in Part B; the other fields are read as to_otel reads them.
    if any(f.format == Format.BOOLEAN for f in b.fields if f.name != "body"):
        return None
    body = b_index.get("body")
    return _CsPlan(
        part_a=top["PartA"], part_b=top["PartB"], part_c=part_c, time=a_index.get("time"),
        trace_id=a_index.get("ext_dt_traceId"), span_id=a_index.get("ext_dt_spanId"),
        role=a_index.get("ext_cloud_role"), instance=a_index.get("ext_cloud_roleInstance"),
        type_name=b_index.get("_typeName"), body=body,
        body_boolean=body is not None and b.fields[body].format == Format.BOOLEAN,
        severity_number=b_index.get("severityNumber"), severity_text=b_index.get("severityText"),
        event_id=b_index.get("eventId"), name=b_index.get("name"), attributes=tuple(attributes))


_minutes: dict[str, int] = {}


def _rfc3339(value: Any) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS[.fraction]Z` (what the exporters write) to ns; None for anything else (to_otel then
    reads it). The minute's epoch seconds are kept: consecutive events share it."""
    if type(value) is not str or len(value) < 20 or value[-1] != "Z" or value[10] != "T":
        return None
    minute = _minutes.get(value[:16])
    if minute is None:
        if value[4] != "-" or value[7] != "-" or value[13] != ":" or not value[:4].isdigit():
            return None
        minute = calendar.timegm((int(value[:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]),
                                  int(value[14:16]), 0, 0, 0, 0))
        if len(_minutes) > 4096:
            _minutes.clear()
        _minutes[value[:16]] = minute
    if value[16] != ":" or not value[17:19].isdigit():
        return None
    seconds = minute + int(value[17:19])
    if len(value) == 20:
        return seconds * 1_000_000_000
    fraction = value[20:-1]
    if value[19] != "." or not fraction.isdigit() or len(fraction) > 9:
        return None
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))
