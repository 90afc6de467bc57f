"""Nothing silent: every queue and buffer counts what it drops, by reason, and the counts reach the metrics, the exit
summary and /status. Each queue is overflowed here and its drops are read back where a person or a scraper would
read them."""

from __future__ import annotations

import ctypes
import json
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from otlp_receiver import free_port
from support import ROOT

from dyntel.actions.recorder import BYTE_CAP, FlightRecorder
from dyntel.batch_queue import NOT_SENT_AT_SHUTDOWN, BatchQueue
from dyntel.event import Event
from dyntel.firing import OK, SKIPPED, ActionOutcome, Firing
from dyntel.forwarding import FAILED_ALL_TRIES, ForwardConfig, Forwarder
from dyntel.otel import exporter as exporter_module
from dyntel.otel.exporter import AlertExporter, ExporterSettings, delivery_lines
from dyntel.otel.otlp_proto import LogRecord
from dyntel.otel.otlp_transport import make_transport
from dyntel.queues import QUEUE_FULL, SHUTDOWN, QueueRegistry
from dyntel.rules.model import ActionSpec
from dyntel.runtime.action_log import ActionLog
from dyntel.runtime.limits import TypeLimits
from dyntel.runtime.pool import PooledScheduler
from dyntel.runtime.scheduler import ActionRuntime
from dyntel.service.metrics import Observed, registry_for, values
from dyntel.service.summary import exit_summary

DEMO = ROOT / "dyntel" / "data" / "demo.perf.data"


def dropped(v: dict, queue: str, reason: str) -> float:
    return v.get(("dyntel_queue_dropped_total", (("kind", _kind(v, queue)), ("queue", queue), ("reason", reason))),
                 0.0)


def _kind(v: dict, queue: str) -> str:
    for (name, labels) in v:
        d = dict(labels)
        if name == "dyntel_queue_in_total" and d.get("queue") == queue:
            return d["kind"]
    raise AssertionError(f"no queue {queue!r} in the metrics: {sorted({dict(k[1]).get('queue') for k in v})}")


def metric_lines(text: str, name: str) -> dict[str, float]:
    """The samples of one family in a Prometheus text file, by their label text."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            out[labels[len(name):]] = float(value)
    return out


# --- the forwarder, through `dyntel replay` ------------------------------------------------------------------------

def test_a_replay_forwarding_to_a_closed_port_shows_the_drops_in_its_summary_and_metrics(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: every export is refused at once
    endpoint = f"http://127.0.0.1:{port}"
    config = tmp_path / "dyntel.yaml"
    config.write_text(f"forward:\n  endpoint: {endpoint}\n  retries: 1\n  timeout: 2s\n"
                      "  select:\n    - {provider: signal, event: signal_generate}\n")
    config.chmod(0o644)
    metrics = tmp_path / "metrics.prom"
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--config", str(config), "--rules",
                           str(ROOT / "rules"), str(DEMO), "--metrics", str(metrics)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # How many events the selection takes, counted by the decoder, not by the forwarder.
    decoded = subprocess.run([sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl", str(DEMO)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    n = sum(1 for line in decoded.splitlines() if '"n":"signal:signal_generate"' in line)
    assert n > 0
    # The exit summary: the forward queue's line with the number and the reason.
    line = f"forward {endpoint}: {n} events in, 0 out, {n} dropped ({n} {FAILED_ALL_TRIES}), 0 of 65536 waiting"
    assert line in proc.stderr, proc.stderr
    # The --metrics file: the same counts, labelled by queue and reason.
    text = metrics.read_text()
    label = f'{{kind="forward",queue="forward {endpoint}"'
    assert metric_lines(text, "dyntel_queue_in_total")[label + "}"] == n
    assert metric_lines(text, "dyntel_queue_out_total")[label + "}"] == 0
    assert metric_lines(text, "dyntel_queue_dropped_total")[f'{label},reason="{FAILED_ALL_TRIES}"}}'] == n
    assert metric_lines(text, "dyntel_queue_capacity")[f'{label},unit="events"}}'] == 65536

    # -q leaves out the summary, never the drops.
    quiet = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--config", str(config), "--rules",
                            str(ROOT / "rules"), str(DEMO), "-q"], capture_output=True, text=True, cwd=ROOT,
                           timeout=120)
    assert quiet.returncode == 0 and line in quiet.stderr and "records" not in quiet.stderr, quiet.stderr


@pytest.fixture
def hung_collector() -> Iterator[str]:
    """A collector that accepts connections and never answers: each export waits for its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    t.join()
    for c in held:
        c.close()
    server.close()


