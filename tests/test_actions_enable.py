"""The `enable` action: the grant bookkeeping (merge, revert), the perf enabler on this machine's kernel, and
`dyntel run` turning a classic tracepoint on for one second because a rule on another tracepoint fired."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from dyntel.sources.enabler import EnableBook, EnableResult, Grant, PerfEnabler, keyword_covered
from dyntel.sources.perf.live import PerfLiveSource
from dyntel.sources.perf.tracefs import find_tracefs

S = 1_000_000_000
NAMES = ["Prov_L1K1", "Prov_L2K1", "Prov_L2K2", "Prov_L5K1", "Prov_L5K2", "Prov_L5K0", "Prov_L5K4Gteam",
         "Prov_LaK1", "Other_L5K1", "not-eventheader"]


def listing(system: str) -> list[str]:
    return NAMES if system == "user_events" else ["sys_enter_getppid", "sys_exit_getppid", "sys_enter_getpid"]


def test_a_grant_covers_lower_levels_and_intersecting_keywords() -> None:
    g = Grant("Prov", level=5, keyword=0x1, until_ns=1)
    on = {n for n in NAMES if g.covers("user_events", n)}
    # K0 is taken by every mask, K2 and K4 are not in 0x1; L0xa is above 5; Other is another provider.
    assert on == {"Prov_L1K1", "Prov_L2K1", "Prov_L5K1", "Prov_L5K0"}
    assert {n for n in NAMES if Grant("Prov", level=2, until_ns=1).covers("user_events", n)} == {
        "Prov_L1K1", "Prov_L2K1", "Prov_L2K2"}
    assert not g.covers("syscalls", "Prov_L1K1")
    assert keyword_covered(0x8, 0) and keyword_covered(0, 0x8) and not keyword_covered(0x8, 0x7)


def test_a_classic_grant_covers_its_system_or_its_event_glob() -> None:
    assert Grant("syscalls", system="syscalls", event="sys_enter_*").covers("syscalls", "sys_enter_getppid")
    assert not Grant("syscalls", system="syscalls", event="sys_enter_*").covers("syscalls", "sys_exit_getppid")
    assert Grant("syscalls", system="syscalls").covers("syscalls", "sys_exit_getppid")
    assert not Grant("syscalls", system="syscalls").covers("sched", "sched_switch")


def test_overlapping_grants_merge_and_revert_as_each_ends() -> None:
    book = EnableBook()
    book.add(Grant("Prov", level=5, keyword=0x1, until_ns=2 * S))
    book.add(Grant("Prov", level=2, keyword=0x2, until_ns=10 * S))
    book.add(Grant("Prov", level=1, keyword=0x1, until_ns=5 * S))
    merged = book.merged("Prov")
    assert merged is not None and (merged.level, merged.keyword, merged.until_ns) == (5, 0x3, 10 * S)
    # G1 covers L1K1 L2K1 L5K1 L5K0, the level-2 grant L2K2 (its mask 0x2 misses K1), the level-1 one L1K1.
    assert book.wanted(listing) == {"user_events:Prov_L1K1", "user_events:Prov_L2K1", "user_events:Prov_L2K2",
                                    "user_events:Prov_L5K1", "user_events:Prov_L5K0"}
    assert book.next_expiry() == 2 * S
    assert [g.level for g in book.expire(2 * S)] == [5]
    assert book.wanted(listing) == {"user_events:Prov_L1K1", "user_events:Prov_L2K2"}
    merged = book.merged("Prov")
    assert merged is not None and (merged.level, merged.keyword) == (2, 0x3)
    book.expire(5 * S)
    assert book.wanted(listing) == {"user_events:Prov_L2K2"}
    book.expire(10 * S)
    assert book.wanted(listing) == set() and book.merged("Prov") is None


def test_a_longer_grant_keeps_what_a_shorter_one_also_covered() -> None:
    book = EnableBook()
    book.add(Grant("Prov", level=5, until_ns=1 * S))
    book.add(Grant("Prov", level=5, until_ns=3 * S))
    book.expire(1 * S)
    assert "user_events:Prov_L5K1" in book.wanted(listing)
    book.expire(3 * S)
    assert not book.wanted(listing)


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("needs root (perf_event_open on tracepoints)")
        pytest.skip("needs root")


class _Asker(threading.Thread):
    """An action worker: asks for a grant and waits for the engine thread (the test) to apply it."""

    def __init__(self, enabler: PerfEnabler, provider: str, event: str | None, until_ns: int) -> None:
        super().__init__(daemon=True)
        self.args = (enabler, provider, event, until_ns)
        self.result: EnableResult | None = None

    def run(self) -> None:
        enabler, provider, event, until = self.args
        self.result = enabler.enable(provider, 255, 0, until, event=event, timeout=10)


def _apply_until(enabler: PerfEnabler, asker: _Asker) -> EnableResult:
    asker.start()
    deadline = time.monotonic() + 10
    while asker.is_alive() and time.monotonic() < deadline:
        if enabler.armed:
            enabler.poll()
        time.sleep(0.005)
    asker.join(1)
    assert asker.result is not None
    return asker.result


@pytest.mark.kernel
def test_perf_enabler_opens_reverts_and_leaves_what_rules_opened() -> None:
    _need_root()
    tracefs = find_tracefs()
    source = PerfLiveSource(["syscalls:sys_enter_getpid"], tracefs=tracefs, cpus=[0])
    source.open()
    try:
        enabler = PerfEnabler(source, tracefs)
        now = time.time_ns()
        first = _apply_until(enabler, _Asker(enabler, "syscalls", "sys_enter_getp*id", now + S // 2))
        assert first.names == ["syscalls:sys_enter_getpgid", "syscalls:sys_enter_getpid", "syscalls:sys_enter_getppid"]
        # getpid was open for the rules already
        assert first.opened == ["syscalls:sys_enter_getpgid", "syscalls:sys_enter_getppid"]
        second = _apply_until(enabler, _Asker(enabler, "syscalls", "sys_enter_getppid", now + 3 * S // 2))
        assert second.opened == [] and second.until_ns == now + 3 * S // 2
        assert set(source.enabled) == {"syscalls:sys_enter_getpgid", "syscalls:sys_enter_getpid",
                                       "syscalls:sys_enter_getppid"}
        enabler.apply(now + S // 2)  # the first grant ends; the second still covers getppid
        assert set(source.enabled) == {"syscalls:sys_enter_getpid", "syscalls:sys_enter_getppid"}
        enabler.apply(now + 3 * S // 2)
        assert source.enabled == ["syscalls:sys_enter_getpid"]  # the rules' tracepoint stays
        assert not enabler.armed and enabler.on == []
        third = _apply_until(enabler, _Asker(enabler, "syscalls", "sys_exit_getppid", now + 60 * S))
        assert third.opened == ["syscalls:sys_exit_getppid"]
        enabler.close()  # dyntel's exit: what it turned on goes off, nothing else
        assert source.enabled == ["syscalls:sys_enter_getpid"]
        with pytest.raises(Exception, match="stopping"):
            enabler.enable("syscalls", 5, 0, now + 60 * S, event="sys_exit_getpid", timeout=1)
    finally:
        source.close()


@pytest.mark.kernel
def test_perf_enabler_refuses_what_this_kernel_lacks() -> None:
    _need_root()
    tracefs = find_tracefs()
    enabler = PerfEnabler(PerfLiveSource([], tracefs=tracefs), tracefs)
    with pytest.raises(Exception, match="not a tracefs system") as e:
        enabler.grant_for("NoSuchProvider", 5, 0, 1, None)
    if (tracefs.path / "user_events_data").exists():
        pytest.skip("this kernel has user_events: an unknown provider is an EventHeader one")
    assert "CONFIG_USER_EVENTS" in str(e.value)
    with pytest.raises(Exception, match="not by event name"):
        enabler.grant_for("NoSuchProvider", 5, 0, 1, "x")


RULES = """\
version: 1
rules:
  - name: trigger
    match: {provider: syscalls, event: sys_enter_getpid}
    condition: pid == CHILD
    limit: {actions: 1, per: 1h}
    actions:
      - enable: {provider: syscalls, event: sys_enter_getppid, for: 1s}
  - name: verbose
    match: {event: sys_enter_getppid}
    condition: pid == CHILD
