"""The Rust exporters' recording (tests/data/otel-rust, made in the VM) forwarded by `dyntel replay` to the real
OpenTelemetry Collector, over gRPC and over HTTP: the collector's file output equals, field by field and with
types, what the app's SDK emitted, once the layout's documented limits are applied (tests/otelcol_compare.py). The
same comparison runs live in the VM (tests/vm/test_otelcol_rust_vm.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from otel_expect import RECORDING, SDK_JSON, sdk_run
from otelcol import Collector
from otelcol_compare import compare

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ["grpc", "http/protobuf"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_collector_writes_what_the_rust_sdk_emitted(tmp_path: Path, protocol: str) -> None:
    empty = tmp_path / "no-rules.yaml"
    empty.write_text("version: 1\nrules: []\n")
    with Collector(tmp_path / "otelcol") as collector:
        config = tmp_path / "dyntel.yaml"
        config.write_text(f"forward:\n  endpoint: {collector.endpoint(protocol)}\n  protocol: {protocol}\n")
        done = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--config", str(config), "--rules",
                               str(empty), str(RECORDING), "-q"], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        sdk = sdk_run(SDK_JSON)
        # Sent before replay exited: a short wait is for the collector's own batch and file flush.
        collector.wait_for(logs=len(sdk.logs), spans=len(sdk.spans), metrics=len(sdk.metrics), timeout=10)
    got = sdk_run(collector.output)
    tally = compare(sdk, got, "otel_rust_logs", "otel_rust_traces")
    print(f"\n{protocol}:\n{tally.summary()}")
    assert tally.differences == [], "\n".join(tally.differences)
    # Every compared field had a value somewhere, but those the layout never carries (docs/otel.md) and the
    # points' flags (only "no recorded value" would set one, and the SDK exports no such point).
    assert tally.never_set() == ["logs.flags", "metrics.flags", "spans.events", "spans.flags"]
    assert (len(got.logs), len(got.spans), len(got.metrics)) == (31, 5, 9)
