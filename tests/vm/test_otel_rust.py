"""The real OpenTelemetry Rust user_events exporters (tests/peers/otel-rust) in the VM: `perf record` of their
tracepoints while the app plays its workload, decoded by dyntel, equals field by field what the app's SDK recorded
(with the layout's documented limits, tests/otel_expect.py). The same check runs on the host against the committed
recording (tests/test_otel_rust_recording.py); this one proves that a fresh run of the current exporters still
gives it."""

from __future__ import annotations

from pathlib import Path

from otel_expect import carried_log, carried_span, decode_recording, differences, expected_point, sdk_run
from otelrust import record


def test_a_fresh_recording_of_the_rust_exporters_decodes_to_what_the_sdk_emitted(tmp_path: Path) -> None:
    perf_data, sdk_json, summary = record(tmp_path)
    run, decoded = sdk_run(sdk_json), decode_recording(perf_data)
    assert (summary["logs"], summary["spans"]) == (len(run.logs), len(run.spans)) == (31, 5)
    assert decoded.bad == 0
    assert (len(decoded.logs), len(decoded.spans), len(decoded.points)) == (31, 5, len(run.metrics))
    for sdk, got in zip(run.logs, decoded.logs, strict=True):
        assert differences(carried_log(sdk), got) == [], got
    for sdk, got in zip(run.spans, decoded.spans, strict=True):
        assert differences(carried_span(sdk), got) == [], got
    for sdk, point in zip(run.metrics, decoded.points, strict=True):
        assert differences(expected_point(sdk), point) == [], point
