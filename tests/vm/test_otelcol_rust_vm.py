"""The seed's pipeline end to end in the VM: the OpenTelemetry Rust user_events exporters (tests/peers/otel-rust)
write, `dyntel run` listens, and the real OpenTelemetry Collector in the guest receives, once over gRPC and once
over HTTP.

- `forward:` sends every log record, span and metric point the app wrote; the collector's file output equals,
  field by field with types, what the app's SDK emitted (tests/otelcol_compare.py; the layout's limits are in
  docs/otel.md).
- Rules fire on the app's log attributes and severity, on a span's status and on its duration, and on a metric's
  value: each sends an `otlp` alert to the same collector (a log record naming the rule and the event), and the log
  rule takes `stacks` of the app.
- Dynamic telemetry: the app's Debug records are not even emitted while no one listens at that level; a rule's
  `enable` turns level 5 on for 2 s and off again, and the Debug records seen are exactly those the SDK emitted,
  all inside that window.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: otelcol.py, otel_expect.py
from otel_expect import attributes, sdk_run
from otelcol import Collector
from otelcol_compare import compare
from otelrust import LOG_TRACEPOINTS, METRICS_TRACEPOINT, SPAN_TRACEPOINT, OtelRustApp
from vmhelpers import DyntelRun, tracepoint_exists, wait_for

PROTOCOLS = ["grpc", "http/protobuf"]
ALL = [*LOG_TRACEPOINTS, SPAN_TRACEPOINT, METRICS_TRACEPOINT]

RULES = """\
version: 1
rules:
  - name: checkout-failed
    match: {provider: otel_rust_logs, event: Log}
    condition: fields.PartB.severityNumber >= 17 and fields.PartC.attempt == 3
    actions:
      - stacks: {}
      - otlp: {endpoint: "ENDPOINT", protocol: PROTOCOL, severity: ERROR, body: "{fields.PartB.body}"}
  - name: span-failed
    match: {provider: otel_rust_traces, event: Span}
    condition: fields.PartB.success == False
    actions:
      - otlp: {endpoint: "ENDPOINT", protocol: PROTOCOL, severity: ERROR, body: "span {fields.PartB.name} failed"}
  - name: span-slow
    match: {provider: otel_rust_traces, event: Span}
    condition: elapsed_ms(fields.PartB.startTime, fields.PartA.time) > 500
    actions:
      - otlp: {endpoint: "ENDPOINT", protocol: PROTOCOL, severity: WARN, body: "slow span {fields.PartB.name}"}
  - name: cpu-hot
    match: {provider: otlp_metrics, event: cpu.temperature}
    condition: fields.value > 70
    actions:
      - otlp: {endpoint: "ENDPOINT", protocol: PROTOCOL, severity: WARN, body: "cpu at {fields.value}"}
