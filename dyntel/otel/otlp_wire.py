"""OTLP protobuf bytes written directly: the forwarder's hot path.

Building a message object per record and attribute, then serializing it, is most of what an OTLP exporter costs in
Python. Here a record is written straight to its wire bytes, and everything that repeats is encoded once and kept:
an attribute key's bytes, a resource, a scope, and for events of one schema the keys of all their fields (see
dyntel.forwarding). The output is the same protobuf that dyntel.otel.otlp_proto builds with the generated classes
(tests/test_otlp_forward.py parses both and compares them). Field numbers are those of opentelemetry-proto's
logs.proto, trace.proto and common.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from dyntel.otel.records import OtelLog, OtelSpan

pack_fixed64 = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_pack_i = struct.Struct("<I").pack

# Small lengths are the common case: a table saves a call and a loop.
_SMALL = [bytes([n]) for n in range(128)]


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else varint(n)) + payload


def text_bytes(value: str) -> bytes:
    """Valid UTF-8 for any str: bytes kept as surrogate escapes become U+FFFD where they are not UTF-8, and so do
    lone UTF-16 surrogates (a producer's UTF-16 string with half a pair), which no UTF-8 encoder takes."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace").encode()


# AnyValue (common.proto): string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7.
_AV_STRING, _AV_BOOL, _AV_INT, _AV_DOUBLE, _AV_ARRAY, _AV_KVLIST, _AV_BYTES = b"\x0a", b"\x10", b"\x18", b"\x21", \
    b"\x2a", b"\x32", b"\x3a"
_TRUE, _FALSE = _AV_BOOL + b"\x01", _AV_BOOL + b"\x00"
_INT64_MIN, _INT64_END = -(1 << 63), 1 << 63


def any_value(value: Any) -> bytes:
    """The bytes of an AnyValue message (without its own tag and length)."""
    t = type(value)
    if t is str:
        try:
            raw: bytes = value.encode()
        except UnicodeEncodeError:
            raw = text_bytes(value)
        return field_bytes(_AV_STRING, raw)
    if t is int:
        if 0 <= value < 128:
            return _AV_INT + _SMALL[int(value)]
        if _INT64_MIN <= value < _INT64_END:
            return _AV_INT + varint(value & 0xFFFFFFFFFFFFFFFF)
        return field_bytes(_AV_STRING, str(value).encode())
    if t is bool:
        return _TRUE if value else _FALSE
    if t is float:
        return _AV_DOUBLE + _pack_d(value)
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray):
        return field_bytes(_AV_BYTES, bytes(value))
    if isinstance(value, Mapping):
        return field_bytes(_AV_KVLIST, b"".join(field_bytes(b"\x0a", key_value(k, v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return field_bytes(_AV_ARRAY, b"".join(field_bytes(b"\x0a", any_value(x)) for x in value))
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int):
        return any_value(int(value))
    if isinstance(value, float):
        return _AV_DOUBLE + _pack_d(value)
    return field_bytes(_AV_STRING, text_bytes(str(value)))


_key_cache: dict[str, bytes] = {}
_KEY_CACHE_MAX = 65536


def key_bytes(key: str) -> bytes:
    """KeyValue's key field, encoded once per key name."""
    found = _key_cache.get(key)
    if found is None:
        found = field_bytes(b"\x0a", text_bytes(key))
        if len(_key_cache) < _KEY_CACHE_MAX:  # attribute names are few; a stream of unique ones must not grow this
            _key_cache[key] = found
    return found


def key_value(key: str, value: Any) -> bytes:
    """The bytes of a KeyValue message: key 1, value 2."""
    return key_bytes(key) + field_bytes(b"\x12", any_value(value))


def attributes(tag: bytes, attrs: Mapping[str, Any]) -> bytes:
    """A repeated KeyValue field (`tag` is its field's tag byte) for every item of `attrs`."""
    return b"".join(field_bytes(tag, key_value(k, v)) for k, v in attrs.items())


# LogRecord (logs.proto).
TAG_LOG_TIME = b"\x09"  # 1 fixed64
TAG_LOG_SEVERITY = b"\x10"  # 2 enum
TAG_LOG_SEVERITY_TEXT = b"\x1a"  # 3
TAG_LOG_BODY = b"\x2a"  # 5
TAG_LOG_ATTRIBUTE = b"\x32"  # 6
TAG_LOG_FLAGS = b"\x45"  # 8 fixed32
TAG_LOG_TRACE_ID = b"\x4a"  # 9
TAG_LOG_SPAN_ID = b"\x52"  # 10
TAG_LOG_OBSERVED = b"\x59"  # 11 fixed64
TAG_LOG_EVENT_NAME = b"\x62"  # 12


def log_record(log: OtelLog) -> bytes:
    """The bytes of a LogRecord message, fields in field-number order as protobuf's own serializer writes them."""
    parts = []
    if log.time_unix_nano:
        parts.append(TAG_LOG_TIME + pack_fixed64(log.time_unix_nano))
    if log.severity_number:
        parts.append(TAG_LOG_SEVERITY + varint(log.severity_number))
    if log.severity_text:
        parts.append(field_bytes(TAG_LOG_SEVERITY_TEXT, text_bytes(log.severity_text)))
    if log.body is not None:
        parts.append(field_bytes(TAG_LOG_BODY, any_value(log.body)))
    if log.attributes:
        parts.append(attributes(TAG_LOG_ATTRIBUTE, log.attributes))
    if log.flags:
        parts.append(TAG_LOG_FLAGS + _pack_i(log.flags))
    if log.trace_id:
        parts.append(field_bytes(TAG_LOG_TRACE_ID, log.trace_id))
    if log.span_id:
        parts.append(field_bytes(TAG_LOG_SPAN_ID, log.span_id))
    if log.observed_time_unix_nano:
        parts.append(TAG_LOG_OBSERVED + pack_fixed64(log.observed_time_unix_nano))
    if log.event_name:
        parts.append(field_bytes(TAG_LOG_EVENT_NAME, text_bytes(log.event_name)))
    return b"".join(parts)


def span(s: OtelSpan) -> bytes:
    """The bytes of a Span message (trace.proto)."""
    parts = [field_bytes(b"\x0a", s.trace_id), field_bytes(b"\x12", s.span_id)]
    if s.parent_span_id:
        parts.append(field_bytes(b"\x22", s.parent_span_id))
    parts.append(field_bytes(b"\x2a", text_bytes(s.name)))
    if s.kind:
        parts.append(b"\x30" + varint(s.kind))
    parts.append(b"\x39" + pack_fixed64(s.start_time_unix_nano))
    parts.append(b"\x41" + pack_fixed64(s.end_time_unix_nano))
    if s.attributes:
        parts.append(attributes(b"\x4a", s.attributes))
    for trace_id, span_id in s.links:
        parts.append(field_bytes(b"\x6a", field_bytes(b"\x0a", trace_id) + field_bytes(b"\x12", span_id)))
    if s.status_code or s.status_message:
        status = field_bytes(b"\x12", text_bytes(s.status_message)) if s.status_message else b""
        if s.status_code:
            status += b"\x18" + varint(s.status_code)
        parts.append(field_bytes(b"\x7a", status))
    return b"".join(parts)


_resource_cache: dict[tuple[tuple[str, Any], ...], bytes] = {}
_scope_cache: dict[str | None, bytes] = {}


def resource(attrs: Mapping[str, Any]) -> bytes:
    """A `resource` field (tag 1 of ResourceLogs and ResourceSpans) for these attributes; encoded once per set."""
    try:
        key = tuple(sorted(attrs.items()))
        found = _resource_cache.get(key)
    except TypeError:  # an unhashable value: encode it every time
        return field_bytes(b"\x0a", attributes(b"\x0a", attrs))
    if found is None:
        found = field_bytes(b"\x0a", attributes(b"\x0a", attrs))
        if len(_resource_cache) < 1024:
            _resource_cache[key] = found
    return found


def scope(name: str | None) -> bytes:
    """A `scope` field (tag 1 of ScopeLogs and ScopeSpans); encoded once per name."""
    found = _scope_cache.get(name)
    if found is None:
        found = field_bytes(b"\x0a", field_bytes(b"\x0a", text_bytes(name)) if name else b"")
        if len(_scope_cache) < 4096:
            _scope_cache[name] = found
    return found


Groups = Mapping[bytes, Mapping[bytes, Iterable[bytes]]]


def request(groups: Groups) -> bytes:
    """An ExportLogsServiceRequest or ExportTraceServiceRequest: {resource field: {scope field: [item bytes]}}.

    The two requests have the same shape (resource_logs/resource_spans 1 -> resource 1, scope_logs/scope_spans 2
    -> scope 1, log_records/spans 2), so one writer serves both.
    """
    out = []
    for resource_field, scopes in groups.items():
        body = [resource_field]
        for scope_field, items in scopes.items():
            body.append(field_bytes(b"\x12", scope_field + b"".join(field_bytes(b"\x12", i) for i in items)))
        out.append(field_bytes(b"\x0a", b"".join(body)))
    return b"".join(out)
