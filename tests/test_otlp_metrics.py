"""otlp_metrics events (the metrics exporters' tracepoint: `u32 protocol; char[8] version; __rel_loc u8[] buffer`,
an ExportMetricsServiceRequest inside) to metric point events, rules on them, bad buffers, and forwarding them as
OTLP metrics. The real exporter's events are in tests/data/otel-rust (tests/test_otel_rust_recording.py compares
them with the SDK's own record); here: buffers of other shapes, built with opentelemetry-proto's classes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from support import ROOT

from dyntel.decoders.otlp_metrics import BadMetrics, expand, points
from dyntel.event import ArrayKind, Encoding, Event, FieldInfo, Format, Schema
from dyntel.sources import SourceStats

RECORDING = ROOT / "tests" / "data" / "otel-rust" / "otel-rust.perf.data"
SCHEMA = Schema((FieldInfo("protocol", Encoding.VALUE32), FieldInfo("version", Encoding.ZSTRING_CHAR8),
                 FieldInfo("buffer", Encoding.VALUE8, Format.DEFAULT, ArrayKind.VARIABLE)))


def raw_event(buffer: bytes, protocol: int = 0) -> Event:
    return Event("user_events", "otlp_metrics", SCHEMA, [protocol, "v0.19.00", list(buffer)], source="user_events",
                 time=5, pid=42, tid=43, cpu=1)


def kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def request_with_many_points() -> bytes:
    """Two metrics, several points each, as an exporter that batches (not the Rust one) would write."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", string_value="batcher"))
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = "lib", "2.0"
    gauge = sm.metrics.add(name="queue.length", unit="{item}")
    for n, q in ((3, "a"), (9, "b")):
        p = gauge.gauge.data_points.add(as_int=n, time_unix_nano=1000 + n)
        p.attributes.append(kv("queue", string_value=q))
    summary = sm.metrics.add(name="latency")
    s = summary.summary.data_points.add(count=4, sum=10.0, time_unix_nano=2000)
    s.quantile_values.add(quantile=0.5, value=2.0)
    s.quantile_values.add(quantile=0.99, value=5.0)
    exp = sm.metrics.add(name="sizes")
    exp.exponential_histogram.aggregation_temporality = 2  # type: ignore[assignment]
    e = exp.exponential_histogram.data_points.add(count=3, sum=7.5, scale=1, zero_count=1, time_unix_nano=3000)
    e.positive.offset = 2
    e.positive.bucket_counts.extend([1, 1])
    return req.SerializeToString()


def test_every_data_point_becomes_an_event_named_after_its_metric() -> None:
    got = points(raw_event(request_with_many_points()))
    assert [(e.provider, e.name) for e in got] == [("otlp_metrics", "queue.length")] * 2 + [
        ("otlp_metrics", "latency"), ("otlp_metrics", "sizes")]
    a, b, summary, sizes = (e.fields for e in got)
    assert (a["value"], a["attributes"], b["value"], b["attributes"]) == (3, {"queue": "a"}, 9, {"queue": "b"})
    assert a["metric"] == {"name": "queue.length", "kind": "gauge", "unit": "{item}", "description": "",
                           "temporality": "unspecified", "monotonic": False}
    assert a["resource"] == {"service.name": "batcher"} and a["scope"] == {"name": "lib", "version": "2.0"}
    assert (summary["count"], summary["sum"], summary["quantiles"], summary["quantile_values"]) == (
        4, 10.0, [0.5, 0.99], [2.0, 5.0])
    assert (sizes["metric"]["kind"], sizes["scale"], sizes["zero_count"], sizes["positive_offset"],
            sizes["positive_bucket_counts"]) == ("exponential_histogram", 1, 1, 2, [1, 1])
    # The tracepoint event's own identity stays: time, pid, tid, cpu, source.
    assert (got[0].time, got[0].pid, got[0].tid, got[0].cpu, got[0].source) == (5, 42, 43, 1, "user_events")