"""


def _duration_ms(span: dict[str, Any]) -> float:
    return (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e6


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_rust_apps_telemetry_reaches_the_collector_through_dyntel_run(tmp_path: Path, protocol: str) -> None:
    started = time.monotonic()
    collector = Collector(tmp_path / "otelcol").start()
    app = run = None
    problem = ""
    try:
        endpoint = collector.endpoint(protocol)
        rules, config = tmp_path / "rules.yaml", tmp_path / "dyntel.yaml"
        rules.write_text(RULES.replace("ENDPOINT", endpoint).replace("PROTOCOL", protocol))
        config.write_text(f"forward:\n  endpoint: \"{endpoint}\"\n  protocol: {protocol}\n  max_delay: 50ms\n")
        # --debug-loop keeps the app alive 15 s after its workload, for the stacks action (which under emulation can
        # start seconds after its firing).
        app = OtelRustApp(tmp_path / "sdk.jsonl", "--wait-listener", "240", "--settle", "3", "--debug-loop", "15",
                          "--debug-interval", "500")
        for name in ALL:
            wait_for(f"{name} registered", lambda name=name: tracepoint_exists(name))  # type: ignore[misc]
        run = DyntelRun(rules, "--config", str(config), "--artifacts", str(tmp_path / "artifacts"),
                        "--events", *(f"user_events:{name}" for name in ALL))
        summary = app.go()
        sdk = sdk_run(app.json_out)
        expected_alerts = _expected_alerts(sdk)
        collector.wait_for(logs=len(sdk.logs) + sum(expected_alerts.values()), spans=len(sdk.spans),
                           metrics=len(sdk.metrics), timeout=120)
        for rule in expected_alerts:
            wait_for(f"{rule} fired", lambda rule=rule: bool(run.of(rule)))  # type: ignore[misc, union-attr]
    except AssertionError as e:
        problem = str(e)
    finally:
        if app is not None:
            app.kill()
        status, err = run.stop() if run is not None else (0, "")
        collector.stop()
    assert not problem and status == 0, f"{problem}\n{err[-4000:]}"
    assert summary["logs"] == len(sdk.logs) and summary["spans"] == len(sdk.spans)

    out = sdk_run(collector.output)
    alerts = [r for r in out.logs if r["_scope"].get("name") == "dyntel"]
    out.logs = [r for r in out.logs if r["_scope"].get("name") != "dyntel"]
    tally = compare(sdk, out, "otel_rust_logs", "otel_rust_traces")
    print(f"\n{protocol}: {len(sdk.logs)} logs, {len(sdk.spans)} spans, {len(sdk.metrics)} metric points, "
          f"{len(alerts)} alerts; {time.monotonic() - started:.0f} s\n{tally.summary()}")
    assert tally.differences == [], "\n".join(tally.differences[:40])
    assert tally.never_set() == ["logs.flags", "metrics.flags", "spans.events", "spans.flags"]

    # The alerts: log records naming the rule and the event, as many as the SDK's records that meet each rule.
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        a = attributes(alert["attributes"])
        by_rule.setdefault(a["dyntel.rule"], []).append({**alert, "_attrs": a})
    assert {rule: len(found) for rule, found in by_rule.items()} == expected_alerts
    [failed] = by_rule["checkout-failed"]
    assert (failed["_attrs"]["dyntel.event.provider"], failed["_attrs"]["dyntel.event.name"]) == (
        "otel_rust_logs", "Log")
    assert failed["body"] == {"stringValue": "payment declined for order 1042"}
    log = next(r for r in sdk.logs if r.get("eventName") == "checkout.failed")
    assert failed["traceId"] == log["traceId"] and failed["spanId"] == log["spanId"]  # the record's context
    for rule, provider, event in (("span-failed", "otel_rust_traces", "Span"), ("span-slow", "otel_rust_traces",
                                                                                "Span"),
                                  ("cpu-hot", "otlp_metrics", "cpu.temperature")):
        for alert in by_rule[rule]:
            assert (alert["_attrs"]["dyntel.event.provider"], alert["_attrs"]["dyntel.event.name"]) == (provider,
                                                                                                       event)
    assert by_rule["cpu-hot"][0]["body"] == {"stringValue": "cpu at 71.5"}

    # stacks of the app, taken while it ran.
    [firing] = run.of("checkout-failed")  # type: ignore[union-attr]
    stacks = next(o for o in firing["actions"] if o["type"] == "stacks")
    assert stacks["status"] == "ok", stacks
    assert firing["event"]["meta"]["pid"] == app.proc.pid  # type: ignore[union-attr]


def _expected_alerts(sdk: Any) -> dict[str, int]:
    """How many times each rule must fire, from the SDK's own records."""
    failed = [r for r in sdk.logs if int(r.get("severityNumber", 0)) >= 17
              and attributes(r.get("attributes", [])).get("attempt") == 3]
    errors = [s for s in sdk.spans if s.get("status", {}).get("code") == 2]
    slow = [s for s in sdk.spans if _duration_ms(s) > 500]
    hot = [m for m in sdk.metrics if m["metric"]["name"] == "cpu.temperature"
           and float(m["point"].get("asDouble", m["point"].get("asInt", 0))) > 70]
    return {"checkout-failed": len(failed), "span-failed": len(errors), "span-slow": len(slow),
            "cpu-hot": len(hot)}


