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
    assert "4 firing(s): missing-file-burst x1, exec-storm x1, process-killed x1, demo-capture-on-sigkill x1" in out
    assert "actions: log ok x3, stacks ok x1, dump ok x1, otlp ok x1" in out
    assert "alerts the collector received: 1" in out
    arts = tmp_path / "dyntel-demo"
    dumps = list(arts.glob("dyntel-dump-*.dmp"))
    texts = list(arts.glob("dyntel-stacks-*.txt"))
    assert len(dumps) == 1 and len(texts) == 1
    assert str(dumps[0]) in out and str(texts[0]) in out  # the summary says where they are
    report = texts[0].read_text()
    for function in ("handle_request", "wait_for_upstream", "idle_worker"):
        assert function in report
    from minidump.minidumpfile import MinidumpFile

    md = MinidumpFile.parse(str(dumps[0]))
    pid = int(re.search(r"service    pid (\d+)", out).group(1))  # type: ignore[union-attr]
    assert len(md.threads.threads) == 4 and md.misc_info.ProcessId == pid
    assert f"dump at {dumps[0]}" in out.split("alerts the collector received: 1")[1]
