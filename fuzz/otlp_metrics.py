"""The OTLP protobuf inside metrics events: the `buffer` of an `otlp_metrics` tracepoint event (an
ExportMetricsServiceRequest), decoded into one event per metric data point for rules and the forwarder.

The decoder is `dyntel.decoders.otlp_metrics.points` (from i13-producer, now in main). The target looks it up by
name and, where it is not importable, passes every input (the runner reports it inactive).

Input: the buffer. Documented outcomes: the points, each an Event whose fields can be read and shown as JSON, or
BadMetrics with a byte offset inside the buffer; nothing else.

    python -m fuzz.otlp_metrics [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.otlp_metrics --run FILE...                          run inputs once
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Iterator
from typing import Any

from fuzz.common import Finding, entry

MODULE = "dyntel.decoders.otlp_metrics"
MODULES = [MODULE, "dyntel.event_json"]


def decoder() -> tuple[Callable[[Any], list[Any]], type[Exception]] | None:
    """(points, BadMetrics) of the decoder module, or None when it is not in this checkout."""
    try:
        module = importlib.import_module(MODULE)
    except ImportError:
        return None
    points, bad = getattr(module, "points", None), getattr(module, "BadMetrics", None)
    if not callable(points) or not isinstance(bad, type):
        return None
    return points, bad


def active() -> bool:
    return decoder() is not None


def run(data: bytes) -> None:
    from dyntel.event_json import format_event

    found = decoder()
    if found is None:
        return
    points, bad_metrics = found
    # The tracepoint event as the source yields it: what `points` reads of it
    event = types.SimpleNamespace(fields={"protocol": 0, "version": "v0.1.0", "buffer": data}, source="user_events",
                                  time=1_700_000_000_000_000_000, time_is_wall=True, cpu=0, pid=1, tid=1,
                                  provider="user_events", name="otlp_metrics")
    try:
        decoded = points(event)
    except bad_metrics as e:
        offset = getattr(e, "offset", None)
        if not isinstance(offset, int) or not 0 <= offset <= len(data):
            raise Finding(f"BadMetrics at offset {offset!r}, outside the {len(data)}-byte buffer: {e}") from e
        return
    for point in decoded:
        point.fields  # noqa: B018 - building the mapping must not fail
        format_event(point)


def seeds() -> Iterator[bytes]:
    """Requests the OpenTelemetry protobuf classes build: one metric of each kind."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    scope.scope.name = "fuzz"
    gauge = scope.metrics.add(name="g", unit="1")
    gauge.gauge.data_points.add(time_unix_nano=1, as_double=1.5)
    total = scope.metrics.add(name="s")
    total.sum.is_monotonic = True
    total.sum.aggregation_temporality = m.AGGREGATION_TEMPORALITY_CUMULATIVE
    total.sum.data_points.add(time_unix_nano=2, as_int=7)
    hist = scope.metrics.add(name="h")
    hist.histogram.data_points.add(count=3, sum=4.5, bucket_counts=[1, 2], explicit_bounds=[1.0])
    yield request.SerializeToString()


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
