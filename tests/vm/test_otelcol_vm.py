"""The real OpenTelemetry Collector in the guest (loopback), receiving from `dyntel run` on real user_events: a
rule's `otlp` alerts and the `forward:` of the producer's events, once over gRPC and once over HTTP. The collector's
file output is compared field by field with what the producer wrote.

The Python producer (tests/vm/producer.py) stands on the application's side here; test_otel_rust_vm.py puts the
OpenTelemetry Rust exporters there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from producer import EVENT_NAME, expected_fields
from vmhelpers import DyntelRun, Producer, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: otelcol.py
from otelcol import Collector

N = 20
PROTOCOLS = ["grpc", "http/protobuf"]
RULES = """\
version: 1
rules:
  - name: tick-alert
    match: {provider: PROVIDER, event: EVENT}
    condition: fields.seq >= 0
    actions:
      - otlp: {endpoint: "ENDPOINT", protocol: PROTOCOL, severity: ERROR, body: "tick {fields.seq} of pid {pid}",
               attributes: {team: vm}}
  - name: ping
    match: {provider: PROVIDER, event: Ping}
"""
CONFIG = """\
forward:
  endpoint: "ENDPOINT"
  protocol: PROTOCOL
  max_delay: 50ms
  select:
    - {provider: PROVIDER, event: EVENT}
"""


def _fired(run: DyntelRun, rule: str) -> bool:
    try:
        wait_for(f"{rule} fired", lambda: bool(run.of(rule)), timeout=1.0)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_alerts_and_forwarded_events_reach_the_collector_in_the_guest(producers: Callable[[str], Producer],
                                                                      tmp_path: Path, protocol: str) -> None:
    provider = f"DyntelCol{os.getpid()}{protocol[0]}"
    collector = Collector(tmp_path / "otelcol").start()
    try:
        endpoint = collector.endpoint(protocol)

        def text(template: str) -> str:
            return (template.replace("PROVIDER", provider).replace("EVENT", EVENT_NAME)
                    .replace("ENDPOINT", endpoint).replace("PROTOCOL", protocol))

        rules, config = tmp_path / "rules.yaml", tmp_path / "dyntel.yaml"
        rules.write_text(text(RULES))
        config.write_text(text(CONFIG))
        producer = producers(f"{provider}_L5K1")
        run = DyntelRun(rules, "--config", str(config), "--artifacts", str(tmp_path / "artifacts"))
        problem = ""
        try:
            # Under emulation on a busy host, dyntel run can take a minute to import and load its rules.
            wait_for("enabled by dyntel run", lambda: producer.enabled, timeout=180)
            wait_for("a ping fired", lambda: producer.ping() == 1 and _fired(run, "ping"))
            assert producer.write(N) == N
            wait_for(f"{N} firings", lambda: len(run.of("tick-alert")) >= N)
            out = collector.wait_for(logs=2 * N, timeout=60)
        except AssertionError as e:
            problem = str(e)
        finally:
            status, err = run.stop()
        assert not problem and status == 0, f"{problem}\n{err[-3000:]}"
        out = collector.read()
    finally:
        collector.stop()

    pid = producer.proc.pid
    alerts = [r for r in out.logs if r.scope == "dyntel"]
    forwarded = [r for r in out.logs if r.scope == provider]
    assert len(alerts) == N and len(forwarded) == N and len(out.logs) == 2 * N, [r.scope for r in out.logs]
    assert out.spans == [] and out.metrics == []

    # Forwarded: one record per event, its fields as attributes with their types, severity from the level.
    for seq, got in enumerate(forwarded):
        r = got.record
        assert r.event_name == f"{provider}:{EVENT_NAME}"
        assert got.attributes == {**expected_fields(seq), "process.pid": pid, "thread.id": pid}
        assert [kv.value.WhichOneof("value") for kv in r.attributes] == [
            "int_value", "int_value", "string_value", "int_value", "int_value"]
        assert (r.severity_number, r.severity_text) == (5, "DEBUG")  # EventHeader level 5 (verbose)
        assert r.time_unix_nano > 0 and r.observed_time_unix_nano >= r.time_unix_nano - 10**9
        assert got.resource["service.name"] == "dyntel"

    # Alerts: one per firing, naming the rule and the event. Actions run on worker threads, so alerts are numbered
    # (dyntel.alert.seq) in the order their actions ran, which need not be the events' order; the collector gets
    # them in the order of their numbers.
    seqs = [got.attributes["dyntel.alert.seq"] for got in alerts]
    assert seqs == sorted(set(seqs))
    time_of = {r.record.time_unix_nano: seq for seq, r in enumerate(forwarded)}
    unmatched = [got.record.time_unix_nano for got in alerts if got.record.time_unix_nano not in time_of]
    assert not unmatched, f"alert times {unmatched} are no forwarded event's time {sorted(time_of)}"
    by_event = sorted(alerts, key=lambda got: time_of[got.record.time_unix_nano])  # the event's time, as forwarded
    for seq, got in enumerate(by_event):
        r = got.record
        assert r.event_name == "dyntel.alert" and (r.severity_number, r.severity_text) == (17, "ERROR")
        assert r.body.string_value == f"tick {seq} of pid {pid}"
        a = got.attributes
        assert (a["dyntel.rule"], a["dyntel.event.provider"], a["dyntel.event.name"]) == ("tick-alert", provider,
                                                                                           EVENT_NAME)
        assert (a["dyntel.event.level"], a["process.pid"], a["thread.id"], a["team"]) == (5, pid, pid, "vm")
