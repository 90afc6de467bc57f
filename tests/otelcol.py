"""The real OpenTelemetry Collector as the receiver of the OTLP tests.

The binary is built by scripts/peers/build-otelcol.sh (OTLP receiver over gRPC and HTTP, batch processor, file
exporter; versions pinned in tests/peers/otelcol/builder-config.yaml). `Collector` runs it on loopback with free
ports, its file exporter writing OTLP JSON, waits until it is ready, stops it, and reads back what it wrote as
opentelemetry-proto messages, so that a test compares what dyntel sent with what a collector a team runs took in.

In the VM (tests/vm) the guest cannot build; scripts/vm/run-tests.py builds the collector on the host and passes its
directory in DYNTEL_PEERS (`otelcol=DIR`), as it does the Rust peers. Under CI or in the VM a collector that
cannot be had fails the test, never skips.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_receiver import attributes, free_port

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "scripts" / "peers" / "build-otelcol.sh"
BINARY = "otelcol-dyntel"
READY = "Everything is ready"
_binary: list[Path] = []


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("DYNTEL_IN_VM") == "1":
        pytest.fail(message)
    pytest.skip(message)


def otelcol_binary() -> Path:
    """The collector binary: from $DYNTEL_PEERS in the VM, else built (once per run) by
    scripts/peers/build-otelcol.sh."""
    if _binary:
        return _binary[0]
    if os.environ.get("DYNTEL_PEERS") is not None:
        # Inside the VM (scripts/vm/run-tests.py): the host built the peers and named their directories.
        given = dict(item.split("=", 1) for item in os.environ["DYNTEL_PEERS"].split(";") if "=" in item)
        if "otelcol" not in given:
            pytest.fail("the collector was not built on the host: run scripts/peers/build-otelcol.sh there (the "
                        "runner's log says why it could not)")
        path = Path(given["otelcol"]) / BINARY
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} (from DYNTEL_PEERS) is not an executable")
    else:
        done = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            _unavailable(f"the OpenTelemetry Collector did not build (scripts/peers/build-otelcol.sh, exit "
                         f"{done.returncode}):\n{done.stderr[-4000:]}")
        path = Path(done.stdout.strip().splitlines()[-1]) / BINARY
    _binary.append(path)
    return path


def typed(value: Any) -> Any:
    """An AnyValue with its type kept: ("string", "x"), ("int", 3), ("array", [...]), ("kvlist", {...})."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    name = kind.removesuffix("_value")
    if kind == "array_value":
        return (name, [typed(x) for x in value.array_value.values])
    if kind == "kvlist_value":
        return (name, {kv.key: typed(kv.value) for kv in value.kvlist_value.values})
    return (name, getattr(value, kind))


@dataclass
class Received:
    """One log record, span or metric as the collector wrote it, with its resource and scope."""

    signal: str  # "logs" | "traces" | "metrics"
    resource: dict[str, Any]
    scope: str
    record: Any  # a LogRecord, Span or Metric message

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.record.attributes) if self.signal != "metrics" else {}


# OTLP JSON writes trace and span ids as hex, where protobuf's own JSON mapping of `bytes` is base64.
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode() if k in _ID_KEYS and isinstance(v, str)
                    else _ids_to_base64(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_ids_to_base64(x) for x in node]
    return node