def test_a_full_forward_queue_drops_its_oldest_and_counts_them(hung_collector: str) -> None:
    queues = QueueRegistry()
    config = ForwardConfig(hung_collector, batch=5, max_delay=0.05, queue=10, timeout=0.5, retries=0)
    f = Forwarder(config, queues=queues)
    for i in range(100):
        f.offer(Event("MyService", "Tick", pid=i))
    stats = f.close(timeout=3.0)
    [q] = queues.to_json()
    # The first batch hangs in its export while 95 more come: the queue of 10 keeps the newest.
    assert q["in"] == 100 and q["out"] == 0 and q["dropped_total"] == 100
    assert q["dropped"][QUEUE_FULL] >= 80
    assert q["dropped"][QUEUE_FULL] + q["dropped"][FAILED_ALL_TRIES] + q["dropped"].get(NOT_SENT_AT_SHUTDOWN, 0) \
        == 100
    assert stats.dropped == 100 and stats.dropped_by_reason == q["dropped"]
    v = values(registry_for(Observed(queues=queues)))
    assert dropped(v, f"forward {hung_collector}", QUEUE_FULL) == q["dropped"][QUEUE_FULL]


# --- the action pool ---------------------------------------------------------------------------------------------

@pytest.fixture
def slow_action(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("dyntel.actions.nap")
    mod.TYPE = "nap"  # type: ignore[attr-defined]

    def run(spec: ActionSpec, firing: Firing, context: object) -> ActionOutcome:
        time.sleep(float(spec.options.get("s", 0)))
        return ActionOutcome("nap", OK, {})

    mod.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dyntel.actions.nap", mod)
    from dyntel.actions import registry
    monkeypatch.setattr(registry, "_found", {})


def test_the_action_pool_gives_every_firing_an_outcome_and_counts_each_drop(slow_action: None,
                                                                          tmp_path: Path) -> None:
    log_path = tmp_path / "actions.jsonl"
    queues = QueueRegistry()
    logged: list[str] = []
    runtime = ActionRuntime(limits={"nap": TypeLimits(concurrent=4)}, action_log=ActionLog(log_path),
                            queues=queues)
    runtime.context.log = logged.append
    done: list[Firing] = []
    pool = PooledScheduler(runtime, workers=1, queue_size=2, on_done=done.append)
    firings = [Firing(f"f{i}", i, {}, None) for i in range(6)]
    pool.submit(firings[0], [ActionSpec("nap", {"s": 1.0})])
    deadline = time.monotonic() + 5
    while pool.pending() and time.monotonic() < deadline:  # the worker has taken it
        time.sleep(0.001)
    for f in firings[1:5]:
        pool.submit(f, [ActionSpec("nap", {"s": 0.0})])  # two wait, two find the queue full
    pool.close(timeout=0.2)  # the first still runs: the two waiting are not started
    pool.submit(firings[5], [ActionSpec("nap", {"s": 0.0})])  # after close
    deadline = time.monotonic() + 5
    while len(done) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert [f.rule for f in done] == [f.rule for f in firings]  # every firing reported, in order
    assert all(len(f.actions) == 1 for f in firings)  # every action has an outcome
    reasons = [f.actions[0].detail.get("reason", "") for f in firings]
    assert firings[0].actions[0].status == OK
    assert [r.split(":")[0] for r in reasons[1:]] == ["shutdown", "shutdown", "queue full", "queue full",
                                                      "shutdown"]
    assert all(f.actions[0].status == SKIPPED for f in firings[1:])
    counts = pool.counts
    assert counts.put == 6 and counts.out == 1 and counts.dropped == {QUEUE_FULL: 2, SHUTDOWN: 3}
    assert runtime.outcomes[("nap", SKIPPED)] == 5
    # One action-log line per outcome, the skipped ones included, with their reason.
    lines = [json.loads(x) for x in log_path.read_text().splitlines()]
    assert sorted(x["rule"] for x in lines) == [f.rule for f in firings]
    assert sum(1 for x in lines if x["status"] == SKIPPED and x["reason"].startswith("shutdown")) == 3
    assert any("2 queued firing(s) not started" in line for line in logged)
    v = values(registry_for(Observed(queues=queues)))
    assert dropped(v, "actions", QUEUE_FULL) == 2 and dropped(v, "actions", SHUTDOWN) == 3
    text = exit_summary("dyntel run: 6 firing(s)", queues=queues)
    assert "actions: 6 firings in, 1 out, 5 dropped (2 queue full, 3 shutdown), 0 of 2 waiting" in text


# --- the alert exporter and its spool ------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def close_exporters() -> Iterator[None]:
    yield
    exporter_module.close_all(timeout=1.0)


def test_alerts_past_memory_go_to_the_spool_and_a_full_spool_counts_what_it_deletes(tmp_path: Path) -> None:
    queues = QueueRegistry()
    endpoint = f"http://127.0.0.1:{free_port()}"  # down
    settings = ExporterSettings(max_delay=60.0, memory_limit=5, spool_max_files=10, sync=False, timeout=1.0)
    ex = AlertExporter(make_transport(endpoint, "http/protobuf"), tmp_path / "spool", settings, queues=queues)
    submitted = [ex.submit(lambda seq, n=n: LogRecord(body={"int_value": n}).SerializeToString()) for n in range(30)]
    summary = ex.close(timeout=0.3)
    by_name = {q["name"]: q for q in queues.to_json()}
    memory, spool = by_name[f"otlp alerts {endpoint}"], by_name[f"otlp spool {endpoint}"]
    # Memory held 5; the sixth moved them and itself to the spool (moved, not dropped), where all later ones went
    # directly; the spool keeps the newest 10.
    assert memory["in"] == 6 and memory["out"] == 6 and memory["dropped_total"] == 0
    assert spool["in"] == 30 and spool["size"] == 10 and spool["capacity"] == 10
    assert spool["dropped"]["spool full: oldest deleted"] == 20
    assert sum(s.dropped for s in submitted) == 20
    assert summary["dropped"] == 20 and summary["pending"] == 10
    [line] = delivery_lines({(endpoint, "http/protobuf"): summary})
    assert "0 exported, 20 dropped (spool full: the oldest deleted), 10 left in the spool" in line


def test_a_replay_alerting_a_collector_that_is_down_shows_the_spool_depth(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: killed\n    match: {provider: signal, event: signal_generate}\n"
                     f"    condition: fields.sig == 9\n    actions:\n      - otlp: {{endpoint: \"{endpoint}\"}}\n")
    rules.chmod(0o644)
    metrics = tmp_path / "metrics.prom"
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--rules", str(rules), str(DEMO),
                           "--artifacts", str(tmp_path / "art"), "--metrics", str(metrics)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fired = len(proc.stdout.splitlines())
    assert fired >= 1
    assert f"otlp alerts to {endpoint} (http/protobuf): 0 exported, {fired} left in the spool" in proc.stderr
    text = metrics.read_text()
    assert metric_lines(text, "dyntel_otlp_spool_depth")[""] == fired
    assert len(list((tmp_path / "art" / "otlp-spool").rglob("*.rec"))) == fired


# --- the flight recorder, the live ETW queue, the perf rings -------------------------------------------------------

def test_the_flight_recorder_counts_what_its_byte_cap_pushes_out() -> None:
    queues = QueueRegistry()
    recorder = FlightRecorder(max_bytes=10_000, queues=queues)
    for i in range(200):
        recorder.append(Event("P", "E", values=[i], time=i))
    [q] = queues.to_json()
    assert q["name"] == "flight recorder" and q["in"] == 200
    assert q["dropped"][BYTE_CAP] == recorder.dropped > 0
    assert q["size"] == recorder.bytes <= 10_000 and q["capacity"] == 10_000 and q["size_unit"] == "bytes"
    assert q["in"] == q["out"] + q["dropped_total"] + recorder.events


def test_the_live_etw_queue_counts_what_a_full_queue_drops() -> None:
    from test_etw_live_structs import encoded_record

    from dyntel.sources.etw.live import EtwLiveSource

    queues = QueueRegistry()
    source = EtwLiveSource([], session="test", queue_size=2, queues=queues)
    built, _ = encoded_record()
    for _ in range(5):
        source.pump.callback(ctypes.pointer(built.record))
    [q] = queues.to_json()
    assert q["name"] == "etw queue" and q["in"] == 5 and q["size"] == 2 and q["capacity"] == 2
    assert q["dropped"] == {QUEUE_FULL: 3}
    v = values(registry_for(Observed(queues=queues)))
    assert dropped(v, "etw queue", QUEUE_FULL) == 3


def test_the_perf_rings_count_the_kernels_losses() -> None:
    from test_live_ring import SYS_ENTER, FakeRing, drained, lost, sample, source_with, sys_enter_raw

    from dyntel.live import KERNEL_LOST, _count_perf_rings

    queues = QueueRegistry()
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    src.ring_pages = 4
    _count_perf_rings(queues, src)
    ring.put(lost(11, 5))
    ring.put(sample(11, sys_enter_raw(1)))
    ring.put(lost(11, 2))
    assert len(drained(src)) == 1
    [q] = queues.to_json()
    assert q["name"] == "perf rings" and q["dropped"] == {KERNEL_LOST: 7}
    assert q["capacity"] == 4 * 4096 * 1 and q["size_unit"] == "bytes"
    text = exit_summary("dyntel run: 0 firing(s)", source_stats=src.stats, queues=queues)
    assert "7 sample(s) lost by the kernel (full ring)" in text and f"7 {KERNEL_LOST}" in text


# --- the queue itself ----------------------------------------------------------------------------------------------

def test_batch_queue_flushes_on_demand_and_counts_what_shutdown_leaves() -> None:
    sent: list[list[int]] = []
    gate = threading.Event()

    def export(batch: list[int]) -> None:
        gate.wait()
        sent.append(batch)

    q: BatchQueue[int] = BatchQueue("t", export, max_batch=3, max_delay=60.0, capacity=100, export_grace=0.1)
    for i in range(2):
        q.put(i)
    gate.set()
    assert q.force_flush(5.0) and sent == [[0, 1]]  # without waiting for max_delay
    gate.clear()
    for i in range(2, 9):
        q.put(i)  # 2,3,4 go at once (a full batch), and hang
    q.shutdown(0.2)
    gate.set()
    assert not q.put(99)
    c = q.counts
    assert c.put == 10 and c.out == 2
    assert c.dropped == {NOT_SENT_AT_SHUTDOWN: 7, SHUTDOWN: 1}


def test_the_queue_counts_are_in_the_otlp_self_metrics_too() -> None:
    """The OTLP push of dyntel's own metrics reads the same registry: the drops are there, parsed back with
    opentelemetry-proto's classes."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from dyntel.service.metrics_otlp import metrics_request

    queues = QueueRegistry()
    counts = queues.add("forward http://x:4318", kind="forward", unit="events", capacity=10)
    counts.put, counts.out = 12, 2
    counts.drop(QUEUE_FULL, 10)
    request = ExportMetricsServiceRequest.FromString(metrics_request(registry_for(Observed(queues=queues))))
    metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    [point] = metrics["dyntel_queue_dropped_total"].sum.data_points
    assert point.as_double == 10 and metrics["dyntel_queue_dropped_total"].sum.is_monotonic
    assert {a.key: a.value.string_value for a in point.attributes} == {
        "kind": "forward", "queue": "forward http://x:4318", "reason": QUEUE_FULL}
    assert metrics["dyntel_queue_capacity"].gauge.data_points[0].as_double == 10


def test_the_run_summary_names_rule_errors_and_kernel_losses() -> None:
    from dyntel.engine.stats import EngineStats, RuleStats
    from dyntel.sources.perf.live import LiveStats

    engine = EngineStats(events=10, rules={"ok": RuleStats(candidates=5),
                                           "bad": RuleStats(candidates=5, errors=3,
                                                            last_error="ZeroDivisionError: division by zero")})
    source = LiveStats(records=12, events=10, lost=4)
    text = exit_summary("dyntel run: 0 firing(s)", source_stats=source, engine=engine, queues=QueueRegistry())
    assert text.startswith("dyntel run: 0 firing(s); 12 record(s) read, 10 event(s) decoded, 0 malformed, "
                           "4 sample(s) lost by the kernel (full ring)\n")
    assert "rule errors: 3 event(s) on which a rule raised" in text
    assert "bad: 3 (last: ZeroDivisionError: division by zero)" in text and "ok:" not in text
