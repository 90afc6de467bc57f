"""The live source's ring reader on rings written by hand: wrap-around, LOST records, bad samples, EventHeader.

No kernel here: a ring is an anonymous mapping laid out as perf's (control page, then the data pages), records are
written into it as the kernel writes them, and data_head is moved. The reader cannot tell the difference, so every
case the kernel rarely produces on demand (a record split by the ring's end, a header in the last 8 bytes, a
malformed user_events payload) is checked deterministically.
"""

from __future__ import annotations

import logging
import mmap
import struct
from typing import Any

import pytest

from dyntel.event import SOURCE_TRACEPOINT, SOURCE_USER_EVENTS
from dyntel.sources import Want
from dyntel.sources.perf import abi
from dyntel.sources.perf import event as pe
from dyntel.sources.perf.live import SAMPLE_TYPE, PerfLiveSource, Tracepoint

PAGE = mmap.PAGESIZE
SYS_ENTER_ID = 443
EH_ID = 2000

COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
)
SYS_ENTER = (
    f"name: sys_enter\nID: {SYS_ENTER_ID}\nformat:\n{COMMON}\n"
    "\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n\n"
    'print fmt: "NR %ld", REC->id\n'
)
EVENTHEADER = (
    f"name: P_L5K1\nID: {EH_ID}\nformat:\n{COMMON}\n"
    "\tfield:u8 eventheader_flags;\toffset:8;\tsize:1;\tsigned:0;\n"
    "\tfield:u8 version;\toffset:9;\tsize:1;\tsigned:0;\n"
    "\tfield:u16 id;\toffset:10;\tsize:2;\tsigned:0;\n"
    "\tfield:u16 tag;\toffset:12;\tsize:2;\tsigned:0;\n"
    "\tfield:u8 opcode;\toffset:14;\tsize:1;\tsigned:0;\n"
    "\tfield:u8 level;\toffset:15;\tsize:1;\tsigned:0;\n\n"
    'print fmt: "x"\n'
)


class FakeRing(pe.Ring):
    """A perf ring in anonymous memory, with a writer that does what the kernel does."""

    def __init__(self, data_pages: int) -> None:  # no perf event behind it
        self.fd = -1
        self.length = (1 + data_pages) * PAGE
        self.mm = mmap.mmap(-1, self.length)
        self.base = PAGE
        self.size = data_pages * PAGE
        self.tail = self.read = 0
        self.last_found = -1
        self.written = 0

    def put(self, record: bytes) -> None:
        assert len(record) % 8 == 0 and self.written + len(record) - self.tail <= self.size
        off = self.written % self.size
        first = min(len(record), self.size - off)
        self.mm[self.base + off : self.base + off + first] = record[:first]
        if first < len(record):
            self.mm[self.base : self.base + len(record) - first] = record[first:]
        self.written += len(record)
        struct.pack_into("<Q", self.mm, pe.MMAP_DATA_HEAD, self.written)

    def kernel_tail(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, pe.MMAP_DATA_TAIL)[0])


def sample(ident: int, raw: bytes, *, pid: int = 7, tid: int = 8, time: int = 1000, cpu: int = 0) -> bytes:
    """PERF_RECORD_SAMPLE with IDENTIFIER|TID|TIME|CPU|RAW; the raw part padded to 8 bytes as the kernel pads it."""
    raw_size = (len(raw) + 4 + 7) // 8 * 8 - 4
    body = struct.pack("<QIIQII", ident, pid, tid, time, cpu, 0) + struct.pack("<I", raw_size)
    body += raw + bytes(raw_size - len(raw))
    return struct.pack("<IHH", abi.RECORD_SAMPLE, 0, 8 + len(body)) + body


def lost(ident: int, count: int) -> bytes:
    return struct.pack("<IHHQQ", abi.RECORD_LOST, 0, 24, ident, count)


def sys_enter_raw(nr: int, pid: int = 7) -> bytes:
    return struct.pack("<HBBiq6Q", SYS_ENTER_ID, 0, 0, pid, nr, 1, 2, 3, 4, 5, 6)


def eventheader_raw(payload_meta: bytes, payload: bytes, flags: int = 0x07) -> bytes:
    meta = b"E\0" + payload_meta
    ext = struct.pack("<HH", len(meta), 1) + meta
    return struct.pack("<HBBi", EH_ID, 0, 0, 7) + struct.pack("<BBHHBB", flags, 0, 0, 0, 0, 5) + ext + payload


