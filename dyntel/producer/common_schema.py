"""OpenTelemetry logs and spans as Common Schema EventHeader events, byte for byte as the Rust user_events exporters
write them (opentelemetry-rust-contrib: opentelemetry-user-events-logs/src/logs/exporter.rs and
opentelemetry-user-events-trace/src/trace/exporter.rs, built with eventheader_dynamic's EventBuilder).

Log event "Log" on `Provider_L<level>K1`, level from the severity (dyntel.otel.common_schema.severity_level):

    __csver__  u32 0x400 (format unsigned)
    PartA      time (str), [ext_dt_traceId, ext_dt_spanId (str, lowercase hex)], [ext_cloud_role],
               [ext_cloud_roleInstance]
    PartC      only when there are attributes: each attribute in order except an integer `event_id`, then the
               resource attributes asked for; bool -> u8 boolean, int -> i64, float -> f64 float, str -> str,
               anything else -> str (JSON here, as the ETW exporters write it; the user_events one writes "")
    PartB      _typeName "Log", [body (typed as an attribute)], severityNumber (i16), [severityText],
               [eventId (i64)], [name]

Span event "Span" on `Provider_L4K1`:

    __csver__  u32 0x400
    PartA      time (the end time), ext_dt_traceId, ext_dt_spanId, [ext_cloud_role], [ext_cloud_roleInstance]
    PartB      _typeName "Span", name, startTime (str), success (u8 boolean), kind (u32, the SDK's SpanKind),
               [parentId], [links (JSON)], [well-known attributes under their Part B names], [statusMessage]
    PartC      the other attributes, when there are any

Strings are `uint16 length, UTF-8 bytes` with no format byte. An event's metadata depends only on which optional
fields are there and each attribute's name and type, so it is built once per such shape and cached: encoding a
record is packing its values and finding its shape.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dyntel.formatting import fraction_text
from dyntel.otel.common_schema import CS_VERSION, SPAN_WELL_KNOWN_ATTRIBUTES

__all__ = ["LogShapes", "SpanShapes", "encode_log", "encode_span", "format_time_cached", "metadata"]

# Field kinds, as (encoding byte(s) after the name's NUL). Strings: StringLength16Char8, default format.
STR = b"\x0a"
BOOL = b"\x82\x07"  # Value8, boolean (a Rust bool)
I64 = b"\x85\x02"  # Value64, signed
F64 = b"\x85\x08"  # Value64, float
I16 = b"\x83\x02"  # Value16, signed
U32 = b"\x84\x01"  # Value32, unsigned_int (written explicitly, as the Rust exporters do)


def struct_kind(count: int) -> bytes:
    return bytes([0x81, count])  # Struct, its field count as the format byte


_pack_u16 = struct.Struct("<H").pack
_pack_q = struct.Struct("<q").pack
_pack_d = struct.Struct("<d").pack
_pack_h = struct.Struct("<h").pack
_pack_I = struct.Struct("<I").pack
CSVER = _pack_I(CS_VERSION)
TRUE, FALSE = b"\x01", b"\x00"
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def metadata(event_name: str, fields: Iterable[tuple[str, bytes]]) -> bytes:
    return event_name.encode("utf-8") + b"\0" + b"".join(n.encode("utf-8") + b"\0" + k for n, k in fields)


def pack_str(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) > 0xFFFF:
        raw = raw[:0xFFFF]
    return _pack_u16(len(raw)) + raw


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def attribute(value: Any) -> tuple[bytes, bytes]:
    """(field kind, packed value) of an attribute or body value, by its Python type."""
    t = type(value)
    if t is str:
        return STR, pack_str(value)
    if t is bool:
        return BOOL, TRUE if value else FALSE
    if t is int:
        if _I64_MIN <= value <= _I64_MAX:
            return I64, _pack_q(value)
        return STR, pack_str(str(value))
    if t is float:
        return F64, _pack_d(value)
    if isinstance(value, bool):
        return BOOL, TRUE if value else FALSE
    if isinstance(value, int):
        return attribute(int(value))
    if isinstance(value, float):
        return F64, _pack_d(float(value))
    if isinstance(value, str):
        return STR, pack_str(str(value))
    if isinstance(value, bytes):
        return STR, pack_str(value.hex())
    if isinstance(value, Mapping):
        value = dict(value)
    elif isinstance(value, tuple | list) or hasattr(value, "__iter__"):
        value = list(value)
    return STR, pack_str(json.dumps(value, default=_json_default, separators=(",", ":")))


class _TimeText:
    """dyntel.formatting.format_time_rfc3339 with the seconds part kept from the last call: most records of a
    busy process share it."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, unix_nano: int) -> str:
        seconds, nanos = divmod(unix_nano, 1_000_000_000)
        if seconds != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            self._second = seconds
        return self._prefix + fraction_text(nanos)


