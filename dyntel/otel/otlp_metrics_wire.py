"""Metric point events (dyntel.decoders.otlp_metrics) back to OTLP: the forwarder's metrics signal.

Each point event becomes one Metric with one data point, of its kind, temporality and monotonicity, with its
attributes (typed), times and flags, under its resource and scope. The forwarder groups them per resource and scope
into one ExportMetricsServiceRequest (same shape as the logs and traces requests: dyntel.otel.otlp_wire.request).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from dyntel.decoders.otlp_metrics import METRIC_PROVIDER
from dyntel.event import Event
from dyntel.otel.otlp_wire import field_bytes

__all__ = ["is_metric_point", "metric_record"]

_TEMPORALITY = {"delta": 1, "cumulative": 2}


def is_metric_point(event: Event) -> bool:
    return event.provider == METRIC_PROVIDER and "metric" in event.schema.names


def _any(value: Any) -> AnyValue:
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bytes | bytearray):
        out.bytes_value = bytes(value)
    elif isinstance(value, list):
        out.array_value.values.extend(_any(v) for v in value)
    elif isinstance(value, dict):
        out.kvlist_value.values.extend(_kv(k, v) for k, v in value.items())
    elif value is not None:
        out.string_value = str(value)
    return out


def _kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=_any(value))


def _attributes(target: Any, values: Mapping[str, Any]) -> None:
    target.extend(_kv(k, v) for k, v in values.items())


def _number(point: Any, value: Any) -> None:
    if isinstance(value, bool):
        point.as_int = int(value)
    elif isinstance(value, int):
        point.as_int = value
    elif isinstance(value, float):
        point.as_double = value


def _count_sum_min_max(point: Any, f: dict[str, Any]) -> None:
    """What both histogram kinds' points carry: a count, and a sum, min and max when the event has them."""
    point.count = int(f.get("count") or 0)
    for optional in ("sum", "min", "max"):
        if f.get(optional) is not None:
            setattr(point, optional, float(f[optional]))


def _times(point: Any, f: Mapping[str, Any]) -> None:
    point.start_time_unix_nano = int(f.get("start_time") or 0)
    point.time_unix_nano = int(f.get("time") or 0)
    point.flags = int(f.get("flags") or 0)
    _attributes(point.attributes, f.get("attributes") or {})


_resource_cache: dict[Any, bytes] = {}
_scope_cache: dict[Any, bytes] = {}


def metric_record(event: Event) -> tuple[bytes, bytes, bytes]:
    """(resource field, scope field, Metric bytes) of a metric point event."""
    f = event.fields
    meta: Mapping[str, Any] = f.get("metric") or {}
    metric = metrics_pb2.Metric(name=str(meta.get("name") or event.name), unit=str(meta.get("unit") or ""),
                                description=str(meta.get("description") or ""))
    kind = meta.get("kind")
    temporality = _TEMPORALITY.get(str(meta.get("temporality")), 0)
    if kind == "gauge":
        point = metric.gauge.data_points.add()
        _number(point, f.get("value"))
        _times(point, f)
    elif kind == "sum":
        metric.sum.aggregation_temporality = temporality  # type: ignore[assignment]
        metric.sum.is_monotonic = bool(meta.get("monotonic"))
        point = metric.sum.data_points.add()
        _number(point, f.get("value"))
        _times(point, f)
    elif kind == "histogram":
        metric.histogram.aggregation_temporality = temporality  # type: ignore[assignment]
        h = metric.histogram.data_points.add()
        _count_sum_min_max(h, f)
        h.bucket_counts.extend(int(x) for x in f.get("bucket_counts") or ())
        h.explicit_bounds.extend(float(x) for x in f.get("explicit_bounds") or ())
        _times(h, f)
    elif kind == "exponential_histogram":
        metric.exponential_histogram.aggregation_temporality = temporality  # type: ignore[assignment]
        e = metric.exponential_histogram.data_points.add()
        _count_sum_min_max(e, f)
        e.scale = int(f.get("scale") or 0)
        e.zero_count = int(f.get("zero_count") or 0)
        e.positive.offset = int(f.get("positive_offset") or 0)
        e.positive.bucket_counts.extend(int(x) for x in f.get("positive_bucket_counts") or ())
        e.negative.offset = int(f.get("negative_offset") or 0)
        e.negative.bucket_counts.extend(int(x) for x in f.get("negative_bucket_counts") or ())
        _times(e, f)
    elif kind == "summary":
        s = metric.summary.data_points.add()
        s.count = int(f.get("count") or 0)
        s.sum = float(f.get("sum") or 0.0)
        for q, v in zip(f.get("quantiles") or (), f.get("quantile_values") or (), strict=False):
            s.quantile_values.add(quantile=float(q), value=float(v))
        _times(s, f)
    resource: Mapping[str, Any] = f.get("resource") or {}
    try:
        key: Any = tuple(sorted(resource.items()))
        resource_field = _resource_cache.get(key)
    except TypeError:
        key, resource_field = None, None
    if resource_field is None:
        r = Resource()
        _attributes(r.attributes, resource)
        resource_field = field_bytes(b"\x0a", r.SerializeToString())
        if key is not None and len(_resource_cache) < 1024:
            _resource_cache[key] = resource_field
    scope: Mapping[str, Any] = f.get("scope") or {}
    scope_key = (scope.get("name"), scope.get("version"))
    scope_field = _scope_cache.get(scope_key)
    if scope_field is None:
        s_msg = InstrumentationScope(name=str(scope.get("name") or ""), version=str(scope.get("version") or ""))
        scope_field = field_bytes(b"\x0a", s_msg.SerializeToString())
        if len(_scope_cache) < 1024:
            _scope_cache[scope_key] = scope_field
    return resource_field, scope_field, metric.SerializeToString()