def source_with(ring: FakeRing | list[FakeRing], *tracepoints: tuple[str, str, int, str],
                want: Want | None = None) -> PerfLiveSource:
    src = PerfLiveSource()
    src.want = want
    rings: list[FakeRing] = ring if isinstance(ring, list) else [ring]
    src.cpus = list(range(len(rings)))
    src._rings = list(rings)
    for system, name, ident, text in tracepoints:
        source = SOURCE_USER_EVENTS if system == "user_events" else SOURCE_TRACEPOINT
        src._register(Tracepoint(system, name, ident, source, False, None, ids=[ident]), text, SAMPLE_TYPE)
    return src


def drained(src: PerfLiveSource, budget: int = 1 << 62) -> list[Any]:
    """What one drain finds, parsed and consumed as events() would (in time order, ring space handed back)."""
    src._drain(budget)
    keys = sorted(src._pending)
    src._pending = []
    return list(src._batch(keys))


def test_records_split_by_the_end_of_the_ring_are_read_whole() -> None:
    ring = FakeRing(1)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    rec = sample(11, sys_enter_raw(110))
    assert len(rec) == 112
    seen = 0
    # 112- and 120-byte records over a 4096-byte ring: the split point moves every lap, including a header alone
    # in the last 8 bytes
    starts = set()
    for lap in range(200):
        for i in range(3):
            starts.add(ring.written % ring.size)
            extra = bytes(8) if i == 2 and lap % 3 == 0 else b""
            ring.put(sample(11, sys_enter_raw(100 + i) + extra, time=lap * 10 + i))
        events = drained(src)
        assert [e.fields["id"] for e in events] == [100, 101, 102]
        assert [e.time for e in events] == [lap * 10, lap * 10 + 1, lap * 10 + 2]
        assert events[0].fields["args"] == [1, 2, 3, 4, 5, 6]
        seen += len(events)
        assert ring.kernel_tail() == ring.written
    assert seen == 600 and src.stats.bad == 0
    assert any(ring.size - s < 112 for s in starts), "no record was split"
    assert ring.size - 8 in starts, "no record header sat in the last 8 bytes"


def test_sample_fields_and_event_names() -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    ring.put(sample(11, sys_enter_raw(110, pid=4242), pid=4242, tid=4243, time=123456789, cpu=1))
    [e] = drained(src)
    assert (e.provider, e.name, e.source) == ("raw_syscalls", "sys_enter", SOURCE_TRACEPOINT)
    assert (e.pid, e.tid, e.cpu, e.time, e.time_is_wall) == (4242, 4243, 1, 123456789, True)
    assert e.fields == {"id": 110, "args": [1, 2, 3, 4, 5, 6]}
    assert src.stats.records == 1 and src.stats.bytes == 112


def test_lost_records_are_counted_by_the_tracepoint_they_name() -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    ring.put(lost(11, 5))
    ring.put(sample(11, sys_enter_raw(1)))
    ring.put(lost(99, 2))
    assert len(drained(src)) == 1
    assert src.stats.lost == 7
    assert src.stats.lost_by_tracepoint == {"raw_syscalls:sys_enter": 5, "event id 99": 2}
    assert src.stats.skipped["LOST"] == 2


def test_samples_of_unknown_ids_and_other_records_are_skipped_and_counted() -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    ring.put(sample(12, sys_enter_raw(1)))
    ring.put(struct.pack("<IHHQQQ", 5, 0, 32, 1, 11, 11))  # THROTTLE
    ring.put(sample(11, sys_enter_raw(2)))
    assert [e.fields["id"] for e in drained(src)] == [2]
    assert src.stats.skipped == {"SAMPLE of a closed tracepoint": 1, "THROTTLE": 1}


def test_a_sample_that_overruns_itself_is_a_problem_and_reading_goes_on() -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    bad = bytearray(sample(11, sys_enter_raw(1)))
    struct.pack_into("<I", bad, 40, 4000)  # raw size far past the record
    ring.put(bytes(bad))
    ring.put(sample(11, sys_enter_raw(2)))
    assert [e.fields["id"] for e in drained(src)] == [2]
    assert src.stats.bad == 1
    assert "raw_syscalls:sys_enter" in src.stats.problems[0].message
    assert "RAW runs past the end" in src.stats.problems[0].message