"""

# getppid every 5 ms for 4 s, getpid once after 1.5 s; prints when each phase started (wall ns).
CHILD = """\
import os, sys, time
sys.stdin.readline()
start = time.time_ns()
print(start, flush=True)
end = time.monotonic() + 4.0
trigger = time.monotonic() + 1.5
while time.monotonic() < end:
    os.getppid()
    if trigger and time.monotonic() >= trigger:
        trigger = 0
        print(time.time_ns(), flush=True)
        os.getpid()
    time.sleep(0.005)
print(time.time_ns(), flush=True)
"""


def _ns(iso: str) -> int:
    whole, frac = iso.rstrip("Z").split(".")
    return int(datetime.fromisoformat(whole + "+00:00").timestamp()) * S + int(frac.ljust(9, "0"))


@pytest.mark.kernel
@pytest.mark.slow
def test_dyntel_run_turns_a_tracepoint_on_for_one_second(tmp_path: Path) -> None:
    _need_root()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdin is not None and child.stdout is not None
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("CHILD", str(child.pid)))
    run = subprocess.Popen([sys.executable, "-m", "dyntel.cli", "run", "--rules", str(rules), "--duration", "8",
                            "--format", "json", "--no-reload", "--artifacts", str(tmp_path / "a")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)  # the source opens its rings and tracepoints
        child.stdin.write("go\n")
        child.stdin.close()
        started, triggered, ended = (int(child.stdout.readline()) for _ in range(3))
        child.wait(timeout=10)
        out, err = run.communicate(timeout=30)
    finally:
        run.kill()
        child.kill()
    assert run.returncode == 0, err
    firings = [json.loads(line) for line in out.splitlines()]
    trigger = [f for f in firings if f["rule"] == "trigger"]
    assert len(trigger) == 1, (out, err)
    outcome = trigger[0]["actions"][0]
    assert outcome["status"] == "ok" and outcome["opened"] == ["syscalls:sys_enter_getppid"], outcome
    t0 = trigger[0]["time"]
    assert triggered <= t0 <= triggered + S // 10
    times = sorted(_ns(f["event"]["meta"]["time"]) for f in firings if f["rule"] == "verbose")
    # The child called getppid every ~5 ms from `started` to `ended` (4 s); only the second after the trigger
    # reaches the engine. Turning on waits for the engine thread (an event or its ~100 ms idle tick).
    assert times, (out, err)
    assert times[0] >= t0 and times[0] - t0 < S // 2, (times[0] - t0)
    assert times[-1] <= t0 + S + S // 5, (times[-1] - t0)
    assert times[-1] - times[0] > S * 6 // 10
    assert len(times) > 60, len(times)
    assert started < t0 and ended > t0 + 2 * S
    # `dyntel run` wrote the outcome in the action log too.
    log = [json.loads(line) for line in (tmp_path / "a" / "actions.jsonl").read_text().splitlines()]
    assert [(e["type"], e["status"]) for e in log] == [("enable", "ok")]


def test_replay_skips_enable_with_the_reason(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: r\n    match: {provider: P}\n    actions:\n"
                     "      - enable: {provider: Prov, level: 5, for: 2s}\n")
    events = tmp_path / "e.jsonl"
    events.write_text('{"n": "P:E", "meta": {"time": "2024-01-01T00:00:00.000000000Z", "pid": 5}}\n')
    done = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--rules", str(rules), str(events),
                           "--format", "json", "--artifacts", str(tmp_path / "a")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    action = json.loads(done.stdout.splitlines()[0])["actions"][0]
    assert action["status"] == "skipped" and "dyntel run" in action["reason"]


def test_dyntel_action_enable_by_hand_holds_the_tracepoint_open_for_its_duration() -> None:
    """The contract's `dyntel action enable`: a live source of its own keeps the tracepoint open for `for`, the
    events that arrive are counted, and it ends on its own when the grant does."""
    import json
    import subprocess
    import sys
    import time

    if os.geteuid() != 0:
        pytest.skip("needs root (perf_event_open)")
    child = subprocess.Popen([sys.executable, "-c", "import os, time\nend = time.monotonic() + 6\n"
                              "while time.monotonic() < end:\n    os.getppid(); time.sleep(0.001)"])
    try:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "action", "enable", "--provider", "syscalls",
                               "--event", "sys_enter_getppid", "--for", "2s", "--json"], capture_output=True,
                              text=True, timeout=60)
        took = time.monotonic() - start
    finally:
        child.kill()
        child.wait()
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["status"] == "ok" and outcome["opened"] == ["syscalls:sys_enter_getppid"]
    assert outcome["events_seen"]["syscalls:sys_enter_getppid"] > 100
    assert 2.0 <= took < 15.0  # held for its 2 s, then ended by itself
