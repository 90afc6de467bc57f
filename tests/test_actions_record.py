"""The flight recorder and the `record` action: rings bounded in time and bytes, fed only while a rule records, and
files that `dyntel decode` and `dyntel replay` read back as the events they were."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dyntel.actions.artifacts import StoreSettings
from dyntel.actions.recorder import KEEP_MARGIN_NS, FlightRecorder, estimate
from dyntel.engine.engine import Engine
from dyntel.event import Event
from dyntel.event_json import format_event
from dyntel.firing import Firing
from dyntel.rules.loader import load_rules
from dyntel.rules.model import ActionSpec
from dyntel.runtime.scheduler import ActionRuntime, run_actions
from dyntel.sources.recordings import open_recording

S = 1_000_000_000
DEMO = Path(__file__).resolve().parent.parent / "dyntel" / "data" / "demo.perf.data"


def _event(provider: str, t: int, n: int = 2) -> Event:
    return Event(provider, "E", values=tuple(range(n)), time=t)


def test_ring_keeps_only_keep_ns_behind_the_newest() -> None:
    rec = FlightRecorder(keep_ns=1 * S, max_bytes=1 << 30)
    for i in range(3000):  # 10 ms apart: 30 s of events
        rec.append(_event("P", i * 10_000_000))
    rec.trim(2999 * 10_000_000)
    times = [e.time for e in rec.window(0, 1 << 62)]
    assert times[0] is not None and times[-1] == 2999 * 10_000_000
    assert times[-1] - times[0] <= S and len(times) == 101
    assert rec.bytes == sum(estimate(e) for e in rec.window(0, 1 << 62))


def test_byte_cap_pushes_out_the_chatty_provider_first() -> None:
    one = estimate(_event("P", 0))
    rec = FlightRecorder(keep_ns=3600 * S, max_bytes=100 * one)
    for i in range(10):
        rec.append(_event("Quiet", i))
    for i in range(10_000):
        rec.append(_event("Chatty", 100 + i))
    assert rec.bytes <= rec.max_bytes
    held = rec.window(0, 1 << 62)
    assert sum(1 for e in held if e.provider == "Quiet") == 10  # the quiet provider's history survives
    chatty = [e.time for e in held if e.provider == "Chatty"]
    assert chatty == list(range(100 + 10_000 - len(chatty), 100 + 10_000))  # the newest ones, in order
    assert rec.dropped == 10_000 - len(chatty)


RECORD_RULES = """\
version: 1
rules:
  - name: rec
    match: {provider: syscalls, event: sys_exit_openat}
    actions:
      - record: {last: 2s}
  - name: other
    match: {provider: sched}
"""
PLAIN_RULES = """\
version: 1
rules:
  - name: other
    match: {provider: sched}
