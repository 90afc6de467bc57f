"""Decoded events to OTLP records (wire bytes) and export requests: what the forwarder sends.

- A Common Schema event (Part A/B/C, as OpenTelemetry's user_events and ETW exporters write them) becomes the log
  record or span it holds (dyntel.otel.common_schema.to_otel), under its own resource (the service's cloud role)
  and, as scope, the provider it was written to.
- Any other event becomes a log record: its fields are the attributes (structs as key-value lists, arrays as
  arrays), plus `process.pid` and `thread.id`; `event_name` is `provider:event`; the severity follows the level
  (1 FATAL, 2 ERROR, 3 WARN, 4 INFO, 5 DEBUG, above TRACE); the activity id, when set, is the trace id. Resource:
  dyntel's own (service.name dyntel, host.name); scope: the provider.

Per schema (one per event type), the attribute keys are encoded once and kept on the schema (Schema.cache); per
(provider, event, level) the severity and event name; so an event costs the encoding of its values and little else.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from dyntel.event import ArrayKind, Event, FieldInfo, Format, Schema, fields_as_dict, schema_cached
from dyntel.otel import otlp_wire
from dyntel.otel.common_schema import to_otel
from dyntel.otel.otlp_proto import default_resource
from dyntel.otel.otlp_transport import LOGS, TRACES
from dyntel.otel.otlp_wire import field_bytes, key_bytes
from dyntel.otel.records import OtelLog

# EventHeader/ETW level to (SeverityNumber, text): the inverse of dyntel.otel.common_schema.severity_level.
_LEVELS = {1: (21, "FATAL"), 2: (17, "ERROR"), 3: (13, "WARN"), 4: (9, "INFO"), 5: (5, "DEBUG")}
pack_fixed64 = otlp_wire.pack_fixed64
_KV = b"\x12"
_PID_KEY = key_bytes("process.pid")
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
    return "__csver__" in schema.names and "PartB" in schema.names


class EventEncoder:
    """Encodes events; keeps what repeats. Used from one thread (the forwarder's sender)."""

    def __init__(self, resource: Mapping[str, Any] | None = None) -> None:
        self.resource = otlp_wire.resource(resource if resource is not None else default_resource())
        self._identity: dict[tuple[str, str, int | None], bytes] = {}

    def encode(self, event: Event, observed: int) -> tuple[str, bytes, bytes, bytes]:
        """(signal, resource field, scope field, record bytes) of one event."""
        if schema_cached(event.schema, "otlp.common_schema", _is_common_schema):
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
