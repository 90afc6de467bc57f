"""dyntel's own metrics as OTLP metrics: the registry /metrics serves, pushed every `interval` seconds to a
collector's OTLP/HTTP endpoint (POST /v1/metrics, ExportMetricsServiceRequest), for teams whose pipeline has no
Prometheus. Counters become cumulative monotonic sums, gauges gauges, each label an attribute; the resource is
service.name "dyntel" and host.name. A failed push is counted and retried with the next one (the values are
cumulative, so nothing is lost but resolution).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.registry import CollectorRegistry

_START_NS = time.time_ns()


def metrics_request(registry: CollectorRegistry, now_ns: int | None = None) -> bytes:
    """One ExportMetricsServiceRequest of every family in the registry, serialized."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1.metrics_pb2 import (
        AGGREGATION_TEMPORALITY_CUMULATIVE,
        Gauge,
        Metric,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    now = now_ns or time.time_ns()
    metrics = []
    for family in registry.collect():
        points = []
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            attributes = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in sorted(sample.labels.items())]
            points.append(NumberDataPoint(attributes=attributes, start_time_unix_nano=_START_NS,
                                          time_unix_nano=now, as_double=float(sample.value)))
        name = family.name + ("_total" if family.type == "counter" else "")
        if family.type == "counter":
            metric = Metric(name=name, description=family.documentation,
                            sum=Sum(data_points=points, is_monotonic=True,
                                    aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE))
        else:
            metric = Metric(name=name, description=family.documentation, gauge=Gauge(data_points=points))
        metrics.append(metric)
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="dyntel")),
                                    KeyValue(key="host.name", value=AnyValue(string_value=os.uname().nodename))])
    request = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=resource, scope_metrics=[ScopeMetrics(metrics=metrics)])])
    data: bytes = request.SerializeToString()
    return data


class OtlpMetricsPusher:
    def __init__(self, registry: CollectorRegistry, endpoint: str, interval: float = 30.0,
                 timeout: float = 10.0) -> None:
        self.registry = registry
        self.url = endpoint.rstrip("/") + ("" if endpoint.rstrip("/").endswith("/v1/metrics") else "/v1/metrics")
        self.interval = interval
        self.timeout = timeout
        self.pushed = 0
        self.failed = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dyntel-otlp-metrics", daemon=True)

    def push(self) -> bool:
        body = metrics_request(self.registry)
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except (urllib.error.URLError, OSError) as e:
            self.failed += 1
            self.last_error = str(getattr(e, "reason", e))
            return False
        self.pushed += 1
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def start(self) -> OtlpMetricsPusher:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop, with one last push so the final counts reach the collector."""
        self._stop.set()
        self._thread.join(self.timeout)
        self.push()

    def stats(self) -> dict[str, Any]:
        return {"pushed": self.pushed, "failed": self.failed, "last_error": self.last_error}
