"""dyntel's own metrics after a known replay, the health and status endpoints over a real socket, `dyntel status`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import ROOT

from dyntel.engine.engine import Engine
from dyntel.engine.status import rule_statuses
from dyntel.replay import ReplayOptions, replay
from dyntel.rules.loader import load_rules
from dyntel.runtime.scheduler import ActionRuntime, Scheduler
from dyntel.service.http_server import Health, ObserveServer
from dyntel.service.metrics import Observed, exposition, registry_for, values

DEMO = ROOT / "dyntel" / "data" / "demo.perf.data"


@pytest.fixture(scope="module")
def replayed() -> tuple[Observed, object]:
    rules = load_rules([str(ROOT / "rules")])
    runtime = ActionRuntime(log=open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the module's tests
    engine = Engine(rules, Scheduler(runtime=runtime))
    result = replay(rules, str(DEMO), lambda f, s: None, ReplayOptions(), engine=engine)
    return Observed(source_stats=result.source_stats, engine=engine, runtime=runtime), result


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_metrics_after_the_demo_replay(replayed: tuple[Observed, object]) -> None:
    observed, _ = replayed
    v = values(registry_for(observed))
    # The figures `dyntel replay` prints for the demo: 6246 records, 5657 events of which 4347 no rule can take
    # (dropped before decoding), 3 firings, one per rule.
    assert v[("dyntel_events_read_total", ())] == 6246
    assert v[("dyntel_events_decoded_total", ())] == 1310
    assert v[("dyntel_engine_events_total", ())] == 1310
    assert v[("dyntel_rule_firings_total", (("rule", "missing-file-burst"),))] == 1
    assert v[("dyntel_rule_matches_total", (("rule", "missing-file-burst"),))] == 1226
    assert v[("dyntel_rule_candidates_total", (("rule", "exec-storm"),))] == 83
    assert v[("dyntel_rule_suppressed_total", (("reason", "cooldown"), ("rule", "missing-file-burst")))] \
        + v[("dyntel_rule_suppressed_total", (("reason", "limit"), ("rule", "missing-file-burst")))] == 5
    assert v[("dyntel_action_outcomes_total", (("status", "ok"), ("type", "log")))] == 3
    assert v[("dyntel_events_dropped_total", (("reason", "malformed"),))] == 0
    assert sum(n for (name, _), n in v.items() if name == "dyntel_rule_firings_total") == 3
    assert b"# TYPE dyntel_rule_firings_total counter" in exposition(registry_for(observed))


def test_rule_status_after_the_replay(replayed: tuple[Observed, object]) -> None:
    observed, _ = replayed
    assert observed.engine is not None
    by_name = {s.name: s for s in rule_statuses(observed.engine)}
    burst = by_name["missing-file-burst"]
    assert burst.kind == "count" and burst.fired == 1 and burst.window_fill is not None
    assert burst.window_fill.endswith("in 1s")
    killed = by_name["process-killed"]
    assert killed.kind == "event" and killed.fired == 1 and killed.state in ("running", "cooldown")


def test_endpoints_over_a_socket_and_dyntel_status(replayed: tuple[Observed, object]) -> None:
    observed, _ = replayed
    health = Health(stall_after=0.5)
    assert observed.engine is not None
    engine: Engine = observed.engine
    server = ObserveServer("127.0.0.1:0", registry_for(observed), health,
                           status=lambda: [s.to_json() for s in rule_statuses(engine)]).start()
    base = f"http://{server.address}"
    try:
        assert get(base + "/readyz")[0] == 503  # sources not open yet
        health.ready = True
        assert get(base + "/readyz") == (200, b"ok\n")
        health.beat()
        assert get(base + "/healthz") == (200, b"ok\n")
        import time

        time.sleep(0.6)  # no beat for longer than stall_after: a wedged loop
        code, body = get(base + "/healthz")
        assert code == 503 and b"not checked in" in body
        code, body = get(base + "/metrics")
        assert code == 200 and b'dyntel_rule_firings_total{rule="exec-storm"} 1.0' in body
        status = json.loads(get(base + "/status")[1])
        assert {r["name"] for r in status["rules"]} >= {"missing-file-burst", "exec-storm", "process-killed"}
        table = subprocess.run([sys.executable, "-m", "dyntel.cli", "status", "--endpoint", base],
                               capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert table.returncode == 0, table.stderr
        header, *rows = table.stdout.splitlines()
        assert header.split()[:3] == ["RULE", "STATE", "KIND"]
        assert any(r.split()[0] == "exec-storm" and r.split()[-2] == "1" for r in rows), table.stdout
        health.stopped = True
        assert get(base + "/readyz")[0] == 503
    finally:
        server.close()
    down = subprocess.run([sys.executable, "-m", "dyntel.cli", "status", "--endpoint", base],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert down.returncode == 1 and "cannot reach" in down.stderr


def test_dyntel_run_serves_metrics_health_and_status_live(tmp_path: Path) -> None:
    """A live `dyntel run` from a config file: ready once its tracepoints are open, its counters move with the
    kernel's events, `dyntel status` reads its rules, and readiness goes when it stops."""
    import os
    import socket
    import time

    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("dyntel run needs root (perf_event_open on tracepoints)")
        pytest.skip("needs root")
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: getppid-seen\n    match: {provider: syscalls, "
                     "event: sys_enter_getppid}\n    cooldown: 1h\n    actions:\n      - log: seen\n")
    config = tmp_path / "dyntel.yaml"
    config.write_text(f"rules: [{rules}]\nmetrics: {{listen: '127.0.0.1:{port}'}}\n"
                      f"artifacts: {{dir: {tmp_path / 'arts'}}}\n")
    for p in (rules, config):
        p.chmod(0o644)
    run = subprocess.Popen([sys.executable, "-m", "dyntel.cli", "run", "--config", str(config), "--duration", "8",
                            "--no-reload"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 6
        code = 0
        while time.monotonic() < deadline:
            try:
                code = get(base + "/readyz")[0]
            except OSError:
                code = 0
            if code == 200:
                break
            time.sleep(0.1)
        assert code == 200
        for _ in range(20):
            os.getppid()
        time.sleep(0.5)
        assert get(base + "/healthz")[0] == 200
        metrics = get(base + "/metrics")[1].decode()
        fired = [ln for ln in metrics.splitlines() if ln.startswith('dyntel_rule_firings_total{rule="getppid-seen"}')]
        assert fired == ['dyntel_rule_firings_total{rule="getppid-seen"} 1.0'], metrics
        matched = [ln for ln in metrics.splitlines() if ln.startswith('dyntel_rule_matches_total{rule="getppid-seen"}')]
        assert float(matched[0].split()[-1]) >= 20
        status = subprocess.run([sys.executable, "-m", "dyntel.cli", "status", "--endpoint", base, "--json"],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
        rule = json.loads(status.stdout)["rules"][0]
        assert rule["name"] == "getppid-seen" and rule["state"] == "cooldown" and rule["fired"] == 1
        # Every queue's counts, live: in the metrics, /status and `dyntel status`.
        queues = {q["name"]: q for q in json.loads(status.stdout)["queues"]}
        assert queues["actions"]["in"] == 1 and queues["actions"]["capacity"] == 64
        assert queues["perf rings"]["in"] >= 20 and "kernel: ring full" in queues["perf rings"]["dropped"]
        assert 'dyntel_queue_in_total{kind="actions",queue="actions"} 1.0' in metrics
        assert "dyntel_otlp_spool_depth 0.0" in metrics
        text = subprocess.run([sys.executable, "-m", "dyntel.cli", "status", "--endpoint", base],
                              capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
        assert "actions: 1 firings in, " in text and "perf rings: " in text
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert f"metrics and health on http://127.0.0.1:{port}/" in err
    # The exit summary: the source's counts, kernel losses and every queue, not only the number of firings.
    assert "dyntel run: 1 firing(s); " in err and "sample(s) lost by the kernel (full ring)" in err
    assert "actions: 1 firings in, 1 out, 0 dropped, 0 of 64 waiting" in err


def test_own_metrics_as_otlp_reach_a_collector(replayed: tuple[Observed, object]) -> None:
    """The same registry pushed as ExportMetricsServiceRequest to an HTTP server parsing it with opentelemetry-proto:
    counters as monotonic cumulative sums with their labels, the final push on close."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from dyntel.service.metrics_otlp import OtlpMetricsPusher

    got: list[ExportMetricsServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert self.path == "/v1/metrics"
            got.append(ExportMetricsServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    observed, _ = replayed
    try:
        pusher = OtlpMetricsPusher(registry_for(observed), f"http://127.0.0.1:{server.server_address[1]}",
                                   interval=0.2).start()
        import time

        time.sleep(0.5)
        pusher.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(got) >= 2 and pusher.failed == 0
    metrics = {m.name: m for m in got[-1].resource_metrics[0].scope_metrics[0].metrics}
    firings = metrics["dyntel_rule_firings_total"]
    assert firings.sum.is_monotonic and firings.sum.aggregation_temporality == 2  # cumulative
    by_rule = {p.attributes[0].value.string_value: p.as_double for p in firings.sum.data_points}
    assert by_rule["exec-storm"] == 1 and by_rule["missing-file-burst"] == 1
    assert metrics["dyntel_events_read_total"].sum.data_points[0].as_double == 6246
    resource = {a.key: a.value.string_value for a in got[-1].resource_metrics[0].resource.attributes}
    assert resource["service.name"] == "dyntel"
