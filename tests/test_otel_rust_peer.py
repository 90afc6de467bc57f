"""The real producer (tests/peers/otel-rust, built by scripts/peers/build-rust.sh) runs on any machine: without a
listener (no user_events here, or nobody recording), the exporters write nothing and the SDK emits no log records
(their levels are not enabled), while spans and metrics still go through the SDK to its JSON. The recordings of it
made in the VM are checked in tests/test_otel_rust_recording.py and tests/vm/test_otel_rust.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from otel_expect import sdk_run
from peers import rust_peer


def test_the_peer_plays_its_workload_and_writes_the_sdks_json(tmp_path: Path) -> None:
    peer = rust_peer("otel-rust", "otel-rust-peer")
    out = tmp_path / "sdk.jsonl"
    done = subprocess.run([str(peer), "--summary", "--json", str(out), "--repeat", "2"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    assert summary == {"logs": 0, "logs_by_severity": {}, "spans": 10, "metric_exports": 3}, summary
    run = sdk_run(out)
    assert len(run.spans) == 10 and not run.logs
    assert {s["name"] for s in run.spans} == {"GET /checkout", "SELECT orders", "charge card", "publish order.failed",
                                              "process order.failed"}
    # Two rounds of delta collections, and the cumulative up-down counter once more at shutdown.
    assert [p["metric"]["name"] for p in run.metrics].count("queue.depth") == 3


def test_the_peer_explains_its_options() -> None:
    peer = rust_peer("otel-rust", "otel-rust-peer")
    done = subprocess.run([str(peer), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "--debug-loop SECS" in done.stdout and "--start-on-stdin" in done.stdout
    bad = subprocess.run([str(peer), "--signals", "bogus"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "unknown signal" in bad.stderr
