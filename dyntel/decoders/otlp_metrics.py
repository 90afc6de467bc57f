"""`otlp_metrics` events (OTLP protobuf inside a tracepoint) to one event per metric data point, for rules and the
forwarder.

OpenTelemetry's user_events metrics exporters (opentelemetry-user-events-metrics, Rust, and the C++/.NET ones of
the same layout) register a plain tracepoint

    otlp_metrics  u32 protocol; char[8] version; __rel_loc u8[] buffer

with protocol 0 (protobuf) and `buffer` an ExportMetricsServiceRequest (the Rust exporter writes one data point per
event; any number is read here). Each data point becomes an Event of provider `otlp_metrics`, named after the
metric, whose fields are (docs/rules.md, "Metrics"):

    metric      {name, kind, unit, description, temporality, monotonic}
                kind: gauge | sum | histogram | exponential_histogram | summary;
                temporality: delta | cumulative | unspecified (gauges: unspecified)
    value       gauge and sum points: the number (int or float, as the point holds it)
    count, sum, min, max                       histogram, exponential histogram and summary points (where set)
    bucket_counts, explicit_bounds             histogram points
    scale, zero_count, positive_offset, positive_bucket_counts, negative_offset, negative_bucket_counts
                                               exponential histogram points
    quantiles, quantile_values                 summary points
    start_time, time, flags                    the point's own (ns since the epoch)
    attributes  the point's attributes, typed (a struct; `fields.attributes.region`, `fields.attributes["http.route"]`)
    resource    the resource's attributes (`fields.resource["service.name"]`)
    scope       {name, version}

The event keeps the tracepoint event's time, pid, tid and cpu. A buffer that is not an ExportMetricsServiceRequest
(or a protocol other than 0) gives no points: it is counted in the source's stats as a bad record, with the byte
offset in the buffer where it stops making sense, and reading goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from dyntel.event import ArrayKind, Encoding, Event, FieldInfo, Format, Schema

if TYPE_CHECKING:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from dyntel.source_types import SourceStats
__all__ = ["METRICS_EVENT", "METRIC_PROVIDER", "BadMetrics", "any_value", "expand", "is_otlp_metrics", "points"]

METRIC_PROVIDER = "otlp_metrics"
METRICS_EVENT = "otlp_metrics"

# AggregationTemporality of sums and histograms. 0 (UNSPECIFIED) is not valid there (the OTLP spec), and the Rust
# exporter (opentelemetry-user-events-metrics 0.14) writes the SDK's own enum value (`Temporality::Cumulative as
# i32` = 0, Delta = 1) where OTLP's belongs: 0 can only mean cumulative, and is read so (docs/otel.md).
_TEMPORALITY = {0: "cumulative", 1: "delta", 2: "cumulative"}


class BadMetrics(ValueError):
    """An otlp_metrics buffer that cannot be read; `offset` is the byte of the buffer where it goes wrong."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"byte {offset} of the OTLP buffer: {message}")
        self.offset = offset


def is_otlp_metrics(event: Event) -> bool:
    """Whether the event is the metrics exporters' tracepoint event (`otlp_metrics` with a `buffer`)."""
    return event.name == METRICS_EVENT and event.provider != METRIC_PROVIDER and "buffer" in event.schema.names