@pytest.mark.parametrize("buffer, protocol, where", [
    (b"\x0a\xff\x01\x0a", 0, 0),  # resource_metrics claims 255 bytes, 2 are there
    (b"\x0a\x00\x0f", 0, 2),  # a field of wire type 7
    (b"", 3, 0),  # not protobuf
])
def test_a_bad_buffer_is_counted_with_its_offset_and_the_others_go_on(buffer: bytes, protocol: int,
                                                                      where: int) -> None:
    good = raw_event(request_with_many_points())
    stats = SourceStats()
    told: list[str] = []
    out = list(expand([good, raw_event(buffer, protocol), good], stats, told.append))
    assert len(out) == 8 and stats.bad == 1 and len(told) == 1
    assert f"byte {where} of the OTLP buffer" in told[0] and stats.problems[0].message == told[0]
    assert "user_events:otlp_metrics" in told[0] and "pid 42" in told[0]
    with pytest.raises(BadMetrics):
        points(raw_event(buffer, protocol))


def test_other_events_pass_through_untouched() -> None:
    other = Event("MyProvider", "otlp_metrics")  # the name alone does not make a metrics event
    assert list(expand([other], SourceStats())) == [other]


def test_a_bad_buffer_in_a_replay_is_reported_in_the_summary(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    good = list(request_with_many_points())
    events.write_text(
        json.dumps({"n": "user_events:otlp_metrics", "protocol": 0, "version": "v0.19.00", "buffer": good,
                    "meta": {"time": "2026-01-01T00:00:00Z", "pid": 7}}) + "\n"
        + json.dumps({"n": "user_events:otlp_metrics", "protocol": 0, "version": "v0.19.00",
                      "buffer": [10, 255, 1, 10], "meta": {"time": "2026-01-01T00:00:01Z", "pid": 7}}) + "\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: long-queue\n"
                     "    match: {provider: otlp_metrics, event: queue.length}\n"
                     "    condition: fields.value > 5 and fields.attributes.queue == \"b\"\n"
                     "    actions:\n      - log: {message: \"queue {fields.attributes.queue}\"}\n")
    done = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--rules", str(rules), str(events),
                           "--dry-run", "--format", "json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    firings = [json.loads(line) for line in done.stdout.splitlines()]
    assert [f["rule"] for f in firings] == ["long-queue"], done.stderr
    assert firings[0]["event"]["value"] == 9
    assert "byte 0 of the OTLP buffer" in done.stderr and "1 bad" in done.stderr.replace("bad records", "bad")


class _Collect(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, bytes]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    _Collect.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Collect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collect.bodies
    server.shutdown()
    server.server_close()


def test_dyntel_replay_forwards_the_rust_exporters_metrics_as_otlp_metrics(
        tmp_path: Path, collector: tuple[str, list[tuple[str, bytes]]]) -> None:
    endpoint, bodies = collector
    config = tmp_path / "dyntel.yaml"
    config.write_text(f"forward:\n  endpoint: {endpoint}\n  protocol: http/protobuf\n"
                      "  select:\n    - provider: otlp_metrics\n")
    config.chmod(0o644)
    rules = tmp_path / "none.yaml"
    rules.write_text("version: 1\nrules: []\n")
    done = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--config", str(config), "--rules",
                           str(rules), str(RECORDING), "-q"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {path for path, _ in bodies} == {"/v1/metrics"}
    metrics = [(rm, m) for _, body in bodies
               for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics
               for sm in rm.scope_metrics for m in sm.metrics]
    assert len(metrics) == 9
    by_name: dict[str, list[metrics_pb2.Metric]] = {}
    for _, m in metrics:
        by_name.setdefault(m.name, []).append(m)
    orders = by_name["orders.placed"]
    assert sorted(m.sum.data_points[0].as_int for m in orders) == [5, 7]
    assert all(m.sum.aggregation_temporality == 1 and m.sum.is_monotonic and m.unit == "{order}" for m in orders)
    assert [m.sum.aggregation_temporality for m in by_name["queue.depth"]] == [2, 2]  # cumulative, as the SDK's
    h = next(m for m in by_name["request.duration"] if m.histogram.data_points[0].count == 5).histogram
    assert (h.data_points[0].sum, list(h.data_points[0].bucket_counts)) == (959.0, [1, 2, 0, 1, 1, 0])
    resource = {kv.key: kv.value.string_value for kv in metrics[0][0].resource.attributes}
    assert resource == {"service.name": "otel-rust-peer", "service.instance.id": "peer-1", "service.version": "1.4.2"}