ENABLE_RULES = """\
version: 1
rules:
  - name: trigger
    match: {provider: otel_rust_logs, event: Log, level: 4}
    condition: fields.PartB.name == "tick" and fields.PartC.tick == TRIGGER
    limit: {actions: 1, per: 1h}
    actions:
      - enable: {provider: otel_rust_logs, level: 5, for: 2s}
  - name: info
    match: {provider: otel_rust_logs, event: Log, level: 4}
    condition: fields.PartB.name == "tick"
  - name: verbose
    match: {event: Log}
    condition: provider == "otel_rust_logs" and level == 5
"""
TRIGGER = 20  # about 1 s into the loop at 50 ms a tick
INTERVAL_MS = 50


def test_enable_turns_the_apps_debug_logs_on_for_two_seconds(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ENABLE_RULES.replace("TRIGGER", str(TRIGGER)))
    app = OtelRustApp(tmp_path / "sdk.jsonl", "--signals", "logs", "--repeat", "0", "--wait-listener", "240",
                      "--settle", "3", "--debug-loop", "7", "--debug-interval", str(INTERVAL_MS))
    run = None
    problem = ""
    try:
        for name in LOG_TRACEPOINTS:
            wait_for(f"{name} registered", lambda name=name: tracepoint_exists(name))  # type: ignore[misc]
        run = DyntelRun(rules, "--artifacts", str(tmp_path / "artifacts"))
        summary = app.go()
        time.sleep(1.0)  # the last events on their way through the live source
    except AssertionError as e:
        problem = str(e)
    finally:
        app.kill()
        status, err = run.stop() if run is not None else (0, "")
    assert not problem and status == 0, f"{problem}\n{err[-4000:]}"

    sdk = sdk_run(app.json_out)
    info = [r for r in sdk.logs if r.get("severityText") == "INFO"]
    debug = [r for r in sdk.logs if r.get("severityText") == "DEBUG"]
    assert summary["logs_by_severity"] == {"INFO": len(info), **({"DEBUG": len(debug)} if debug else {})}
    [trigger] = run.of("trigger")  # type: ignore[union-attr]
    outcome = trigger["actions"][0]
    assert outcome["status"] == "ok" and outcome["opened"] == ["user_events:otel_rust_logs_L5K1"], outcome

    # Info: every record the SDK emitted was seen, in order.
    seen_info = [f["event"]["PartC"]["tick"] for f in run.of("info")]  # type: ignore[union-attr]
    assert seen_info == [attributes(r["attributes"])["tick"] for r in info]
    # Debug: emitted only while level 5 was enabled (2 s from the trigger), and every one emitted was seen.
    ticks = [attributes(r["attributes"])["tick"] for r in debug]
    seen_debug = [f["event"]["PartC"]["tick"] for f in run.of("verbose")]  # type: ignore[union-attr]
    assert seen_debug == ticks, (seen_debug, ticks)
    times = [int(r["timeUnixNano"]) for r in debug]
    trigger_time = int(next(r["timeUnixNano"] for r in info if attributes(r["attributes"])["tick"] == TRIGGER))
    window = (times[-1] - times[0]) / 1e9
    assert times[0] > trigger_time and 1.5 <= window <= 2.6, (window, (times[0] - trigger_time) / 1e9)
    assert ticks == list(range(ticks[0], ticks[-1] + 1))  # one a tick while on: none missing in the window
    assert ticks[0] > TRIGGER and ticks[-1] < max(attributes(r["attributes"])["tick"] for r in info)
    print(f"\nInfo emitted {len(info)}, seen {len(seen_info)}; Debug emitted {len(debug)} (ticks {ticks[0]}.."
          f"{ticks[-1]}, over {window:.2f} s, from {(times[0] - trigger_time) / 1e9:.2f} s after the trigger), "
          f"seen {len(seen_debug)}; outside the window emitted 0. {json.dumps(outcome)[:300]}")
