"""The live source on this machine's kernel: real tracepoints, a real child process, real perf rings.

The must-show: a child calls getppid() K times, and exactly K raw_syscalls:sys_enter events with id 110 and the
child's pid and tid reach the consumer, between the child's sched_process_exec and sched_process_exit. Then:
tracepoints added and removed while events() runs; lost samples counted when a tiny ring overflows; events from
two CPUs merged in time order; stop() ending a blocked events() at once; a tracepoint created after the source
started (a uprobe event, as a user_events producer registering later would be) picked up without a restart.

Needs root (or CAP_PERFMON) and tracefs: skipped without them, failed under CI=true.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import deadline

from dyntel.event import Event
from dyntel.sources.perf import abi
from dyntel.sources.perf.live import PerfLiveSource
from dyntel.sources.perf.tracefs import LiveSetupError, find_tracefs

pytestmark = pytest.mark.kernel

SYS_GETPPID = 110


def child(code: str) -> subprocess.Popen[str]:
    """A Python child that waits for one line on stdin, then runs `code` (after an exec, so that the exec is one the
    test can see). It reads further lines on stdin as `code` asks."""
    # One byte at a time: a buffered read could take lines meant for `code` with it into the exec.
    boot = ("import os, sys\nwhile os.read(0, 1) not in (b'\\n', b''):\n    pass\n"
            "os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])\n")
    return subprocess.Popen([sys.executable, "-c", boot, code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def say(proc: subprocess.Popen[str], line: str = "go") -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def reply(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


class Consumer:
    """events() read on a thread, as an engine would."""

    def __init__(self, src: PerfLiveSource) -> None:
        self.src = src
        self.events: list[Event] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for event in self.src.events():
            self.events.append(event)

    def stop(self, timeout: float = 10.0) -> list[Event]:
        self.src.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "events() did not end after stop()"
        return self.events


def getppids(events: list[Event], pid: int) -> list[Event]:
    return [e for e in events if e.name == "sys_enter" and e.pid == pid and e.fields["id"] == SYS_GETPPID]


def test_the_getppid_calls_of_a_child_reach_the_consumer_exactly(live: list[PerfLiveSource]) -> None:
    k = 2500
    proc = child(f"import os\nfor _ in range({k}):\n    os.getppid()\n")
    src = PerfLiveSource(["sched:sched_process_exec", "sched:sched_process_exit"])
    live.append(src)
    with deadline(60):
        opened = src.add("raw_syscalls:sys_enter", filter=f"common_pid == {proc.pid}")
        assert opened == ["raw_syscalls:sys_enter"]
        assert src.enabled == ["raw_syscalls:sys_enter", "sched:sched_process_exec", "sched:sched_process_exit"]
        consumer = Consumer(src)
        before = time.time_ns()
        say(proc)
        assert proc.wait() == 0
        time.sleep(0.3)
        events = consumer.stop()
    calls = getppids(events, proc.pid)
    assert len(calls) == k
    assert all(e.tid == proc.pid and e.source == "tracepoint" and e.provider == "raw_syscalls" for e in calls)
    assert all(e.time_is_wall and before - 10**9 < (e.time or 0) < time.time_ns() for e in calls)
    execs = [e for e in events if e.name == "sched_process_exec" and e.fields["pid"] == proc.pid]
    exits = [e for e in events if e.name == "sched_process_exit" and e.fields["pid"] == proc.pid]
    # The exec after "go" must be there. One fresh-clone CI run under load also saw a second exec event for the pid
    # (the getppid count was still exact, so not a ring read twice); not reproduced in 17 runs alone or loaded, so
    # the message shows both if it comes back.
    assert any(e.time is not None and e.time >= before for e in execs), execs
    assert len(execs) <= 2 and len(exits) == 1, [(e.time, e.fields) for e in execs]
    assert all(Path(e.fields["filename"]).name == Path(sys.executable).name for e in execs)
    assert exits[0].pid == exits[0].tid == proc.pid and exits[0].fields["comm"].startswith("python")
    assert (execs[0].time or 0) < (calls[0].time or 0) <= (calls[-1].time or 0) < (exits[0].time or 0)
    assert src.stats.lost == 0 and sum(src.lost().values()) == 0 and src.stats.bad == 0
    assert src.stats.out_of_order == 0


def test_tracepoints_added_and_removed_while_events_runs(live: list[PerfLiveSource]) -> None:
    proc = child("import os, sys\n"
                 "for line in sys.stdin:\n"
                 "    for _ in range(int(line)):\n"
                 "        os.getppid()\n"
                 "    print('done', flush=True)\n")
    src = PerfLiveSource(["sched:sched_process_exit"])
    live.append(src)
    with deadline(60):
        consumer = Consumer(src)
        say(proc)
        say(proc, "100")  # not traced yet
        assert reply(proc) == "done"
        assert src.add("raw_syscalls:sys_enter", filter=f"common_pid == {proc.pid}") == ["raw_syscalls:sys_enter"]
        say(proc, "250")
        assert reply(proc) == "done"
        assert src.remove("raw_syscalls:*") == ["raw_syscalls:sys_enter"]
        assert src.enabled == ["sched:sched_process_exit"]
        say(proc, "400")  # no longer traced
        assert reply(proc) == "done"
        assert src.add("raw_syscalls:sys_enter", filter=f"common_pid == {proc.pid}") == ["raw_syscalls:sys_enter"]
        say(proc, "30")
        assert reply(proc) == "done"
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait() == 0
        time.sleep(0.3)
        events = consumer.stop()
    assert len(getppids(events, proc.pid)) == 280
    assert any(e.name == "sched_process_exit" and e.fields["pid"] == proc.pid for e in events)
    assert src.remove("raw_syscalls:sys_enter") == ["raw_syscalls:sys_enter"] and src.remove("nothing:here") == []


def test_samples_lost_to_a_full_ring_are_counted(live: list[PerfLiveSource]) -> None:
    n = 20000
    # Pinned: the kernel writes a LOST record into the ring that lost, ahead of that ring's next record; a child
    # that moved CPUs would make its last sample in another ring.
    proc = child("import os, sys\n"
                 "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
                 f"for _ in range({n}):\n"
                 "    os.getppid()\n"
                 "print('burst', flush=True)\n"
                 "sys.stdin.readline()\n"
                 "os.getppid()\n")
    # Throughput latency: in low latency the quiet tracepoint would move to a prompt ring after the burst, and the
    # LOST record would stay in the full ring's kernel state until something else is written there (lost() has
    # the exact count either way).
    src = PerfLiveSource(ring_pages=1, watch=False, latency="throughput")  # 4 KiB: 36 samples
    live.append(src)
    from dyntel.live import KERNEL_LOST, _count_perf_rings
    from dyntel.queues import QueueRegistry

    queues = QueueRegistry()  # as `dyntel run` registers its rings: the losses reach the metrics and the summary
    _count_perf_rings(queues, src)
    with deadline(60):
        src.add("raw_syscalls:sys_enter", filter=f"common_pid == {proc.pid} && id == {SYS_GETPPID}")
        say(proc)
        assert reply(proc) == "burst"  # nobody reads meanwhile
        exact = src.lost()
        assert exact["raw_syscalls:sys_enter"] > n // 2
        consumer = Consumer(src)
        time.sleep(0.3)  # the reader empties the ring
        say(proc)  # one more sample: the kernel writes the LOST record ahead of it
        assert proc.wait() == 0
        time.sleep(0.3)
        events = consumer.stop()
    seen = len(getppids(events, proc.pid))
    assert seen + exact["raw_syscalls:sys_enter"] == n + 1
    assert src.stats.lost == exact["raw_syscalls:sys_enter"]
    assert src.stats.lost_by_tracepoint == {"raw_syscalls:sys_enter": src.stats.lost}
    [rings] = queues.to_json()
    assert rings["dropped"] == {KERNEL_LOST: exact["raw_syscalls:sys_enter"]}
    assert rings["in"] == rings["out"] + rings["dropped_total"] and rings["out"] >= seen


def test_events_of_two_cpus_come_out_in_time_order(live: list[PerfLiveSource]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    k = 30000
    code = ("import os, sys\n"
            "os.sched_setaffinity(0, {int(sys.stdin.readline())})\n"
            "print('pinned', flush=True)\n"
            "sys.stdin.readline()\n"
            f"for _ in range({k}):\n"
            "    os.getppid()\n")
    procs = [child(code), child(code)]
    src = PerfLiveSource(ring_pages=2048)  # 8 MiB a CPU holds all k samples: the children run unpaced
    live.append(src)
    with deadline(60):
        pids = " || ".join(f"common_pid == {p.pid}" for p in procs)
        src.add("raw_syscalls:sys_enter", filter=f"({pids}) && id == {SYS_GETPPID}")
        for p, cpu in zip(procs, cpus, strict=False):
            say(p)
            say(p, str(cpu))
            assert reply(p) == "pinned"
        consumer = Consumer(src)
        for p in procs:
            say(p)
        for p in procs:
            assert p.wait() == 0
        time.sleep(0.3)
        events = consumer.stop()
    assert src.stats.lost == 0 and sum(src.lost().values()) == 0
    times = [e.time or 0 for e in events]
    assert times == sorted(times) and src.stats.out_of_order == 0
    for p, cpu in zip(procs, cpus, strict=False):
        mine = getppids(events, p.pid)
        assert len(mine) == k and {e.cpu for e in mine} == {cpu}
    # the two streams interleave: both ran at once, and the merge had to weave them together
    switches = sum(1 for a, b in itertools.pairwise(events) if a.cpu != b.cpu)
    assert switches > 2


def test_call_chains_where_asked(live: list[PerfLiveSource]) -> None:
    proc = child("import os\nos.getppid()\n")
    src = PerfLiveSource()
    live.append(src)
    with deadline(30):
        src.add("raw_syscalls:sys_enter", filter=f"common_pid == {proc.pid} && id == {SYS_GETPPID}", callchain=True)
        consumer = Consumer(src)
        say(proc)
        assert proc.wait() == 0
        time.sleep(0.3)
        [call] = getppids(consumer.stop(), proc.pid)
    chain = call.callchain
    assert chain is not None and chain[0] == abi.CONTEXT_KERNEL and abi.CONTEXT_USER in chain
    kernel = chain[1 : chain.index(abi.CONTEXT_USER)]
    assert kernel and all(a >= 1 << 63 for a in kernel)  # kernel text is in the upper half
    user = chain[chain.index(abi.CONTEXT_USER) + 1 :]
    assert user and all(0 < a < 1 << 47 for a in user)


@pytest.mark.parametrize("flush_interval", [0.1, 30.0])
def test_stop_ends_a_blocked_events_at_once(live: list[PerfLiveSource], flush_interval: float) -> None:
    src = PerfLiveSource(["sched:sched_process_exec"], flush_interval=flush_interval)
    live.append(src)
    with deadline(30):
        consumer = Consumer(src)
        time.sleep(0.3)
        # Ended inside the 30 s flush interval: stop() does not wait for a wake-up (no timing asserted here, speed
        # is for the benchmarks; 20 s is a hang guard that a loaded machine meets, and a wait for the interval
        # would still miss it by 10 s; 5 s was missed once at load 10).
        consumer.stop(timeout=20)
    assert list(src.events()) == []  # a stopped source stays stopped


def test_stop_ends_events_while_a_producer_keeps_writing(live: list[PerfLiveSource]) -> None:
    proc = child("import os\nwhile True:\n    os.getppid()\n")
    src = PerfLiveSource()
    live.append(src)
    try:
        with deadline(30):
            src.add("raw_syscalls:sys_enter", filter=f"common_pid == {proc.pid} && id == {SYS_GETPPID}")
            consumer = Consumer(src)
            say(proc)
            time.sleep(1.0)
            # stop() ends events() although the producer never pauses; Consumer.stop fails if it has not.
            events = consumer.stop(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert len(events) > 1000


def test_close_frees_every_descriptor_and_mapping(live: list[PerfLiveSource]) -> None:
    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    def perf_maps() -> int:
        return sum("perf_event" in line or "anon_inode:[perf" in line for line in Path("/proc/self/maps").open())

    before, maps_before = fds(), perf_maps()
    src = PerfLiveSource(["raw_syscalls:*", "sched:sched_process_exec"])
    src.open()
    assert len(fds() - before) >= 3 * len(src.cpus) + len(src.cpus)
    assert perf_maps() > maps_before
    src.close()
    src.close()
    assert fds() - before == set() and perf_maps() == maps_before


def test_user_events_patterns_on_a_kernel_without_them_warn_once(live: list[PerfLiveSource]) -> None:
    src = PerfLiveSource(["sched:sched_process_exec"])
    live.append(src)
    assert src.add("user_events:MyService_*") == []
    src.add("user_events:MyService_*")
    if find_tracefs(mount=False).has_user_events():
        assert src.warnings == []
        return
    [warning] = src.warnings
    assert warning.startswith("user_events:MyService_* can match nothing: this kernel")
    assert "CONFIG_USER_EVENTS=y" in warning and src.enabled == ["sched:sched_process_exec"]


def test_a_bad_filter_names_the_format_file(live: list[PerfLiveSource]) -> None:
    src = PerfLiveSource()
    live.append(src)
    with pytest.raises(LiveSetupError, match=r"no_such_field.*events/raw_syscalls/sys_enter/format"):
        src.add("raw_syscalls:sys_enter", filter="no_such_field == 1")
    assert src.enabled == []


def _entry_offset(path: str) -> int:
    """File offset of an ELF64 executable's entry point: a place a uprobe can sit."""
    import struct

    data = Path(path).read_bytes()
    entry, phoff = struct.unpack_from("<QQ", data, 24)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and p_vaddr <= entry < p_vaddr + p_filesz:
            return int(entry - p_vaddr + p_offset)
    raise AssertionError(f"no loadable segment holds the entry point of {path}")


