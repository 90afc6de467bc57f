"""Waking on data (sources.latency: low): quiet tracepoints wake the reader on each sample, busy ones are batched,
a tracepoint moves between the two as its rate changes without losing or reordering a sample, and the reorder
window waits only for rings that could still bring an older sample.

The live tests need root (or CAP_PERFMON) and tracefs: skipped without them, failed under CI=true. Nothing here
times anything (speed is benchmarks/latency.py's): an event that arrives while the idle tick is 30 s arrived
because its sample woke the reader.
"""

from __future__ import annotations

import threading
import time

import pytest
from support import deadline
from test_live_perf import (
    SYS_GETPPID,
    child,
    getppids,
    reply,
    say,
)
from test_live_ring import SYS_ENTER, FakeRing, sample, source_with, sys_enter_raw

from dyntel.event import Event
from dyntel.sources.perf import live as perf_live
from dyntel.sources.perf.live import PROMPT_MAX_RATE, PerfLiveSource


class Consumer:
    def __init__(self, src: PerfLiveSource) -> None:
        self.src = src
        self.events: list[Event] = []
        self.arrived = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for event in self.src.events():
            self.events.append(event)
            self.arrived.set()

    def stop(self) -> list[Event]:
        self.src.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.events


@pytest.mark.kernel
def test_a_quiet_tracepoint_wakes_the_reader_itself(live: list[PerfLiveSource]) -> None:
    proc = child("import os, sys\nsys.stdin.readline()\nos.getppid()\nsys.stdin.readline()\n")
    # The idle tick is 30 s: only the sample's own wake-up can bring the event sooner.
    src = PerfLiveSource(flush_interval=30.0, watch=False)
    live.append(src)
    with deadline(60):
        src.add("raw_syscalls:sys_enter", filter=f"common_pid == {proc.pid} && id == {SYS_GETPPID}")
        tp = src._open["raw_syscalls:sys_enter"]
        assert not tp.prompt  # a new tracepoint starts batched: its rate is not known yet
        consumer = Consumer(src)
        say(proc)  # exec
        time.sleep(3 * perf_live.BALANCE_INTERVAL + 0.2)  # it is seen to be quiet, and moved
        assert tp.prompt
        say(proc)  # one getppid
        assert consumer.arrived.wait(10), "the sample did not wake the reader"
        say(proc)
        proc.wait()
        events = consumer.stop()
    assert len(getppids(events, proc.pid)) == 1


@pytest.mark.kernel
def test_a_tracepoint_moves_between_prompt_and_batched_rings_losing_nothing(live: list[PerfLiveSource]) -> None:
    n_burst = 20 * PROMPT_MAX_RATE
    # Quiet (10 calls), a burst well over PROMPT_MAX_RATE for a second, quiet again.
    proc = child("import os, sys, time\n"
                 "for _ in range(10):\n    os.getppid(); time.sleep(0.05)\n"
                 "print('quiet', flush=True); sys.stdin.readline()\n"
                 f"t0 = time.monotonic(); n = 0\nwhile n < {n_burst}:\n"
                 f"    target = min({n_burst}, int((time.monotonic() - t0) * {n_burst}))\n"
                 "    for _ in range(target - n): os.getppid()\n    n = max(n, target); time.sleep(0.001)\n"
                 "print('burst', flush=True); sys.stdin.readline()\n"
                 "for _ in range(10):\n    os.getppid(); time.sleep(0.05)\n"
                 "print('quiet', flush=True); sys.stdin.readline()\n")
    src = PerfLiveSource(watch=False)
    live.append(src)
    seen_modes: list[bool] = []
    with deadline(120):
        src.add("raw_syscalls:sys_enter", filter=f"common_pid == {proc.pid} && id == {SYS_GETPPID}")
        tp = src._open["raw_syscalls:sys_enter"]
        consumer = Consumer(src)
        say(proc)
        assert reply(proc) == "quiet"
        time.sleep(3 * perf_live.BALANCE_INTERVAL + 0.2)
        seen_modes.append(tp.prompt)
        say(proc)
        assert reply(proc) == "burst"
        seen_modes.append(tp.prompt)
        say(proc)
        assert reply(proc) == "quiet"
        time.sleep(3 * perf_live.BALANCE_INTERVAL + 0.2)
        seen_modes.append(tp.prompt)
        say(proc)
        proc.wait()
        time.sleep(0.3)
        events = consumer.stop()
    assert seen_modes == [True, False, True]
    calls = getppids(events, proc.pid)
    assert len(calls) == 20 + n_burst and src.stats.lost == 0 and not src.lost()
    times = [e.time for e in calls]
    assert times == sorted(times) and src.stats.out_of_order == 0