@dataclass
class Output:
    """What the collector's file exporter wrote: one OTLP JSON document per line, each an export of one signal."""

    logs: list[Received] = field(default_factory=list)
    spans: list[Received] = field(default_factory=list)
    metrics: list[Received] = field(default_factory=list)
    lines: int = 0

    @classmethod
    def parse(cls, text: str) -> Output:
        out = cls()
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = _ids_to_base64(json.loads(line))
            except ValueError as e:
                # The exporter writes whole lines; a line cut short is the last one, still being written.
                if number == len(text.splitlines()) and not text.endswith("\n"):
                    break
                raise AssertionError(f"collector output line {number} is not JSON: {e}: {line[:200]!r}") from None
            out.lines += 1
            if "resourceLogs" in doc:
                logs = ParseDict(doc, ExportLogsServiceRequest(), ignore_unknown_fields=True)
                for rl in logs.resource_logs:
                    for sl in rl.scope_logs:
                        out.logs.extend(Received("logs", attributes(rl.resource.attributes), sl.scope.name, r)
                                        for r in sl.log_records)
            if "resourceSpans" in doc:
                traces = ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
                for rs in traces.resource_spans:
                    for ss in rs.scope_spans:
                        out.spans.extend(Received("traces", attributes(rs.resource.attributes), ss.scope.name, s)
                                         for s in ss.spans)
            if "resourceMetrics" in doc:
                metrics = ParseDict(doc, ExportMetricsServiceRequest(), ignore_unknown_fields=True)
                for rm in metrics.resource_metrics:
                    for sm in rm.scope_metrics:
                        out.metrics.extend(Received("metrics", attributes(rm.resource.attributes), sm.scope.name,
                                                    m) for m in sm.metrics)
        return out


CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
processors:
  batch: {{timeout: 20ms}}
exporters:
  file: {{path: "{out}", flush_interval: 20ms}}
service:
  telemetry:
    logs: {{level: info}}
    # No metrics endpoint of its own (port 8888 by default), which two collectors on one machine would share.
    metrics: {{level: none}}
  pipelines:
    logs: {{receivers: [otlp], processors: [batch], exporters: [file]}}
    traces: {{receivers: [otlp], processors: [batch], exporters: [file]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [file]}}
"""


@dataclass
class Collector:
    """The collector in a process of its own on loopback; its config, log and output files in `workdir`."""

    workdir: Path
    binary: Path | None = None
    grpc_port: int = 0
    http_port: int = 0
    ready_timeout: float = 60.0  # the VM emulates its CPU: a start takes seconds there
    proc: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> Path:
        return self.workdir / "otelcol-out.jsonl"

    @property
    def log(self) -> Path:
        return self.workdir / "otelcol.log"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def endpoint(self, protocol: str) -> str:
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint

    def start(self) -> Collector:
        binary = self.binary or otelcol_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # a free port can be taken by someone else before the collector binds it
            self.grpc_port = self.grpc_port or free_port()
            self.http_port = self.http_port or free_port()
            config = self.workdir / "otelcol.yaml"
            config.write_text(CONFIG.format(grpc=self.grpc_port, http=self.http_port, out=self.output))
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen([str(binary), "--config", str(config)], stdout=log, stderr=log,
                                             start_new_session=True)
            if self._wait_ready():
                return self
            text = self.log.read_text(errors="replace")
            self.stop()
            if "address already in use" in text and attempt < 2:
                self.grpc_port = self.http_port = 0
                continue
            raise AssertionError(f"the collector did not get ready within {self.ready_timeout:.0f} s:\n"
                                 f"{text[-4000:]}")
        raise AssertionError("unreachable")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if READY in self.log.read_text(errors="replace") and all(
                    _accepts(port) for port in (self.grpc_port, self.http_port)):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> int | None:
        """SIGTERM, as a service manager stops it: the batch processor and file exporter flush first."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        status = self.proc.returncode
        self.proc = None
        return status

    def read(self) -> Output:
        try:
            return Output.parse(self.output.read_text())
        except FileNotFoundError:
            return Output()

    def wait_for(self, logs: int = 0, spans: int = 0, metrics: int = 0, timeout: float = 15.0) -> Output:
        """What arrived, once at least this many records of each signal have: an AssertionError naming what
        came and the collector's log when they do not within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.read()
            if len(out.logs) >= logs and len(out.spans) >= spans and len(out.metrics) >= metrics:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the collector wrote {len(out.logs)} log records, {len(out.spans)} spans, {len(out.metrics)} "
                    f"metrics in {timeout:.0f} s; expected {logs}, {spans}, {metrics}. Its log:\n"
                    f"{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