format_time_cached = _TimeText()


class Shapes:
    """Metadata by shape key, bounded: a process that invents attribute names without end recompiles, but does
    not grow without end."""

    def __init__(self, build: Callable[[tuple[Any, ...]], Any], max_shapes: int = 1024) -> None:
        self._build = build
        self._shapes: dict[tuple[Any, ...], Any] = {}
        self.max_shapes = max_shapes

    def get(self, key: tuple[Any, ...]) -> Any:
        v = self._shapes.get(key)
        if v is None:
            if len(self._shapes) >= self.max_shapes:
                self._shapes.clear()
            v = self._shapes[key] = self._build(key)
        return v


LogShapes = Shapes
SpanShapes = Shapes


def log_metadata(key: tuple[Any, ...]) -> bytes:
    (event_name, trace, role, instance, part_c, body, severity_text, event_id, name) = key
    fields: list[tuple[str, bytes]] = [("__csver__", U32)]
    part_a = [("time", STR)]
    if trace:
        part_a += [("ext_dt_traceId", STR), ("ext_dt_spanId", STR)]
    if role:
        part_a.append(("ext_cloud_role", STR))
    if instance:
        part_a.append(("ext_cloud_roleInstance", STR))
    fields += [("PartA", struct_kind(len(part_a))), *part_a]
    if part_c:
        fields += [("PartC", struct_kind(len(part_c))), *part_c]
    part_b = [("_typeName", STR)]
    if body is not None:
        part_b.append(("body", body))
    part_b.append(("severityNumber", I16))
    if severity_text:
        part_b.append(("severityText", STR))
    if event_id:
        part_b.append(("eventId", I64))
    if name:
        part_b.append(("name", STR))
    fields += [("PartB", struct_kind(len(part_b))), *part_b]
    return metadata(event_name, fields)


_LOG_TYPE = pack_str("Log")
_SPAN_TYPE = pack_str("Span")


def encode_log(event_name: str, time_unix_nano: int, trace_id: int, span_id: int, role: bytes | None,
               instance: bytes | None, attributes: Mapping[str, Any] | None,
               resource_attributes: tuple[tuple[str, bytes, bytes], ...], body: Any, severity_number: int,
               severity_text: str | None, log_event_name: str | None) -> tuple[tuple[Any, ...], bytes]:
    """(shape key, payload) of one log record. `role`/`instance` are packed strings; `resource_attributes` are
    (name, kind, packed value) triples, as `attribute` gives them."""
    parts = [CSVER, pack_str(format_time_cached(time_unix_nano))]
    trace = bool(trace_id)
    if trace:
        parts.append(pack_str(f"{trace_id:032x}"))
        parts.append(pack_str(f"{span_id:016x}"))
    if role is not None:
        parts.append(role)
    if instance is not None:
        parts.append(instance)
    part_c: list[tuple[str, bytes]] = []
    event_id = None
    if attributes:
        for k, v in attributes.items():
            if k == "event_id" and type(v) is int and _I64_MIN <= v <= _I64_MAX:
                event_id = v
                continue
            kind, packed = attribute(v)
            part_c.append((k, kind))
            parts.append(packed)
    for k, kind, packed in resource_attributes:
        part_c.append((k, kind))
        parts.append(packed)
    parts.append(_LOG_TYPE)
    body_kind = None
    if body is not None:
        body_kind, packed = attribute(body)
        parts.append(packed)
    parts.append(_pack_h(severity_number))
    if severity_text is not None:
        parts.append(pack_str(severity_text))
    if event_id is not None:
        parts.append(_pack_q(event_id))
    name = log_event_name if log_event_name is not None and log_event_name.strip() else None
    if name is not None:
        parts.append(pack_str(name))
    key = (event_name, trace, role is not None, instance is not None, tuple(part_c), body_kind,
           severity_text is not None, event_id is not None, name is not None)
    return key, b"".join(parts)


