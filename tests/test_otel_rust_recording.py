"""The real OpenTelemetry Rust user_events exporters (tests/peers/otel-rust, recorded in the user_events VM by
scripts/make-otel-rust-recording.sh) decoded by dyntel and mapped to OpenTelemetry records, compared field by field
with what the SDK itself recorded in the same run (its OTLP JSON).

Every field must come back equal, with its type, except what the exporters' layout cannot carry; those limits are
applied to the SDK's side by tests/otel_expect.py, each one listed (with its reason) in docs/otel.md, and each is
shown below to be real (present in the SDK's records) so that the list cannot go stale.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from otel_expect import (
    Decoded,
    SdkRun,
    attributes,
    carried_log,
    carried_span,
    decode_recording,
    differences,
    expected_point,
    sdk_run,
)

from dyntel.otel.otlp_events import EventEncoder
from dyntel.otel.records import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_INTERNAL,
    SPAN_KIND_PRODUCER,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
)


@pytest.fixture(scope="module")
def run() -> SdkRun:
    return sdk_run()


@pytest.fixture(scope="module")
def decoded() -> Decoded:
    return decode_recording()


def test_every_record_the_sdk_emitted_is_in_the_recording(run: SdkRun, decoded: Decoded) -> None:
    assert decoded.bad == 0
    assert (len(decoded.logs), len(decoded.spans), len(decoded.points)) == (len(run.logs), len(run.spans),
                                                                            len(run.metrics)) == (31, 5, 9)


def test_logs_equal_what_the_sdk_logged_field_by_field(run: SdkRun, decoded: Decoded) -> None:
    for i, (sdk, got) in enumerate(zip(run.logs, decoded.logs, strict=True)):
        want = carried_log(sdk)
        assert differences(want, got) == [], f"log {i}: {want} != {got}"


def test_spans_equal_what_the_sdk_traced_field_by_field(run: SdkRun, decoded: Decoded) -> None:
    for i, (sdk, got) in enumerate(zip(run.spans, decoded.spans, strict=True)):
        want = carried_span(sdk)
        assert differences(want, got) == [], f"span {i}: {want} != {got}"


def test_metric_points_equal_what_the_sdk_exported_field_by_field(run: SdkRun, decoded: Decoded) -> None:
    for i, (sdk, got) in enumerate(zip(run.metrics, decoded.points, strict=True)):
        want = expected_point(sdk)
        assert differences(want, got) == [], f"point {i}: {want} != {got}"


def test_the_workload_covers_what_the_comparison_claims(run: SdkRun, decoded: Decoded) -> None:
    # Every severity with its text; bodies of every scalar type; an event name; an event id; trace context.
    assert sorted({log.severity_number for log in decoded.logs}) == list(range(1, 25))
    assert {log.severity_text for log in decoded.logs if log.severity_number == 2} == {"TRACE2"}
    assert {type(log.body) for log in decoded.logs} >= {str, int, bool, float, type(None)}
    failed = next(log for log in decoded.logs if log.event_name == "checkout.failed")
    assert failed.attributes["event_id"] == 7001 and failed.attributes["retry"] is True
    assert failed.attributes["attempt"] == 3 and failed.attributes["amount"] == 99.5
    assert failed.trace_id is not None and failed.span_id is not None
    # Span kinds, parent and child, an error status with and without its message, links.
    assert {s.kind for s in decoded.spans} == {SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_INTERNAL,
                                               SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER}
    root = next(s for s in decoded.spans if s.parent_span_id is None and not s.links)
    assert all(s.parent_span_id == root.span_id for s in decoded.spans if s.kind in (SPAN_KIND_CLIENT,
                                                                                     SPAN_KIND_INTERNAL))
    charge = next(s for s in decoded.spans if s.name == "charge card")
    assert (charge.status_code, charge.status_message) == (STATUS_ERROR, "card declined")
    db = next(s for s in decoded.spans if s.name == "SELECT orders")
    assert db.end_time_unix_nano - db.start_time_unix_nano == 750_000_000
    assert db.attributes["db.system.name"] == "postgresql"  # Part B's dbSystem, back under its own name
    consumer = next(s for s in decoded.spans if s.kind == SPAN_KIND_CONSUMER)
    assert len(consumer.links) == 2
    # Metrics of every instrument kind, with their temporality and attributes.
    kinds = Counter((p["metric"]["kind"], p["metric"]["temporality"]) for p in decoded.points)
    assert kinds == {("sum", "delta"): 3, ("sum", "cumulative"): 2, ("histogram", "delta"): 2,
                     ("gauge", "unspecified"): 2}


def test_the_limits_applied_are_real(run: SdkRun) -> None:
    """Each limit tests/otel_expect.py applies (docs/otel.md) changes at least one SDK record here."""

    def attr_types(items: list[dict[str, Any]]) -> set[str]:
        return {next(iter(kv["value"])) for kv in items}

    logs = run.logs
    assert {"bytesValue", "arrayValue", "kvlistValue"} <= set().union(*(attr_types(r.get("attributes", []))
                                                                         for r in logs))
    assert any("kvlistValue" in r.get("body", {}) for r in logs)  # a map body: written as ""
    assert any(r.get("flags", 0) for r in logs)  # trace flags: not carried
    assert any(int(r.get("timeUnixNano", "0")) == 0 for r in logs)  # no timestamp: the observed time is written
    assert all(int(r["observedTimeUnixNano"]) for r in logs)  # observed time: not carried
    assert "service.version" in logs[0]["_resource"]  # resource beyond service.name/instance.id: not carried
    spans = run.spans
    assert any(s["status"]["code"] == 1 for s in spans)  # OK comes back as UNSET
    assert any(s["events"] for s in spans)  # span events: not carried
    assert any(link["attributes"] for s in spans for link in s["links"])  # link attributes: not carried
    assert any("arrayValue" in attr_types(s["attributes"]) for s in spans)  # array attributes: ""
    root = next(s for s in spans if s["status"]["code"] == 2 and "http.response.status_code" in
                attributes(s["attributes"]))
    assert root["status"]["message"]  # dropped because the span has an HTTP status code


def test_the_forwarder_encodes_every_recorded_record(decoded: Decoded) -> None:
    """The records go to OTLP by the forwarder's encoder: logs, traces and metrics requests, none dropped."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from otel_expect import RECORDING

    from dyntel.decoders.otlp_metrics import expand
    from dyntel.sources.perf.data import PerfDataSource

    with open(RECORDING, "rb") as f:
        source = PerfDataSource("otel-rust.perf.data", f)
        events = list(expand(source.events(), source.stats))
    requests = EventEncoder().requests(events)
    logs = ExportLogsServiceRequest.FromString(requests["logs"])
    traces = ExportTraceServiceRequest.FromString(requests["traces"])
    metrics = ExportMetricsServiceRequest.FromString(requests["metrics"])
    records = [r for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    spans = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
    points = [m for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    assert (len(records), len(spans), len(points)) == (31, 5, 9)
    assert [r.severity_number for r in records] == [log.severity_number for log in decoded.logs]
    assert [s.name for s in spans] == [s.name for s in decoded.spans]
    by_name = {m.name: m for m in points}
    histogram = by_name["request.duration"].histogram
    assert histogram.aggregation_temporality == 1 and list(histogram.data_points[0].explicit_bounds) == [
        10.0, 50.0, 100.0, 500.0, 1000.0]
    queue = by_name["queue.depth"].sum
    assert (queue.aggregation_temporality, queue.is_monotonic, queue.data_points[0].as_int) == (2, False, 6)
    assert by_name["cpu.temperature"].gauge.data_points[0].as_double == 71.5
