"""The real OpenTelemetry producer in the VM: tests/peers/otel-rust (the Rust user_events exporters) started, a
listener attached, its workload played. Used by the VM tests and by scripts/make-otel-rust-recording.sh."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from peers import rust_peer  # tests/peers.py (tests/vm/conftest.py puts tests/ on the path)
from vmhelpers import WAIT, PerfRecord, tracepoint_exists, wait_for

LOGS_PROVIDER = "otel_rust_logs"
TRACE_PROVIDER = "otel_rust_traces"
# The logs exporter registers one tracepoint per EventHeader level (1 critical .. 5 verbose), keyword 1; the span
# exporter one at level 4; the metrics exporter a plain (not EventHeader) tracepoint named otlp_metrics.
LOG_TRACEPOINTS = [f"{LOGS_PROVIDER}_L{level}K1" for level in range(1, 6)]
SPAN_TRACEPOINT = f"{TRACE_PROVIDER}_L4K1"
METRICS_TRACEPOINT = "otlp_metrics"
ALL_TRACEPOINTS = [*LOG_TRACEPOINTS, SPAN_TRACEPOINT, METRICS_TRACEPOINT]


def peer_binary() -> Path:
    return rust_peer("otel-rust", "otel-rust-peer")


class OtelRustApp:
    """The peer started with --start-on-stdin: it registers its tracepoints, says `ready`, and plays its workload
    when go() is called, writing the SDK's OTLP JSON lines to `json_out`."""

    def __init__(self, json_out: Path, *options: str) -> None:
        self.json_out = json_out
        self.proc = subprocess.Popen(
            [str(peer_binary()), "--start-on-stdin", "--summary", "--json", str(json_out), *options],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        ready = self.proc.stderr.readline().strip()
        if ready != "ready":
            self.proc.kill()
            raise AssertionError(f"otel-rust-peer did not start: {ready} {self.proc.stderr.read()}")

    def go(self) -> dict[str, Any]:
        """Play the workload and wait for the app to exit; its summary of what it emitted."""
        _, err = self.proc.communicate("go\n", timeout=WAIT * 4)
        assert self.proc.returncode == 0, f"otel-rust-peer failed ({self.proc.returncode}): {err}"
        summary: dict[str, Any] = json.loads(err.strip().splitlines()[-1])
        return summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def record(out_dir: Path, *options: str, tracepoints: list[str] | None = None,
           listen: list[str] | None = None) -> tuple[Path, Path, dict[str, Any]]:
    """Run the app's workload under `perf record -k CLOCK_MONOTONIC` of its tracepoints: (perf.data, the SDK's JSON
    lines, the app's summary). `tracepoints`: those the app registers with these options (default all seven);
    `listen`: those perf records (default all of them)."""
    tracepoints = tracepoints or ALL_TRACEPOINTS
    listen = listen or tracepoints
    out_dir.mkdir(parents=True, exist_ok=True)
    perf_data, sdk_json = out_dir / "otel-rust.perf.data", out_dir / "otel-rust.sdk.jsonl"
    app = OtelRustApp(sdk_json, *options)
    perf = None
    try:
        for name in tracepoints:
            wait_for(f"{name} registered", lambda name=name: tracepoint_exists(name))  # type: ignore[misc]
        perf = PerfRecord(listen[0], perf_data, *listen[1:], clock="CLOCK_MONOTONIC")
        summary = app.go()
    finally:
        app.kill()
        if perf is not None:
            perf.stop()
    perf_data.chmod(0o644)
    return perf_data, sdk_json, summary