def span_metadata(key: tuple[Any, ...]) -> bytes:
    (role, instance, parent, links, part_b_attributes, status_message, part_c) = key
    fields: list[tuple[str, bytes]] = [("__csver__", U32)]
    part_a = [("time", STR), ("ext_dt_traceId", STR), ("ext_dt_spanId", STR)]
    if role:
        part_a.append(("ext_cloud_role", STR))
    if instance:
        part_a.append(("ext_cloud_roleInstance", STR))
    fields += [("PartA", struct_kind(len(part_a))), *part_a]
    part_b = [("_typeName", STR), ("name", STR), ("startTime", STR), ("success", BOOL), ("kind", U32)]
    if parent:
        part_b.append(("parentId", STR))
    if links:
        part_b.append(("links", STR))
    part_b += part_b_attributes
    if status_message:
        part_b.append(("statusMessage", STR))
    fields += [("PartB", struct_kind(len(part_b))), *part_b]
    if part_c:
        fields += [("PartC", struct_kind(len(part_c))), *part_c]
    return metadata("Span", fields)


def encode_span(name: str, trace_id: int, span_id: int, parent_span_id: int, kind: int, start_unix_nano: int,
                end_unix_nano: int, success: bool, error_description: str | None, attributes: Mapping[str, Any] | None,
                links: Iterable[tuple[int, int]], role: bytes | None,
                instance: bytes | None) -> tuple[tuple[Any, ...], bytes]:
    """(shape key, payload) of one span. `kind` is the SDK's SpanKind value (INTERNAL = 0)."""
    parts = [CSVER, pack_str(format_time_cached(end_unix_nano)), pack_str(f"{trace_id:032x}"),
             pack_str(f"{span_id:016x}")]
    if role is not None:
        parts.append(role)
    if instance is not None:
        parts.append(instance)
    parts += [_SPAN_TYPE, pack_str(name), pack_str(format_time_cached(start_unix_nano)), TRUE if success else FALSE,
              _pack_I(kind)]
    if parent_span_id:
        parts.append(pack_str(f"{parent_span_id:016x}"))
    link_list = list(links)
    if link_list:
        parts.append(pack_str("[" + ",".join(f'{{"toTraceId":"{t:032x}","toSpanId":"{s:016x}"}}'
                                             for t, s in link_list) + "]"))
    part_b: list[tuple[str, bytes]] = []
    part_c: list[tuple[str, bytes]] = []
    c_values: list[bytes] = []
    has_http_status = False
    if attributes:
        for k, v in attributes.items():
            kind_b, packed = attribute(v)
            well_known = SPAN_WELL_KNOWN_ATTRIBUTES.get(k)
            if well_known is not None:
                has_http_status = has_http_status or well_known == "httpStatusCode"
                part_b.append((well_known, kind_b))
                parts.append(packed)
            else:
                part_c.append((k, kind_b))
                c_values.append(packed)
    # Common Schema: with an httpStatusCode, no statusMessage.
    status_message = bool(error_description) and not has_http_status
    if status_message:
        parts.append(pack_str(error_description or ""))
    parts += c_values
    key = (role is not None, instance is not None, bool(parent_span_id), bool(link_list), tuple(part_b),
           status_message, tuple(part_c))
    return key, b"".join(parts)