def _dynamic_events(tracefs: Path, line: str) -> None:
    fd = os.open(tracefs / "uprobe_events", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def test_a_tracepoint_created_later_is_picked_up_without_a_restart(live: list[PerfLiveSource]) -> None:
    tracefs = find_tracefs(mount=False).path
    if not (tracefs / "uprobe_events").exists():
        pytest.skip("no uprobe events in this kernel")
    binary = os.path.realpath("/bin/true")
    group = f"dyntel_test_{os.getpid()}"
    src = PerfLiveSource([f"{group}:*"], watch_interval=0.2)
    live.append(src)
    created = False
    try:
        with deadline(30):
            consumer = Consumer(src)
            time.sleep(0.3)
            assert src.enabled == []
            _dynamic_events(tracefs, f"p:{group}/true_entry {binary}:{_entry_offset(binary)}")
            created = True
            t0 = time.monotonic()
            while src.enabled != [f"{group}:true_entry"]:
                assert time.monotonic() - t0 < 5, "the new tracepoint was not picked up"
                time.sleep(0.02)
            picked_up = time.monotonic() - t0
            ran = subprocess.run([binary], check=True)
            assert ran.returncode == 0
            time.sleep(0.3)
            events = consumer.stop()
            src.close()
    finally:
        if created:
            _dynamic_events(tracefs, f"-:{group}/true_entry")
    hits: list[Any] = [e for e in events if e.provider == group]
    assert len(hits) >= 1 and hits[0].name == "true_entry"
    assert picked_up < 1.0