def any_value(v: Any) -> Any:
    """An OTLP AnyValue message to its Python value (bytes for bytes, list for arrays, dict for key-value lists)."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def _wire_error_offset(buf: bytes) -> int:
    """Where the message's top-level wire format first breaks (a tag, length or value running past the end, or an
    impossible wire type); len(buf) when the top level holds and the fault is inside a field."""
    i, end = 0, len(buf)
    while i < end:
        at = i
        key, i = _varint(buf, i, end)
        if key is None or key >> 3 == 0:
            return at
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i, end)
            if value is None:
                return at
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        elif wire == 2:
            size, i = _varint(buf, i, end)
            if size is None:
                return at
            i += size
        else:
            return at
        if i > end:
            return at
    return end


def _varint(buf: bytes, i: int, end: int) -> tuple[int | None, int]:
    shift = result = 0
    while i < end and shift < 64:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
    return None, i


def parse(buffer: bytes) -> ExportMetricsServiceRequest:
    """The request a buffer holds; BadMetrics (with the offset) when it holds none."""
    # Imported on the first metrics event, not with the module: `dyntel run` and `replay` import this module, and
    # most runs never see one.
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(buffer)
    except DecodeError as e:
        raise BadMetrics(_wire_error_offset(buffer), f"not an ExportMetricsServiceRequest ({e})") from None
    return request


# --- events -----------------------------------------------------------------------------------------------------

_schemas: dict[Any, Schema] = {}


def _kind(v: Any) -> Any:
    t = type(v)
    if t is bool:
        return "b"
    if t is int:
        return "i"
    if t is float:
        return "f"
    if t is str:
        return "s"
    if t is bytes:
        return "y"
    if t is dict:
        return ("o", tuple((k, _kind(x)) for k, x in v.items()))
    if t is list:
        kinds = {_kind(x) for x in v}
        if len(kinds) == 1:
            (k,) = kinds
            if type(k) is str:
                return ("a", k)
        if kinds <= {"i", "f"} and kinds:
            return ("a", "f")
        return "j" if v else ("a", "s")
    return "j"


_SCALARS: dict[str, tuple[Encoding, Format, int]] = {
    "b": (Encoding.VALUE8, Format.BOOLEAN, 1),
    "i": (Encoding.VALUE64, Format.SIGNED_INT, 8),
    "f": (Encoding.VALUE64, Format.FLOAT, 8),
    "s": (Encoding.ZSTRING_CHAR8, Format.STRING_UTF, 0),
    "y": (Encoding.BINARY_LENGTH16_CHAR8, Format.DEFAULT, 0),
    "j": (Encoding.ZSTRING_CHAR8, Format.STRING_JSON, 0),
}


def _info(name: str, kind: Any) -> FieldInfo:
    if type(kind) is tuple and kind[0] == "o":
        return FieldInfo(name, Encoding.STRUCT, children=_schema(kind[1]))
    if type(kind) is tuple:
        encoding, fmt, size = _SCALARS[kind[1]]
        return FieldInfo(name, encoding, fmt, ArrayKind.VARIABLE, element_size=size)
    encoding, fmt, size = _SCALARS[kind]
    return FieldInfo(name, encoding, fmt, element_size=size)


def _schema(kinds: tuple[tuple[str, Any], ...]) -> Schema:
    found = _schemas.get(kinds)
    if found is None:
        if len(_schemas) > 4096:
            _schemas.clear()
        found = _schemas[kinds] = Schema(tuple(_info(k, kind) for k, kind in kinds))
    return found


def _values(kinds: tuple[tuple[str, Any], ...], fields: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for name, kind in kinds:
        v = fields[name]
        if type(kind) is tuple and kind[0] == "o":
            out.append(_values(kind[1], v))
        elif kind == "j":
            out.append(json.dumps(_plain(v), ensure_ascii=False))
        elif type(kind) is tuple and kind[1] == "f":
            out.append([float(x) for x in v])
        else:
            out.append(v)
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _number(point: Any) -> int | float | None:
    which = point.WhichOneof("value")
    if which == "as_int":
        return int(point.as_int)
    if which == "as_double":
        return float(point.as_double)
    return None


def _common(point: Any) -> dict[str, Any]:
    return {"start_time": int(point.start_time_unix_nano), "time": int(point.time_unix_nano),
            "flags": int(point.flags)}


def _point_fields(metric: Any) -> Iterator[dict[str, Any]]:
    """(kind fields + point fields) for each data point of a metric."""
    which = metric.WhichOneof("data")
    head = {"name": metric.name, "kind": which or "none", "unit": metric.unit, "description": metric.description}
    if which == "gauge":
        for p in metric.gauge.data_points:
            yield {"metric": {**head, "temporality": "unspecified", "monotonic": False},
                   "value": _number(p), **_common(p), "_attributes": p.attributes}
    elif which == "sum":
        s = metric.sum
        meta = {**head, "temporality": _TEMPORALITY.get(s.aggregation_temporality, "unspecified"),
                "monotonic": bool(s.is_monotonic)}
        for p in s.data_points:
            yield {"metric": meta, "value": _number(p), **_common(p), "_attributes": p.attributes}
    elif which == "histogram":
        h = metric.histogram
        meta = {**head, "temporality": _TEMPORALITY.get(h.aggregation_temporality, "unspecified"), "monotonic": True}
        for p in h.data_points:
            fields: dict[str, Any] = {"metric": meta, "count": int(p.count)}
            for optional in ("sum", "min", "max"):
                if p.HasField(optional):
                    fields[optional] = float(getattr(p, optional))
            fields["bucket_counts"] = [int(x) for x in p.bucket_counts]
            fields["explicit_bounds"] = [float(x) for x in p.explicit_bounds]
            yield {**fields, **_common(p), "_attributes": p.attributes}
    elif which == "exponential_histogram":
        h = metric.exponential_histogram
        meta = {**head, "temporality": _TEMPORALITY.get(h.aggregation_temporality, "unspecified"), "monotonic": True}
        for p in h.data_points:
            fields = {"metric": meta, "count": int(p.count)}
            for optional in ("sum", "min", "max"):
                if p.HasField(optional):
                    fields[optional] = float(getattr(p, optional))
            fields.update(scale=int(p.scale), zero_count=int(p.zero_count), positive_offset=int(p.positive.offset),
                          positive_bucket_counts=[int(x) for x in p.positive.bucket_counts],
                          negative_offset=int(p.negative.offset),
                          negative_bucket_counts=[int(x) for x in p.negative.bucket_counts])
            yield {**fields, **_common(p), "_attributes": p.attributes}
    elif which == "summary":
        meta = {**head, "temporality": "unspecified", "monotonic": False}
        for p in metric.summary.data_points:
            yield {"metric": meta, "count": int(p.count), "sum": float(p.sum),
                   "quantiles": [float(q.quantile) for q in p.quantile_values],
                   "quantile_values": [float(q.value) for q in p.quantile_values], **_common(p),
                   "_attributes": p.attributes}


def points(event: Event) -> list[Event]:
    """The data points an otlp_metrics event holds, one event each. Raises BadMetrics."""
    fields = event.fields
    protocol = fields.get("protocol")
    if protocol not in (0, None):
        raise BadMetrics(0, f"protocol {protocol} (only 0, protobuf, is known)")
    buffer = fields.get("buffer")
    if isinstance(buffer, list):
        try:
            buffer = bytes(buffer)
        except (TypeError, ValueError):
            raise BadMetrics(0, "the buffer field is not a byte array") from None
    if not isinstance(buffer, bytes | bytearray):
        raise BadMetrics(0, "no buffer")
    request = parse(bytes(buffer))
    out: list[Event] = []
    for rm in request.resource_metrics:
        resource = {kv.key: any_value(kv.value) for kv in rm.resource.attributes}
        for sm in rm.scope_metrics:
            scope = {"name": sm.scope.name, "version": sm.scope.version}
            for metric in sm.metrics:
                for point in _point_fields(metric):
                    attributes = {kv.key: any_value(kv.value) for kv in point.pop("_attributes")}
                    point.update(attributes=attributes, resource=resource, scope=scope)
                    kinds = tuple((k, _kind(v)) for k, v in point.items())
                    out.append(Event(
                        METRIC_PROVIDER, metric.name, _schema(kinds), _values(kinds, point), source=event.source,
                        time=event.time, time_is_wall=event.time_is_wall, cpu=event.cpu, pid=event.pid,
                        tid=event.tid))
    return out


def expand(events: Iterable[Event], stats: SourceStats | None, report: Callable[[str], None] | None = None,
           position: Callable[[], int] | None = None) -> Iterator[Event]:
    """The events, with each otlp_metrics event replaced by its data points. A bad buffer is counted in `stats`
    (at the reader's `position` in its file when given: the source has read up to there) and told to `report`, with
    the byte of the buffer where it goes wrong; it gives no events, and the others go on."""
    for event in events:
        if event.name != METRICS_EVENT or not is_otlp_metrics(event):
            yield event
            continue
        try:
            found = points(event)
        except BadMetrics as e:
            message = f"{event.provider}:{event.name} (pid {event.pid}, time {event.time}): {e}"
            if stats is not None:
                stats.problem(position() if position is not None else 0, message)
            if report is not None:
                report(message)
            continue
        yield from found