def test_a_record_of_impossible_size_skips_the_batch_instead_of_looping() -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    ring.put(sample(11, sys_enter_raw(1)))
    ring.put(struct.pack("<IHHQ", 9, 0, 0, 11))  # size 0
    ring.put(sample(11, sys_enter_raw(2)))
    assert [e.fields["id"] for e in drained(src)] == [1]
    assert src.stats.bad == 1 and "size 0" in src.stats.problems[0].message
    assert ring.kernel_tail() == ring.written
    ring.put(sample(11, sys_enter_raw(3)))
    assert [e.fields["id"] for e in drained(src)] == [3]


def test_eventheader_user_events_and_malformed_payloads(caplog: pytest.LogCaptureFixture) -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("user_events", "P_L5K1", 21, EVENTHEADER))
    u32 = b"v\0\x04"
    ring.put(sample(21, eventheader_raw(u32, struct.pack("<I", 42)), time=1))
    ring.put(sample(21, eventheader_raw(u32, b"\x01\x02"), time=2))  # 2 bytes where the metadata says 4
    ring.put(sample(21, eventheader_raw(u32, b"", flags=0xF0)[:16], time=3))  # not EventHeader: tracefs fields
    ring.put(sample(21, eventheader_raw(u32, struct.pack("<I", 43)), time=4))
    with caplog.at_level(logging.WARNING, logger="dyntel.live"):
        events = drained(src)
    assert [e.time for e in events] == [1, 3, 4]
    good, fallback, after = events
    assert (good.provider, good.name, good.source, good.level) == ("P", "E", SOURCE_USER_EVENTS, 5)
    assert good.values == [42] and after.values == [43] and (good.pid, good.tid) == (7, 8)
    assert (fallback.provider, fallback.name, fallback.source) == ("user_events", "P_L5K1", SOURCE_USER_EVENTS)
    assert fallback.fields["eventheader_flags"] == 0xF0
    assert src.stats.bad == 1
    message = src.stats.problems[0].message
    assert "user_events:P_L5K1" in message and "needs 4 bytes" in message
    [record] = [r for r in caplog.records if "user_events:P_L5K1" in r.getMessage()]
    assert "needs 4 bytes" in record.getMessage()


def test_the_pre_decode_filter_drops_unwanted_tracepoints_and_eventheader_events() -> None:
    asked: list[tuple[str, str, int | None]] = []

    def want(provider: str, name: str, level: int | None) -> bool:
        asked.append((provider, name, level))
        return (provider, name) in {("P", "Wanted"), ("sched", "sched_switch")}

    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER), ("user_events", "P_L5K1", 21, EVENTHEADER),
                      want=want)
    u32 = b"v\0\x04"
    for i in range(3):
        ring.put(sample(11, sys_enter_raw(i)))
        ring.put(sample(21, eventheader_raw(u32, struct.pack("<I", i)).replace(b"E\0v", b"X\0v")))
    wanted = eventheader_raw(u32, struct.pack("<I", 9)).replace(b"E\0v\0", b"Wanted\0v\0").replace(
        struct.pack("<HH", 5, 1), struct.pack("<HH", 10, 1))
    ring.put(sample(21, wanted))
    ring.put(sample(21, eventheader_raw(u32, b"", flags=0xF0)[:16]))  # tracefs fallback: user_events:P_L5K1
    events = drained(src)
    assert [(e.provider, e.name, e.values) for e in events] == [("P", "Wanted", [9])]
    assert src.stats.skipped == {"filtered": 7}
    assert ("raw_syscalls", "sys_enter", None) in asked and ("P", "X", 5) in asked
    assert asked.count(("P", "X", 5)) == 1  # asked once per event type, not per event

    src.want = None  # a new filter applies to what is open already
    ring.put(sample(11, sys_enter_raw(7)))
    ring.put(sample(21, eventheader_raw(u32, struct.pack("<I", 8)).replace(b"E\0v", b"X\0v")))
    assert [(e.provider, e.name) for e in drained(src)] == [("raw_syscalls", "sys_enter"), ("P", "X")]
    assert src.stats.skipped == {"filtered": 7}


