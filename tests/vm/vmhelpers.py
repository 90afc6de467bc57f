"""Helpers of the user_events tests: a producer process, a `perf record` listener, waiting for a bit to flip,
and dyntel decode. Kept out of conftest.py so that tests import them by a name no other conftest shares."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
DATA = Path("/sys/kernel/tracing/user_events_data")
IN_VM = os.environ.get("DYNTEL_IN_VM") == "1"
# Everything is slow under TCG: a perf start can take seconds, and `dyntel run` importing its modules took more
# than 30 s while other VMs shared the host. A hang guard, not a speed claim: generous, and overridable.
WAIT = float(os.environ.get("DYNTEL_VM_WAIT", "120"))


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout:.0f} s")
        time.sleep(0.05)


class Producer:
    """tests/vm/producer.py in a process of its own, registering `name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(HERE / "producer.py"), name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = self._line().split()
        assert ready[0] == "ready", ready
        self.write_index = int(ready[1])
        self.enabled_at_start = ready[2] == "1"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError(f"producer exited ({self.proc.wait()}): {self.proc.stderr.read()}")
        return line.strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._line()

    @property
    def enabled(self) -> bool:
        answer = self.ask("state")
        assert answer in ("enabled 0", "enabled 1"), answer
        return answer == "enabled 1"

    def write(self, n: int) -> int:
        return int(self.ask(f"write {n}").split()[1])

    def ping(self) -> int:
        return int(self.ask("ping").split()[1])

    def bad(self, kind: str) -> int:
        return int(self.ask(f"bad {kind}").split()[1])

    def quit(self) -> None:
        if self.proc.poll() is None:
            assert self.ask("quit") == "bye"
            self.proc.wait(timeout=WAIT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class PerfRecord:
    """`perf record -e user_events:NAME -a` into `out`, stopped with SIGINT as a person would.

    The tracepoint's enable bit turns on when perf opens the event, which is before perf enables it for
    recording: events written in between are dropped. So perf starts with its events disabled (-D -1) and this
    waits for its acknowledgement of an `enable` command on the control pipe before returning.
    """

    def __init__(self, name: str, out: Path, *more: str, clock: str | None = None) -> None:
        """`more`: further user_events names recorded with `name`; `clock`: perf's -k (CLOCK_MONOTONIC gives the
        recording wall-clock sample times, which dyntel reads from its clock data)."""
        perf = shutil.which("perf")
        events = [arg for n in (name, *more) for arg in ("-e", f"user_events:{n}")]
        clock_args = ["-k", clock] if clock else []
        if perf is None:
            pytest.fail("perf not found (apt-get install linux-perf)")
        self.out = out
        ctl_r, ctl_w = os.pipe()
        ack_r, ack_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [perf, "record", "-q", *events, *clock_args, "-a", "-o", str(out), "-D", "-1",
                 "--control", f"fd:{ctl_r},{ack_w}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=(ctl_r, ack_w))
        finally:
            os.close(ctl_r)
            os.close(ack_w)
        # Both ends stay open until stop(): perf may take a closed control pipe for a request to stop listening.
        self._pipes: tuple[int, ...] = (ctl_w, ack_r)
        os.write(ctl_w, b"enable\n")
        answer = b""
        deadline = time.monotonic() + WAIT
        while b"ack" not in answer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([ack_r], [], [], max(left, 0))
            chunk = os.read(ack_r, 64) if ready else b""
            if not chunk:
                self.kill()
                assert self.proc.stderr is not None
                pytest.fail(f"perf record never acknowledged 'enable': {self.proc.stderr.read()}")
            answer += chunk

    def _close_pipes(self) -> None:
        for fd in self._pipes:
            os.close(fd)
        self._pipes = ()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=WAIT)
        self._close_pipes()
        assert self.proc.returncode in (0, -signal.SIGINT), f"perf record failed ({self.proc.returncode}): {err}"
        return err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()


def dyntel_decode(path: Path, *extra: str) -> tuple[list[dict[str, Any]], str, int]:
    """`dyntel decode --format jsonl` on a recording: (events, stderr, exit status)."""
    cmd = [str(Path(sys.executable).with_name("dyntel")), "decode", "--format", "jsonl", *extra, str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return events, done.stderr, done.returncode


def tracepoint_exists(name: str) -> bool:
    return Path(f"/sys/kernel/tracing/events/user_events/{name}").is_dir()


class DyntelRun:
    """`dyntel run --format json --no-reload [ARGS]` in its own process, its firings collected as printed."""

    def __init__(self, rules: Path, *extra: str) -> None:
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dyntel.cli", "run", "--rules", str(rules), "--format", "json", "--no-reload",
             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.firings: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.firings.append(json.loads(line))

    def of(self, rule: str) -> list[dict[str, Any]]:
        return [f for f in self.firings if f["rule"] == rule]

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=WAIT)
        self._reader.join(timeout=WAIT)
        return self.proc.returncode, err
