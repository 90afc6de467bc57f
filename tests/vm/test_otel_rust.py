"""The real OpenTelemetry Rust user_events exporters (tests/peers/otel-rust) in the VM: `perf record` of their
tracepoints while the app plays its workload, decoded by dyntel, equals field by field what the app's SDK recorded
(with the layout's documented limits, tests/otel_expect.py). The same check runs on the host against the committed
recording (tests/test_otel_rust_recording.py); this one proves that a fresh run of the current exporters still
gives it."""

from __future__ import annotations

from pathlib import Path

from otel_expect import carried_log, carried_span, decode_recording, differences, expected_point, sdk_run
from otelrust import LOG_TRACEPOINTS, METRICS_TRACEPOINT, OtelRustApp, record
from vmhelpers import DyntelRun, tracepoint_exists, wait_for


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


def test_debug_logs_are_written_only_while_someone_listens_at_that_level(tmp_path: Path) -> None:
    """The peer's --debug-loop, which part of the enable tests drive: with only the Informational tracepoint
    recorded, the SDK emits (and the exporter writes) Info records and no Debug ones; with the Verbose one too, both."""
    options = ("--signals", "logs", "--repeat", "0", "--debug-loop", "1", "--debug-interval", "50")
    _, sdk_json, summary = record(tmp_path / "info", *options, tracepoints=LOG_TRACEPOINTS,
                                  listen=[LOG_TRACEPOINTS[3]])
    by_level = summary["logs_by_severity"]
    assert by_level.get("INFO", 0) > 0 and "DEBUG" not in by_level, summary
    assert len(sdk_run(sdk_json).logs) == by_level["INFO"]
    _, _, summary = record(tmp_path / "verbose", *options, tracepoints=LOG_TRACEPOINTS,
                           listen=LOG_TRACEPOINTS[3:])
    by_level = summary["logs_by_severity"]
    assert by_level.get("INFO", 0) > 0 and by_level.get("DEBUG", 0) == by_level["INFO"], summary


RULES = """\
version: 1
rules:
  - name: hot-cpu
    match: {provider: otlp_metrics, event: cpu.temperature}
    condition: fields.value > 70 and fields.resource["service.name"] == "otel-rust-peer"
    actions:
      - log: {message: "cpu {fields.value}"}
  - name: request-latency
    match: {provider: otlp_metrics, event: request.duration}
    condition: fields.max > 1000 and fields.attributes.ok == False
    actions:
      - log: {message: "max {fields.max}"}
  - name: checkout-failed
    match: {provider: otel_rust_logs, event: Log}
    condition: fields.PartB.name == "checkout.failed" and fields.PartC.attempt == 3
    actions:
      - log: {message: "{fields.PartB.body}"}
"""


def test_dyntel_run_fires_live_on_the_rust_apps_metric_points_and_logs(tmp_path: Path) -> None:
    """`dyntel run` opens user_events:otlp_metrics for rules on provider otlp_metrics, decodes each data point,
    and fires on a gauge's value and a histogram's max, as on the app's log attributes."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    app = OtelRustApp(tmp_path / "sdk.jsonl", "--signals", "logs,metrics", "--wait-listener", "120",
                      "--settle", "3")
    run = None
    problem = ""
    try:
        for name in [*LOG_TRACEPOINTS, METRICS_TRACEPOINT]:
            wait_for(f"{name} registered", lambda name=name: tracepoint_exists(name))  # type: ignore[misc]
        run = DyntelRun(rules, "--dry-run")
        app.go()  # waits until dyntel has opened the logs tracepoint, then 3 s, then plays
        for rule in ("hot-cpu", "request-latency", "checkout-failed"):
            wait_for(f"{rule} fired", lambda rule=rule: len(run.of(rule)) >= 1)  # type: ignore[misc]
    except AssertionError as e:
        problem = f"{e}: {run.firings if run else ''}"
    finally:
        app.kill()
        status, err = run.stop() if run is not None else (0, "")
    assert not problem and status == 0, f"{problem}\n{err}"
    [hot] = run.of("hot-cpu")
    assert hot["event"]["value"] == 71.5 and hot["event"]["metric"]["kind"] == "gauge"
    [slow] = run.of("request-latency")
    assert slow["event"]["max"] == 2500 and slow["event"]["bucket_counts"] == [0, 0, 0, 0, 0, 1]
    assert len(run.of("checkout-failed")) == 1
