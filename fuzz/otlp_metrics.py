"""The OTLP protobuf inside metrics events (an ExportMetricsServiceRequest carried in an event's payload), decoded
into metric points. The decoder is being written on another branch (i13-producer); until it is in this checkout,
this target has nothing to call and passes every input (the runner reports it as inactive).

Documented outcome once active: the decoded metrics, or a DecodeError with an offset; nothing else.

    python -m fuzz.otlp_metrics [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.otlp_metrics --run FILE...                          run inputs once
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from fuzz.common import Finding, entry

# Where the decoder may land, and the function that takes the protobuf bytes
CANDIDATES = (("dyntel.decoders.otlp_metrics", "decode_metrics"), ("dyntel.otel.metrics_decode", "decode_metrics"),
              ("dyntel.decoders.metrics", "decode"))
MODULES = [m for m, _ in CANDIDATES]


def decoder() -> Callable[[bytes], Any] | None:
    for module, name in CANDIDATES:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if callable(found):
            return found  # type: ignore[no-any-return]
    return None


def active() -> bool:
    return decoder() is not None


def run(data: bytes) -> None:
    from dyntel.errors import DecodeError

    decode = decoder()
    if decode is None:
        return
    try:
        decode(data)
    except DecodeError as e:
        if e.offset is None:
            raise Finding(f"DecodeError without a byte offset: {e}") from e


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