def test_a_drain_budget_leaves_the_rest_and_says_how_far_events_are_complete() -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    for t in range(10):
        ring.put(sample(11, sys_enter_raw(t), time=100 + t))
    more, hold = src._drain(300)  # three 112-byte records reach past 300 bytes
    assert more and hold == 102 and [k >> 48 for k in src._pending] == [100, 101, 102]
    assert ring.kernel_tail() == 0  # nothing handed back before it is yielded
    keys, src._pending = src._pending, []
    assert [e.time for e in src._batch(keys)] == [100, 101, 102]
    assert ring.kernel_tail() == 336
    more, hold = src._drain()
    assert not more and len(src._pending) == 7 and hold > 1 << 100


def reorder_loop(src: PerfLiveSource, budget: int) -> tuple[list[int], int]:
    """events()'s cut without its clock: yield what every ring's found samples make complete; (times, most keys
    waiting at once)."""
    times: list[int] = []
    most = 0
    for _ in range(10_000):
        more, hold = src._drain(budget)
        src._pending.sort()
        most = max(most, len(src._pending))
        n = sum(1 for k in src._pending if k >> 48 <= hold) if more else len(src._pending)
        ready, src._pending = src._pending[:n], src._pending[n:]
        times += [e.time or 0 for e in src._batch(ready)]
        if not more and not src._pending:
            return times, most
    raise AssertionError("the reader made no progress")


def test_a_cpu_whose_backlog_is_older_is_read_first_and_what_waits_stays_bounded() -> None:
    old, new = FakeRing(64), FakeRing(64)
    src = source_with([old, new], ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    for t in range(2000):  # 224,000 bytes a ring
        old.put(sample(11, sys_enter_raw(0), time=t))
        new.put(sample(11, sys_enter_raw(0), time=100_000 + t))
    times, most = reorder_loop(src, 112 * 100)
    assert times == sorted(times) and len(times) == 4000
    assert most <= 400  # not the 2000 of the newer ring, found and held while the older one is read
    assert old.kernel_tail() == old.written and new.kernel_tail() == new.written


def test_a_ring_whose_own_samples_are_out_of_order_still_makes_progress() -> None:
    a, b = FakeRing(64), FakeRing(64)
    src = source_with([a, b], ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    # An interrupt's sample written after a later-timed one, as nested tracepoints do, early in ring a.
    for t in [5, 3, *range(6, 600)]:
        a.put(sample(11, sys_enter_raw(0), time=t))
    for t in range(1000, 1600):
        b.put(sample(11, sys_enter_raw(0), time=t))
    times, _ = reorder_loop(src, 112 * 50)
    assert len(times) == 1196 and times == sorted(times)


def test_ring_space_is_held_until_its_samples_are_yielded() -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    for t in (5, 3, 9, 1):
        ring.put(sample(11, sys_enter_raw(t), time=t))
    src._drain()
    keys = sorted(src._pending)
    src._pending = [k for k in keys if k >> 48 == 9]  # held back, as the reorder window would
    events = src._batch([k for k in keys if k >> 48 != 9])
    assert next(events).time == 1
    assert ring.kernel_tail() == 0
    events.close()  # the consumer stops early: the two not yet yielded go back, and space up to the first one
    assert [k >> 48 for k in src._pending] == [3, 5, 9]
    assert ring.kernel_tail() == 0  # the sample at time 5 is the ring's first record, and it is still pending
    keys, src._pending = src._pending, []
    assert [e.time for e in src._batch(keys)] == [3, 5, 9]
    assert ring.kernel_tail() == ring.written


def test_a_closed_tracepoints_parser_outlives_its_samples_in_the_ring() -> None:
    ring = FakeRing(4)
    src = source_with(ring, ("raw_syscalls", "sys_enter", 11, SYS_ENTER))
    ring.put(sample(11, sys_enter_raw(1), time=1))
    src._drain()
    src._retired.append(([11], [ring.read]))  # what remove() records when it closes the tracepoint
    ring.put(sample(11, sys_enter_raw(2), time=2))
    src._drain()
    keys, src._pending = sorted(src._pending), []
    assert [e.time for e in src._batch(keys)] == [1, 2]
    assert 11 not in src._parsers and src._retired == []
    ring.put(sample(11, sys_enter_raw(3), time=3))
    assert drained(src) == [] and src.stats.skipped == {"SAMPLE of a closed tracepoint": 1}


def test_a_ring_size_that_is_not_a_power_of_two_is_refused() -> None:
    with pytest.raises(ValueError, match="power of two"):
        pe.Ring(-1, 3)
