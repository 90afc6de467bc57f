"""Per-log cost of dyntel's user_events log processor, beside the OpenTelemetry SDK's batching OTLP/HTTP path.

    python benchmarks/producer.py [--n 50000] [--repeat 3]

All in one run, each the best of `--repeat`, the same record each time (a string body, four attributes):

  sdk-only     LoggerProvider with no processor: the SDK's own cost of logger.emit
  sdk-nop      + a processor that does nothing: what the SDK adds for calling any processor
  disabled     + UserEventsLogProcessor, tracepoint disabled (nobody listening)
  enabled      + UserEventsLogProcessor, tracepoint enabled, every record encoded and written with one writev. On a
               kernel without user_events (this project's build machines) the writev goes to /dev/null through the
               capture sink: the same system call with the same iovecs, minus the kernel's tracing work
  otlp-batch   + BatchLogRecordProcessor(OTLPLogExporter) posting protobuf over HTTP to a receiver in this process
               that parses each ExportLogsServiceRequest; timed until the receiver has every record

Targets (docs/producer.md): disabled - sdk-only < 0.5 us; enabled < otlp-batch per record.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from dyntel.producer import CaptureSink
from dyntel.producer.otel import UserEventsLogProcessor

RESOURCE = Resource({"service.name": "bench", "service.instance.id": "1"})
ATTRIBUTES = {"user": "alice", "attempt": 2, "mfa": True, "score": 0.75}


class Receiver:
    """An OTLP/HTTP logs endpoint: parses every request and counts its records."""

    def __init__(self) -> None:
        self.records = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportLogsServiceRequest()
                request.ParseFromString(body)
                n = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
                with receiver.lock:
                    receiver.records += n
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/logs"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NopProcessor(LogRecordProcessor):
    def on_emit(self, log_record: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def emit_loop(processor: LogRecordProcessor | None, n: int, wait: Callable[[], None] | None = None) -> float:
    """Seconds per record for `n` emits (and `wait`, for a path that finishes its work later)."""
    provider = LoggerProvider(resource=RESOURCE)
    if processor is not None:
        provider.add_log_record_processor(processor)
    logger = provider.get_logger("bench")
    emit = logger.emit
    info = SeverityNumber.INFO
    for _ in range(min(n, 1000)):  # warm caches (shape cache, strftime of this second)
        emit(severity_number=info, severity_text="INFO", body="login alice", attributes=ATTRIBUTES)
    if wait is not None:
        wait()
    start = time.perf_counter()
    for _ in range(n):
        emit(severity_number=info, severity_text="INFO", body="login alice", attributes=ATTRIBUTES)
    if wait is not None:
        wait()
    elapsed = time.perf_counter() - start
    provider.shutdown()
    return elapsed / n


def best(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50000, help="records per measurement")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    n = args.n
    devnull = os.open(os.devnull, os.O_WRONLY)

    def user_events(enabled: bool) -> float:
        return emit_loop(UserEventsLogProcessor("bench", sink=CaptureSink(devnull, enabled=enabled)), n)

    def otlp() -> float:
        receiver = Receiver()
        processor = BatchLogRecordProcessor(OTLPLogExporter(endpoint=receiver.url), max_export_batch_size=512,
                                            max_queue_size=n + 2000,
                                            schedule_delay_millis=100)
        sent = [0]

        def wait() -> None:
            sent[0] += n if sent[0] else min(n, 1000)
            deadline = time.monotonic() + 120
            while receiver.records < sent[0]:
                processor.force_flush()
                if time.monotonic() > deadline:
                    raise SystemExit(f"receiver has {receiver.records} of {sent[0]} records after 120 s")
                time.sleep(0.001)

        try:
            return emit_loop(processor, n, wait)
        finally:
            receiver.close()

    sdk = best(args.repeat, lambda: emit_loop(None, n))
    nop = best(args.repeat, lambda: emit_loop(NopProcessor(), n))
    disabled = best(args.repeat, lambda: user_events(False))
    enabled = best(args.repeat, lambda: user_events(True))
    batch = best(args.repeat, otlp)
    os.close(devnull)
    us = 1e6
    print(f"records per measurement: {n}, best of {args.repeat}; enabled writes go to /dev/null "
          f"(same writev as user_events_data)")
    print(f"  sdk-only (no processor)          {sdk * us:8.3f} us/log")
    print(f"  sdk + a processor that does nothing {nop * us:5.3f} us/log   (the SDK's dispatch to processors)")
    print(f"  user_events, disabled            {disabled * us:8.3f} us/log   (+{(disabled - sdk) * us:.3f} us "
          f"over the SDK; target < 0.5)")
    print(f"  user_events, enabled             {enabled * us:8.3f} us/log   (+{(enabled - sdk) * us:.3f} us "
          f"over the SDK)")
    print(f"  BatchLogRecordProcessor + OTLP   {batch * us:8.3f} us/log   (+{(batch - sdk) * us:.3f} us "
          f"over the SDK)")
    print(f"  enabled / otlp-batch: {enabled / batch:.2f} (above the SDK: "
          f"{(enabled - sdk) / (batch - sdk):.2f})")
    ok = disabled - sdk < 0.5e-6 and enabled < batch
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
