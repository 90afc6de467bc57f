"""`dyntel run` on this machine's kernel: the rules name the tracepoints, the engine sees what a child did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

RULES = """\
version: 1
rules:
  - name: getppid-burst
    match: {provider: raw_syscalls, event: sys_enter}
    condition: fields.id == 110 and pid == CHILD
    window: {count: 50, within: 10s, group_by: [pid]}
    actions:
      - log: {message: "getppid burst in pid {pid}"}
"""

FIRED = "dyntel_rule_firings_total{"  # one line per rule


def _wait_firings(port: int, n: int, run: subprocess.Popen[str]) -> None:
    """Until dyntel's /metrics counts `n` firings (a hang guard of 60 s)."""
    end = time.monotonic() + 60
    text = ""
    while time.monotonic() < end:
        assert run.poll() is None, run.communicate()[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        if FIRED in text and _firings(text) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} firings counted:\n{text}")


def _firings(metrics: str) -> int:
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines() if line.startswith(FIRED))


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("dyntel run needs root (perf_event_open on tracepoints)")
        pytest.skip("needs root")


@pytest.mark.kernel
def test_run_fires_on_what_a_child_does(tmp_path: Path) -> None:
    _need_root()
    # The child waits for a go-ahead so that its pid is known to the rule before it makes the calls.
    child = subprocess.Popen([sys.executable, "-c", "import os, sys; sys.stdin.readline(); "
                              "[os.getppid() for _ in range(120)]"], stdin=subprocess.PIPE, text=True)
    assert child.stdin is not None
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("CHILD", str(child.pid)))
    port = _free_port()
    run = subprocess.Popen([sys.executable, "-m", "dyntel.cli", "run", "--rules", str(rules), "--duration", "120",
                            "--format", "json", "--no-reload", "--metrics-listen", f"127.0.0.1:{port}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Ready once the source has opened its rings and tracepoints: only then may the child make its calls.
        _wait_ready(port, run)
        child.stdin.write("go\n")
        child.stdin.close()
        child.wait(timeout=60)
        _wait_firings(port, 2, run)  # both firings made (their lines follow on stdout), then stop
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
        child.kill()
    assert run.returncode == 0, err
    firings = [json.loads(line) for line in out.splitlines()]
    # 120 calls, count 50 a window that clears when it fires: exactly two firings, both for the child.
    assert [f["rule"] for f in firings] == ["getppid-burst", "getppid-burst"], (out, err)
    assert all(f["group"] == {"pid": child.pid} for f in firings)
    assert all(f["event"]["id"] == 110 and f["event"]["meta"]["pid"] == child.pid for f in firings)
    assert firings[0]["actions"] == [{"type": "log", "status": "ok",
                                      "message": f"getppid burst in pid {child.pid}"}]
    assert "getppid burst in pid" in err and "2 firing(s)" in err


ABSENCE = """\
version: 1
rules:
  - name: child-went-quiet
    match: {provider: raw_syscalls, event: sys_enter}
    condition: fields.id == 110 and pid == CHILD
    absence: {within: 1s, group_by: [pid]}
"""


@pytest.mark.kernel
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, run: subprocess.Popen[str]) -> None:
    import time
    import urllib.error
    import urllib.request

    for _ in range(600):
        if run.poll() is not None:
            raise AssertionError(f"dyntel run exited {run.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise AssertionError("dyntel run was not ready within 60 s")


def test_run_fires_an_absence_while_no_events_come(tmp_path: Path) -> None:
    """With nothing to read, time still passes: the absence fires on the wall clock, long before the run ends."""
    import time

    _need_root()
    child = subprocess.Popen([sys.executable, "-c", "import os, sys; sys.stdin.readline(); "
                              "[os.getppid() for _ in range(10)]; sys.stdin.readline()"],
                             stdin=subprocess.PIPE, text=True)
    assert child.stdin is not None
    rules = tmp_path / "rules.yaml"
    rules.write_text(ABSENCE.replace("CHILD", str(child.pid)))
    port = _free_port()
    run = subprocess.Popen([sys.executable, "-m", "dyntel.cli", "run", "--rules", str(rules), "--duration", "9",
                            "--format", "json", "--no-reload", "--metrics-listen", f"127.0.0.1:{port}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(port, run)  # the tracepoints are open: the child's calls cannot be missed
        child.stdin.write("go\n")
        child.stdin.flush()
        calls_done = time.monotonic()
        assert run.stdout is not None
        line = run.stdout.readline()  # blocks until the firing is printed
        arrived = time.monotonic() - calls_done
        child.stdin.write("done\n")
        child.stdin.close()
        _, err = run.communicate(timeout=30)
        ended_after = time.monotonic() - calls_done
    finally:
        run.kill()
        child.kill()
    firing = json.loads(line)
    assert firing["rule"] == "child-went-quiet" and firing["group"] == {"pid": child.pid}, err
    # At least the rule's 1 s of silence after the calls, and while the run still had seconds to go: the wall clock
    # fired it, not the end of the run (how soon after the second is measured by benchmarks/latency.py).
    assert arrived > 0.9, (arrived, err)
    assert ended_after - arrived > 1.0, (arrived, ended_after, err)