"""


def _demo_events() -> list[Event]:
    source = open_recording(str(DEMO))
    try:
        return list(source.events())
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def test_engine_feeds_the_recorder_only_while_a_rule_records(tmp_path: Path) -> None:
    (tmp_path / "plain.yaml").write_text(PLAIN_RULES)
    (tmp_path / "rec.yaml").write_text(RECORD_RULES)
    events = _demo_events()[:200]
    rec = FlightRecorder(max_bytes=1 << 30)
    engine = Engine(load_rules([str(tmp_path / "plain.yaml")]), None, recorder=rec)
    for e in events[:100]:
        engine.process(e)
    assert rec.events == 0
    engine.replace_rules(load_rules([str(tmp_path / "rec.yaml")]))
    assert rec.keep_ns == 2 * S + KEEP_MARGIN_NS  # the longest last: of the loaded rules, and a margin
    for e in events[100:]:
        engine.process(e)
    assert rec.events == 100
    engine.replace_rules(load_rules([str(tmp_path / "plain.yaml")]))
    engine.process(events[0])
    assert rec.events == 100


def _record(rec: FlightRecorder, at: Event, options: dict[str, object], tmp_path: Path) -> dict[str, object]:
    runtime = ActionRuntime(services={"recorder": rec}, artifacts=StoreSettings(tmp_path / "artifacts"))
    assert at.time is not None
    firing = Firing("rec", at.time, {}, at)
    run_actions(firing, [ActionSpec("record", options)], runtime)
    outcome = firing.actions[0]
    assert outcome.status == "ok", outcome
    return outcome.detail


def _decode(path: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl", path],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_record_round_trips_through_decode_and_replay(tmp_path: Path, fmt: str) -> None:
    events = _demo_events()
    rec = FlightRecorder(keep_ns=3600 * S, max_bytes=1 << 30)
    for e in events:
        rec.append(e)
    at = events[len(events) // 2]
    assert at.time is not None
    detail = _record(rec, at, {"last": "500ms", "format": fmt}, tmp_path)
    want = [e for e in events if e.time is not None and at.time - S // 2 <= e.time <= at.time]
    assert detail["events"] == detail["events_before"] == len(want) > 100
    path = str(detail["path"])
    assert path.endswith("." + fmt) and os.path.basename(path).startswith("dyntel-record-rec-")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # decode prints exactly what the recorder held, event for event.
    assert _decode(path) == [format_event(e) for e in want]
    # replay runs rules over it as over the original recording.
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - name: opens\n    match: {provider: syscalls, event: sys_exit_openat}\n")
    done = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--rules", str(rules), path, "--format",
                           "json", "--artifacts", str(tmp_path / "a")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    fired = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(fired) == sum(1 for e in want if e.name == "sys_exit_openat") > 0
    assert [f["event"] for f in fired] == [json.loads(format_event(e)) for e in want if e.name == "sys_exit_openat"]


def test_record_waits_for_next_and_appends_its_events(tmp_path: Path) -> None:
    rec = FlightRecorder(max_bytes=1 << 30)
    now = time.time_ns()
    for i in range(50):  # the second before the firing
        rec.append(_event("P", now - S + i * 20_000_000))
    firing_event = _event("P", now)
    rec.append(firing_event)
    stop = threading.Event()

    def engine_thread() -> None:  # events keep coming for 1.5 s, on the wall clock, as from a live source
        while not stop.is_set():
            rec.append(_event("P", time.time_ns()))
            time.sleep(0.01)

    feeder = threading.Thread(target=engine_thread, daemon=True)
    feeder.start()
    try:
        start = time.monotonic()
        detail = _record(rec, firing_event, {"last": "1s", "next": "800ms"}, tmp_path)
        took = time.monotonic() - start
    finally:
        stop.set()
        feeder.join()
    assert 0.8 <= took < 2.5, took
    assert detail["events_before"] == 51
    assert isinstance(detail["events_after"], int) and 40 <= detail["events_after"] <= 82
    lines = _decode(str(detail["path"]))
    times = [json.loads(line)["meta"]["time"] for line in lines]
    assert times == sorted(times) and len(lines) == detail["events"]


def test_record_is_skipped_without_a_recorder_and_stops_at_its_quota(tmp_path: Path) -> None:
    runtime = ActionRuntime(artifacts=StoreSettings(tmp_path / "a"))
    firing = Firing("rec", 1, {}, _event("P", 1))
    run_actions(firing, [ActionSpec("record", {})], runtime)
    assert firing.actions[0].status == "skipped" and "dyntel run" in firing.actions[0].detail["reason"]

    rec = FlightRecorder(keep_ns=3600 * S, max_bytes=1 << 30)
    events = _demo_events()
    for e in events:
        rec.append(e)
    runtime = ActionRuntime(services={"recorder": rec},
                            artifacts=StoreSettings(tmp_path / "b", max_total=100 << 10, min_free=0))
    last = events[-1]
    assert last.time is not None
    firing = Firing("rec", last.time, {}, last)
    run_actions(firing, [ActionSpec("record", {"last": "1h"})], runtime)
    detail = firing.actions[0].detail
    assert firing.actions[0].status == "ok" and detail["truncated"] is True
    assert os.path.getsize(str(detail["path"])) <= 100 << 10
    assert len(_decode(str(detail["path"]))) == detail["events"] < len(events)


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("needs root (perf_event_open on tracepoints)")
        pytest.skip("needs root")


LIVE_RULES = """\
version: 1
rules:
  - name: background
    match: {provider: syscalls, event: sys_enter_getppid}
    condition: pid == 0
  - name: trigger
    match: {provider: syscalls, event: sys_enter_getpid}
    condition: pid == CHILD
    actions:
      - record: {last: 1s, next: 1s}
"""
CHILD = """\
import os, sys, time
sys.stdin.readline()
end = time.monotonic() + 3.0
trigger = time.monotonic() + 1.5
while time.monotonic() < end:
    os.getppid()
    if trigger and time.monotonic() >= trigger:
        trigger = 0
        os.getpid()
    time.sleep(0.01)
"""


@pytest.mark.kernel
@pytest.mark.slow
def test_dyntel_run_records_the_second_before_and_after(tmp_path: Path) -> None:
    _need_root()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
    assert child.stdin is not None
    rules = tmp_path / "rules.yaml"
    rules.write_text(LIVE_RULES.replace("CHILD", str(child.pid)))
    run = subprocess.Popen([sys.executable, "-m", "dyntel.cli", "run", "--rules", str(rules), "--duration", "7",
                            "--format", "json", "--no-reload", "--artifacts", str(tmp_path / "a")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)
        child.stdin.write("go\n")
        child.stdin.close()
        child.wait(timeout=10)
        out, err = run.communicate(timeout=30)
    finally:
        run.kill()
        child.kill()
    assert run.returncode == 0, err
    trigger = [json.loads(line) for line in out.splitlines() if json.loads(line)["rule"] == "trigger"]
    assert len(trigger) == 1, (out, err)
    outcome = trigger[0]["actions"][0]
    assert outcome["status"] == "ok", outcome
    lines = [json.loads(line) for line in _decode(outcome["path"])]
    mine = [e for e in lines if e["meta"]["pid"] == child.pid and e["n"] == "syscalls:sys_enter_getppid"]
    # getppid every ~10 ms: about 100 in the second before the getpid and 100 in the second after.
    assert outcome["events_before"] > 0 and outcome["events_after"] > 0
    assert 120 <= len(mine) <= 230, len(mine)
    assert any(e["n"] == "syscalls:sys_enter_getpid" and e["meta"]["pid"] == child.pid for e in lines)
