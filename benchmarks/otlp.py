"""OTLP throughput: dyntel's alerts and forwarding beside the OpenTelemetry Python SDK's own OTLP log exporters.

One receiver (tests/otlp_receiver.py, in its own process so that its parsing does not share this process's GIL)
takes everything, over HTTP and gRPC. Each figure is records per second from the first record offered until the
receiver has counted the last one, so sending is included, not only queueing.

- forward: `Forwarder.offer(event)` of decoded events (plain events with 8 fields, and Common Schema log events
  written by the SDK through dyntel's producer), batch 512.
- SDK pipeline: the same records emitted through the SDK (`Logger.emit` of the same attributes) with its
  BatchLogRecordProcessor (max_export_batch_size 512) and OTLPLogExporter (-proto-http / -proto-grpc).
- SDK export only: the SDK's records made beforehand (not timed), then `OTLPLogExporter.export` in batches of 512:
  the encoding and sending alone, the most favourable way to count the SDK.
- alerts: the `otlp` action run per firing (queued to the sender thread) until all arrived; and spooled (the
  collector down: each alert fsynced to the spool before the action returns).

    python benchmarks/otlp.py [--events 20000] [--alerts 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry._logs import SeverityNumber  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider  # noqa: E402
from opentelemetry.sdk._logs.export import (  # noqa: E402
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource  # noqa: E402

from dyntel.actions import ActionContext  # noqa: E402
from dyntel.actions import otlp as otlp_action  # noqa: E402
from dyntel.decoders.eventheader import EventHeaderDecoder  # noqa: E402
from dyntel.event import ArrayKind, Encoding, Event, FieldInfo, Format, Schema  # noqa: E402
from dyntel.firing import Firing  # noqa: E402
from dyntel.forwarding import ForwardConfig, Forwarder  # noqa: E402
from dyntel.otel import exporter as exporter_module  # noqa: E402
from dyntel.producer.otel import UserEventsLogProcessor  # noqa: E402
from dyntel.producer.sink import capture_pair  # noqa: E402
from dyntel.rules.model import ActionSpec  # noqa: E402

BATCH = 512
PROTOCOLS = ("http/protobuf", "grpc")


class RemoteReceiver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "otlp_receiver.py"), "--count-only"],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.http_port, self.grpc_port = ports["http_port"], ports["grpc_port"]

    def endpoint(self, protocol: str) -> str:
        return f"http://127.0.0.1:{self.http_port}" if protocol == "http/protobuf" else f"127.0.0.1:{self.grpc_port}"

    def logs(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/stats", timeout=5) as r:
            return int(json.load(r)["logs"])

    def wait(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.logs() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the receiver counted {self.logs()} of {count} records")
            time.sleep(0.002)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def plain_events(n: int) -> list[Event]:
    schema = Schema((
        FieldInfo("path", Encoding.ZSTRING_CHAR8), FieldInfo("method", Encoding.ZSTRING_CHAR8),
        FieldInfo("status", Encoding.VALUE32, Format.SIGNED_INT), FieldInfo("bytes", Encoding.VALUE64),
        FieldInfo("latency_ms", Encoding.VALUE64, Format.FLOAT), FieldInfo("cached", Encoding.VALUE8, Format.BOOLEAN),
        FieldInfo("user", Encoding.ZSTRING_CHAR8), FieldInfo("ports", Encoding.VALUE16, Format.PORT,
                                                              ArrayKind.VARIABLE),
    ))
    now = time.time_ns()
    return [Event("MyService", "RequestDone", schema,
                  [f"/api/cart/{i % 100}", "GET", 200 + i % 5, 1000 + i, 1.5 + i % 10, i % 2, "alice", [80, 443]],
                  source="user_events", time=now + i, pid=1000, tid=1001, level=4) for i in range(n)]


def attributes_of(event: Event) -> dict[str, Any]:
    fields = dict(event.fields)
    fields["cached"] = bool(fields["cached"])
    return {**fields, "process.pid": event.pid, "thread.id": event.tid}


def common_schema_events(n: int) -> list[Event]:
    sink, reader = capture_pair()
    try:
        provider = LoggerProvider(resource=Resource({"service.name": "checkout"}))
        provider.add_log_record_processor(UserEventsLogProcessor("bench", sink=sink))
        logger = provider.get_logger("bench")
        decoder = EventHeaderDecoder()
        out: list[Event] = []
        for i in range(n):
            logger.emit(severity_number=SeverityNumber.INFO, body=f"request {i}",
                        attributes={"path": f"/api/{i % 100}", "status": 200, "ratio": 0.5, "ok": True})
            # Each write is read at once: the socket pair holds only a few.
            out += [decoder.decode(name, raw) for name, raw in sink.receive(reader)]
        return out
    finally:
        os.close(sink.fd)
        reader.close()


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def best(runs: list[float]) -> float:
    return max(runs)


def run_forward(receiver: RemoteReceiver, protocol: str, events: list[Event]) -> float:
    base = receiver.logs()
    f = Forwarder(ForwardConfig(receiver.endpoint(protocol), protocol=protocol, batch=BATCH, max_delay=0.05,
                                queue=len(events) + BATCH))
    start = time.perf_counter()
    for e in events:
        f.offer(e)
    receiver.wait(base + len(events))
    elapsed = time.perf_counter() - start
    stats = f.close()
    assert stats.dropped == 0, stats
    return rate(len(events), elapsed)


def sdk_exporter(receiver: RemoteReceiver, protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as Grpc

        return Grpc(endpoint=receiver.endpoint(protocol), insecure=True)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as Http

    return Http(endpoint=receiver.endpoint(protocol) + "/v1/logs")


# What the SDK's Logger.emit is given for one event, made before any timing: the SDK side is timed doing only what
# an application does, emit(), as dyntel's side is timed doing only offer(event).
Emit = Callable[[Event], dict[str, Any]]


def emit_plain(e: Event) -> dict[str, Any]:
    return {"timestamp": e.time, "severity_number": SeverityNumber.INFO, "severity_text": "INFO",
            "event_name": f"{e.provider}:{e.name}", "attributes": attributes_of(e)}


def emit_cs(e: Event) -> dict[str, Any]:
    fields = e.fields
    return {"severity_number": SeverityNumber.INFO, "severity_text": "INFO", "body": fields["PartB"]["body"],
            "attributes": fields["PartC"]}


def run_sdk_pipeline(receiver: RemoteReceiver, protocol: str, events: list[Event], emit: Emit) -> float:
    base = receiver.logs()
    provider = LoggerProvider(resource=Resource({"service.name": "dyntel", "host.name": "h"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(
        sdk_exporter(receiver, protocol), schedule_delay_millis=50, max_export_batch_size=BATCH,
        max_queue_size=len(events) + BATCH))
    logger = provider.get_logger("MyService")
    calls = [emit(e) for e in events]
    start = time.perf_counter()
    for kwargs in calls:
        logger.emit(**kwargs)
    provider.force_flush()
    receiver.wait(base + len(events))
    elapsed = time.perf_counter() - start
    provider.shutdown()
    return rate(len(events), elapsed)


def sdk_records(events: list[Event], emit: Emit) -> list[Any]:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource({"service.name": "dyntel", "host.name": "h"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("MyService")
    for e in events:
        logger.emit(**emit(e))
    return list(memory.get_finished_logs())


def run_sdk_export(receiver: RemoteReceiver, protocol: str, records: list[Any]) -> float:
    base = receiver.logs()
    exporter = sdk_exporter(receiver, protocol)
    start = time.perf_counter()
    for i in range(0, len(records), BATCH):
        exporter.export(records[i:i + BATCH])
    receiver.wait(base + len(records))
    elapsed = time.perf_counter() - start
    exporter.shutdown()
    return rate(len(records), elapsed)


def run_alerts(receiver: RemoteReceiver, protocol: str, n: int, spool_root: str, down: bool) -> float:
    base = receiver.logs()
    endpoint = receiver.endpoint(protocol)
    if down:  # nothing listens there: after the first failed export every alert goes to the spool
        endpoint = f"{'http://' if protocol == 'http/protobuf' else ''}127.0.0.1:{_closed_port()}"
    context = ActionContext(log=lambda line: None, services={otlp_action.SPOOL_SERVICE: spool_root})
    [event] = plain_events(1)
    spec = ActionSpec("otlp", {"endpoint": endpoint, "protocol": protocol, "severity": "ERROR", "body": "burst"})

    def fire() -> str:
        outcome = otlp_action.run(spec, Firing("bench", event.time or 0, {"pid": 1000}, event), context)
        return str(outcome.detail["delivery"])

    if down:
        fire()
        deadline = time.monotonic() + 10
        while fire() != "spooled" and time.monotonic() < deadline:
            time.sleep(0.05)
    start = time.perf_counter()
    deliveries = [fire() for _ in range(n)]
    if not down:
        receiver.wait(base + n)
    elapsed = time.perf_counter() - start
    exporter_module.close_all(timeout=0.1 if down else 5.0)
    if down:
        assert set(deliveries) == {"spooled"}, set(deliveries)
    return rate(n, elapsed)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--alerts", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is shown")
    args = parser.parse_args()
    exporter_module.configure(exporter_module.ExporterSettings(max_delay=0.02))
    plain = plain_events(args.events)
    cs = common_schema_events(args.events)
    receiver = RemoteReceiver()
    figures: dict[str, float] = {}
    try:
        for protocol in PROTOCOLS:
            for label, events, emit in (("plain", plain, emit_plain), ("common-schema", cs, emit_cs)):
                records = sdk_records(events, emit)
                fwd, pipe, exp = [], [], []
                for _ in range(args.repeat):
                    fwd.append(run_forward(receiver, protocol, events))
                    pipe.append(run_sdk_pipeline(receiver, protocol, events, emit))
                    exp.append(run_sdk_export(receiver, protocol, records))
                figures[f"forward {label} {protocol}"] = best(fwd)
                figures[f"sdk pipeline {label} {protocol}"] = best(pipe)
                figures[f"sdk export {label} {protocol}"] = best(exp)
                print(f"{protocol:14} {label:14} forward {best(fwd):9.0f}/s   SDK pipeline {best(pipe):9.0f}/s "
                      f"(x{best(fwd) / best(pipe):.2f})   SDK export only {best(exp):9.0f}/s "
                      f"(x{best(fwd) / best(exp):.2f})   [runs: {', '.join(f'{x:.0f}' for x in fwd)}]",
                      flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for protocol in PROTOCOLS:
                up = [run_alerts(receiver, protocol, args.alerts, f"{tmp}/up{i}", False) for i in range(args.repeat)]
                down = run_alerts(receiver, protocol, min(args.alerts, 1000), f"{tmp}/down", True)
                figures[f"alerts {protocol}"] = best(up)
                figures[f"alerts spooled {protocol}"] = down
                print(f"{protocol:14} alerts (queued, delivered) {best(up):8.0f}/s   alerts spooled (collector "
                      f"down, fsync each) {down:8.0f}/s   [runs: {', '.join(f'{x:.0f}' for x in up)}]", flush=True)
    finally:
        receiver.close()
    print(json.dumps({k: round(v) for k, v in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