def _two_rings() -> tuple[PerfLiveSource, FakeRing, FakeRing]:
    a, b = FakeRing(4), FakeRing(4)
    src = source_with([a, b], ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    src.reorder_ns = 1000
    return src, a, b


def test_a_sample_waits_for_a_ring_in_use_that_has_shown_nothing_later() -> None:
    src, a, b = _two_rings()
    a.attached = b.attached = 1
    a.put(sample(11, sys_enter_raw(110), time=5000))
    src._drain()
    assert src._cut(5500) < 5000  # b may still commit a sample taken before 5000
    assert src._cut(6001) >= 5000  # ... not after the window


def test_a_sample_goes_at_once_when_every_other_ring_is_later_or_unused() -> None:
    src, a, b = _two_rings()
    a.attached = b.attached = 1
    a.put(sample(11, sys_enter_raw(110), time=5000))
    b.put(sample(11, sys_enter_raw(110), time=5001, cpu=1))
    src._drain()
    assert src._cut(5001) >= 5000  # b's samples come in time order: nothing older than 5001 can follow
    src, a, b = _two_rings()
    a.attached = 1  # nothing writes into b
    a.put(sample(11, sys_enter_raw(110), time=5000))
    src._drain()
    assert src._cut(5001) >= 5000


# The native pre-filter on live rings: what every candidate rule's field test rejects is dropped in C.

def _filtered_source(ring: FakeRing) -> PerfLiveSource:
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    if src._native is None:
        pytest.skip("dyntel._prefilter is not built")
    src.field_filter = lambda p, e: [[("id", "==", (110,))]] if (p, e) == ("raw_syscalls", "sys_enter") else None
    return src


def test_the_native_prefilter_drops_what_no_rule_can_take_across_the_ring_end() -> None:
    from test_live_ring import drained

    ring = FakeRing(1)  # 4096 bytes: the 112-byte records wrap around its end again and again
    src = _filtered_source(ring)
    others = 0
    for lap in range(100):
        for i in range(3):
            ring.put(sample(11, sys_enter_raw(110 if i == 1 else 3), time=lap * 10 + i))
        events = drained(src)
        assert [(e.fields["id"], e.time) for e in events if e.fields["id"] == 110] == [(110, lap * 10 + 1)]
        others += len(events) - 1
    # A record split by the ring's end is read in Python, which leaves the field tests to the engine.
    assert src.stats.skipped["filtered"] + others == 200 and src.stats.skipped["filtered"] > 150
    assert src.stats.records == 300 and ring.kernel_tail() == ring.written  # every byte handed back


def test_the_native_prefilter_leaves_lost_records_to_python() -> None:
    from test_live_ring import drained, lost

    ring = FakeRing(4)
    src = _filtered_source(ring)
    ring.put(sample(11, sys_enter_raw(3), time=1))
    ring.put(lost(11, 7))
    ring.put(sample(11, sys_enter_raw(110), time=2))
    events = drained(src)
    assert [e.fields["id"] for e in events][-1:] == [110]  # the scan declined: Python read the stretch
    assert src.stats.lost == 7


def test_a_budget_cut_in_the_middle_of_a_record_is_read_whole() -> None:
    ring = FakeRing(4)
    src = _filtered_source(ring)
    for t in range(10):
        ring.put(sample(11, sys_enter_raw(110), time=t))
    src._drain(budget=112 * 3 + 50)  # ends inside the fourth record
    assert len(src._pending) == 4 and ring.read == 112 * 4
