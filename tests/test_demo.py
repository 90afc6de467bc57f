"""`dyntel demo`, as a new user runs it after the README's install command: real actions, an alert received."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support import ROOT


def test_dyntel_demo(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "demo", "--color", "never"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                                      "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert ("10 firing(s): missing-file-burst x1, exec-storm x1, process-killed x1, demo-capture-on-sigkill x1, "
            "otel-error-log-http-5xx x1, otel-slow-span x2, otel-span-failed x2, otel-request-latency-max x1") in out
    assert "actions: log ok x9, stacks ok x3, dump ok x1, otlp ok x5" in out
    assert "alerts the collector received: 5" in out
    # The OpenTelemetry app's telemetry (the real Rust exporters' recording) fires on a log's attributes and
    # severity, spans' status and duration, and a metric's value; its alerts reach the demo's collector.
    for alert in ("[ERROR] checkout.failed in pid 77: payment declined for order 1042", "[ERROR] span charge card "
                  "failed", "[ERROR] span GET /checkout failed", "[WARN] request.duration max 2500.0 ms"):
        assert alert in out
    arts = tmp_path / "dyntel-demo"
    dumps = list(arts.glob("dyntel-dump-*.dmp"))
    texts = list(arts.glob("dyntel-stacks-demo-capture-*.txt"))
    assert len(dumps) == 1 and len(texts) == 1 and len(list(arts.glob("dyntel-stacks-otel-slow-span-*.txt"))) == 2
    assert str(dumps[0]) in out and str(texts[0]) in out  # the summary says where they are
    report = texts[0].read_text()
    for function in ("handle_request", "wait_for_upstream", "idle_worker"):
        assert function in report
    from minidump.minidumpfile import MinidumpFile

    md = MinidumpFile.parse(str(dumps[0]))
    pid = int(re.search(r"service    pid (\d+)", out).group(1))  # type: ignore[union-attr]
    assert len(md.threads.threads) == 4 and md.misc_info.ProcessId == pid
    assert f"dump at {dumps[0]}" in out.split("alerts the collector received: 5")[1]
