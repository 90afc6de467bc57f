"""Reading the live source's rings (the methods PerfLiveSource takes from RingReader): finding the samples,
the native pre-filter, parsing each just before it is yielded, handing ring space back, and counting what is lost
or malformed. Split from dyntel.sources.perf.live, which sets up the rings and tracepoints and runs the loop.

How it reads. One ring buffer per CPU (two with low latency: see Waking), owned by a dummy software event; every
tracepoint is opened once per CPU (perf_event_open, PERF_TYPE_TRACEPOINT, config = its tracefs id, sample_period 1)
and redirected into that CPU's ring with PERF_EVENT_IOC_SET_OUTPUT, so that tracepoints come and go without touching
the rings. Samples carry IDENTIFIER (the event id, always at byte 8, which picks the tracepoint's compiled parser),
TID, TIME, CPU and RAW, plus CALLCHAIN where asked. (IDENTIFIER is PERF_SAMPLE_ID at a fixed place, so ID itself is
not asked for too.) The reader sleeps in epoll until a sample wakes it (see Waking), then drains every ring in two
passes: the first finds each sample's time and place (one unpack, one integer), the second, after the samples of all
CPUs are sorted, parses each in place in the mapped memory just before yielding its Event (only a record that wraps
around the ring's end is copied, and a sample's raw payload is sliced out as the Event's own bytes). data_tail is
written back once the samples before it have been yielded.

Lost records. The kernel drops samples when a ring is full and writes a PERF_RECORD_LOST with the count ahead of
that ring's next record, so the count shows up only once something else is written to the same CPU's ring. Those
are summed in `stats.lost`, and in `stats.lost_by_tracepoint` under the tracepoint the record names (the kernel
names the event that wrote the next record, not necessarily the one that lost samples). `lost()` gives exact
per-tracepoint counts at once, read from each event (PERF_FORMAT_LOST, Linux 6.0+).

Headroom. The reader and whoever consumes `events()` share one thread: from one drain to the next (including the
time the consumer spends on the events of a drain, whose ring space is held until they are yielded), a ring must
hold everything its CPU writes, or samples are lost. At 100k events/s on one CPU a 4 MiB ring (the default up to 16
CPUs) holds about 370 ms; `stats.max_drain_gap_ns` shows the longest gap seen. CPUs are those online at open
(hotplug is not followed).

Pre-filter. With `field_filter` set (dyntel run sets it from the rules, as a replay does), a batched ring is read in
C by dyntel._prefilter: samples of a tracepoint no rule wants, and samples on which every candidate rule has a
false test of an integer payload field (`fields.id == 110`), are dropped before Python sees them (counted in
`stats.skipped["filtered"]`); the kept ones go on as above. A stretch the scan declines (a LOST record, an event id
it has no plan for) and a record split by the ring's end are read in Python, which leaves the tests to the engine.
When no plan can drop anything the scan is not run. DYNTEL_NO_PREFILTER=1 turns it off (to compare).

The record loops (`_drain`'s scan of each ring, `_batch`'s parse of each sample) are each one function on purpose:
they run once a sample, and a call per sample there (a helper per record, a method per step) costs more than the
work it would tidy away.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Generator
from typing import Any

from dyntel.errors import DecodeError, defect
from dyntel.event import Event
from dyntel.sources import FieldFilter, SourceStats
from dyntel.sources.perf import abi
from dyntel.sources.perf import event as pe
from dyntel.sources.perf.data import _WALKABLE, raw_alternatives
from dyntel.sources.perf.live_state import LiveStats, Tracepoint
from dyntel.sources.perf.sample import SampleError, SampleParser

log = logging.getLogger("dyntel.live")

# Ring bytes looked through per ring before the samples found are sorted and yielded: it bounds the ring space one
# batch holds until it is consumed, and how long a large backlog keeps the first events of a drain waiting.
DRAIN_BUDGET = 256 << 10
LOGGED_PROBLEMS = 10  # per tracepoint, then every 1000th

_BIG_ENDIAN = sys.byteorder == "big"
_BO = ">" if _BIG_ENDIAN else "<"
_HEAD_ID = struct.Struct(_BO + "I2xHQ").unpack_from  # type, size, and the u64 at byte 8 (a sample's id)
_HEAD = abi.RECORD_HEADER[_BIG_ENDIAN].unpack_from
_U64 = abi.U64[_BIG_ENDIAN].unpack_from
_U64X2 = abi.U64X2[_BIG_ENDIAN].unpack_from
# A sample's type, size, and the u64 at byte 24, which is its time: IDENTIFIER, then TID, then TIME, whatever else
# the sample holds (CALLCHAIN comes later).
_SCAN = struct.Struct(_BO + "I2xH16xQ").unpack_from
_SCAN_ID = struct.Struct(_BO + "I2xHQ8xQ").unpack_from  # the same with the sample's id (prompt rings count them)
_TIME_AT = 24


class RingReader:
    """PerfLiveSource's ring reading. The state is the source's own (set in its __init__; declared here for the
    type checker); the lock is held by the caller unless a method says otherwise."""

    stats: LiveStats
    cpus: list[int]
    _lock: Any  # threading.RLock
    _closed: bool
    _rings: list[pe.Ring]
    _prompt_from: int
    _prompt_counts: dict[int, int]
    _pending: list[int]
    _retired: list[tuple[list[int], list[int]]]
    _parsers: _Parsers
    _names: dict[int, str]
    _problems: dict[str, int]
    _open: dict[str, Tracepoint]
    _field_filter: FieldFilter | None
    _plans: tuple[dict[int, int], list[Any], bool] | None
    _native: Any

    def _filtered(self, buf: Any, pos: int, end: int) -> None:
        self.stats.skip("filtered")

    def _native_plans(self) -> tuple[dict[int, int], list[Any], bool]:
        """dyntel._prefilter's plans for the open tracepoints: by event id, drop all (no rule wants the type), keep
        all, or keep those on which a candidate rule's field tests hold (see dyntel.sources.perf.data)."""
        if self._plans is None:
            plan_ids: dict[int, int] = {}
            plans: list[Any] = []
            for tp in self._open.values():
                for ident in tp.ids:
                    plan_ids[ident] = len(plans)
                plans.append(self._native_plan(tp))
            # Whether the scan can drop anything: when every plan keeps every sample it is a second pass for nothing.
            useful = any(plan is None or plan[1] for plan in plans)
            self._plans = (plan_ids, plans, useful)
        return self._plans

    def _native_plan(self, tp: Tracepoint) -> Any:
        if tp.ids and self._parsers.get(tp.ids[0]) == self._filtered:
            return None
        keep_all = (tp.sample_type, ())
        fmt = tp.fmt
        if self._field_filter is None or fmt is None or fmt.kind != "tracefs" or tp.sample_type & ~_WALKABLE:
            return keep_all
        compiled = raw_alternatives(fmt, self._field_filter(tp.system, tp.name))
        return keep_all if compiled is None else (tp.sample_type, compiled)

    def _scan_native(self, i: int, ring: pe.Ring, tail: int, end: int) -> tuple[int, int, int] | None:
        """The whole samples of ring `i` from `tail` up to `end` (one stretch that does not wrap), through the
        native pre-filter: those kept go to self._pending. Returns (samples, time of the last one or -1, where it
        stopped), or None where the scan declines (a record other than a sample, an unknown event id) or could drop
        nothing: the Python loop reads those."""
        plan_ids, plans, useful = self._native_plans()
        if not useful:
            return None
        start = ring.base + (tail & (ring.size - 1))
        # key_base: the scan makes the sort keys of the kept samples itself (time << 48 | ring << 32 | offset, as
        # _drain does), which a Python loop here cost about 0.2 us a sample.
        scanned = self._native.scan(buffer=ring.mm, start=start, end=start + end - tail, id_offset=8,
                                    time_offset=_TIME_AT, plan_ids=plan_ids, plans=plans, sort=False, partial=True,
                                    key_base=i << 32)
        if scanned is None or scanned["counts"]:  # LOST and other records: the Python loop counts them
            return None
        self._pending += scanned["keys"]
        last = scanned["max_dropped_time"] if scanned["samples"] else -1
        if scanned["max_kept_time"] > last:
            last = scanned["max_kept_time"]
        dropped = scanned["dropped_type"] + scanned["dropped_value"]
        if dropped:
            skipped = self.stats.skipped
            skipped["filtered"] = skipped.get("filtered", 0) + dropped
        return scanned["samples"], last, tail + scanned["end"] - start

    def _drain(self, budget: int = 1 << 62) -> tuple[bool, int]:
        """Find the new records of every ring, up to about `budget` bytes of each (the lock is held).

        Samples are not parsed here: each becomes one integer in self._pending, `time << 48 | ring << 32 |
        offset` (the record's offset in its ring's mapping), so that sorting the integers sorts the samples by time
        (equal times by ring, then by offset), and `_batch` parses each one from the ring just before yielding it.
        The garbage collector never looks at integers; Events made here and held until the sort would be walked by
        every collection meanwhile, which cost about a quarter of the time per event. Their ring space is handed
        back once they are yielded.

        Returns whether a ring has more, and the time up to which the samples found are complete: a ring read only
        in part may still hold samples up from the last one found in it.
        """
        add = self._pending.append
        scan = _SCAN
        scan_id = _SCAN_ID
        counts = self._prompt_counts
        prompt_from = self._prompt_from
        samples = 0
        more = False
        hold = 1 << 127
        rings = self._rings
        heads = [ring.head() for ring in rings]
        # The ring whose samples found so far end earliest holds every other one back; it is always read. Others
        # that already hold a budget's worth of found samples wait (their samples wait for its older ones anyway),
        # so that what waits stays bounded when one CPU's backlog is older than another's.
        behind = [r for r, h in zip(rings, heads, strict=True) if h != r.read]
        laggard = min(behind, key=lambda r: r.last_found) if behind else None
        for i, ring in enumerate(rings):
            head = heads[i]
            tail = start = ring.read
            if head == tail:
                continue
            if ring is not laggard and tail - ring.tail >= budget:
                more = True
                hold = min(hold, max(ring.last_found, 0))
                continue
            mm = ring.mm
            base = ring.base
            mask = ring.size - 1
            limit = base + ring.size
            stop = min(head, tail + budget)
            which = i << 32
            last = ring.last_found
            before = samples
            if i < prompt_from:
                native = self._native is not None
                while tail < stop:
                    if native:
                        # In C up to the ring's end or `stop`, whichever comes first; a record cut by either, and
                        # whatever the scan declines (a LOST record), in Python below.
                        got = self._scan_native(i, ring, tail, min(stop, tail + ring.size - (tail & mask)))
                        if got is None:
                            native = False
                        else:
                            n, t, tail = got
                            samples += n
                            if t >= 0:
                                last = t
                            if tail >= stop:
                                break
                    pos = base + (tail & mask)
                    if pos + 32 <= limit:
                        rtype, size, t = scan(mm, pos)
                        if rtype == 9 and pos + size <= limit and 32 <= size <= head - tail:
                            add(t << 48 | which + pos)
                            last = t
                            samples += 1
                            tail += size
                            continue
                    tail, t = self._other_record(i, ring, tail, head)
                    if t >= 0:
                        last = t
            else:  # a prompt ring: the same, counting samples by event id for _balance (a few thousand a second)
                while tail < stop:
                    pos = base + (tail & mask)
                    if pos + 32 <= limit:
                        rtype, size, ident, t = scan_id(mm, pos)
                        if rtype == 9 and pos + size <= limit and 32 <= size <= head - tail:
                            add(t << 48 | which + pos)
                            counts[ident] = counts.get(ident, 0) + 1
                            last = t
                            samples += 1
                            tail += size
                            continue
                    tail, t = self._other_record(i, ring, tail, head)
                    if t >= 0:
                        last = t
            ring.found += samples - before
            ring.read = tail
            ring.last_found = last
            self.stats.bytes += tail - start
            if tail < head:
                more = True
                # This ring's unread samples start at its last one found (or, with none found, anywhere).
                hold = min(hold, max(last, 0))
        self.stats.records += samples
        self.stats.drains += 1
        return more, hold

    def _other_record(self, i: int, ring: pe.Ring, tail: int, head: int) -> tuple[int, int]:
        """The record at `tail` that the fast path does not take: one split by the ring's end, a short one, or
        not a sample. Returns the position after it, and its time when it is a sample (else -1)."""
        pos = ring.base + (tail & (ring.size - 1))
        rtype: int
        size: int
        rtype, size = _HEAD(ring.mm, pos)
        if size < 8 or size > head - tail:
            self._problem(0, tail, self.cpus[i % len(self.cpus)],
                          f"record of type {rtype} and size {size} does not fit the ring's data; the rest of this "
                          f"batch ({head - tail} bytes) is skipped")
            return head, -1
        self.stats.records += 1
        at = pos
        buf, pos = _record(ring, pos, size)
        if rtype == abi.RECORD_SAMPLE:
            t: int = _U64(buf, pos + _TIME_AT)[0] if size >= _TIME_AT + 8 else 0
            self._pending.append(t << 48 | i << 32 | at)
            return tail + size, t
        if rtype == abi.RECORD_LOST:
            self._lost(buf, pos, pos + size)
        else:
            self.stats.skip(abi.record_name(rtype))
        return tail + size, -1

    def _batch(self, keys: list[int]) -> Generator[Event, None, None]:
        """The samples of `keys`, parsed from the rings as they are asked for. Once all are consumed their ring
        space is handed back; a consumer that stops early leaves the rest pending."""
        parsers = self._parsers
        rings = self._rings
        places = [(r.mm, r.base + r.size) for r in rings]
        head_id = _HEAD_ID
        done = 0
        yielded = 0
        try:
            for k in keys:
                done += 1
                mm, limit = places[k >> 32 & 0xFFFF]
                pos = k & 0xFFFFFFFF
                buf: Any = mm
                try:
                    if pos + 16 <= limit:
                        _, size, ident = head_id(mm, pos)
                        end = pos + size
                        if end > limit:  # split by the ring's end: copy it, and only it
                            buf, pos = _record(rings[k >> 32 & 0xFFFF], pos, size)
                            end = size
                    else:
                        size = _HEAD(mm, pos)[1]
                        buf, pos = _record(rings[k >> 32 & 0xFFFF], pos, size)
                        ident, end = _U64(buf, 8)[0], size
                    event = parsers[ident](buf, pos, end)
                except Exception as e:  # a decoder failing on bad bytes must not stop the source
                    if self._closed:
                        return
                    self._sample_failed(e, buf, pos, k)
                    continue
                if event is not None:
                    yielded += 1
                    yield event
        finally:
            self.stats.events += yielded
            with self._lock:
                if done < len(keys):
                    self._pending[:0] = keys[done:]
                self._release()

    def _release(self) -> None:
        """Hand back to the kernel each ring's space up to its first sample not yet yielded (the lock is held)."""
        if self._closed:
            return
        rings = self._rings
        # Distances from each ring's tail: a pending sample's stream position is its ring's tail plus this.
        far = [r.read - r.tail for r in rings]
        geometry = [(r.base + r.tail, r.size - 1) for r in rings]
        for k in self._pending:
            i = k >> 32 & 0xFFFF
            start, mask = geometry[i]
            at = ((k & 0xFFFFFFFF) - start) & mask
            if at < far[i]:
                far[i] = at
        low = [r.tail + d for r, d in zip(rings, far, strict=True)]
        for ring, pos in zip(rings, low, strict=True):
            if pos > ring.tail:
                ring.release(pos)
        if self._retired:
            kept = []
            for idents, marks in self._retired:
                if all(r.tail >= m for r, m in zip(rings, marks, strict=True)):
                    for ident in idents:
                        self._parsers.pop(ident, None)
                        self._names.pop(ident, None)
                else:
                    kept.append((idents, marks))
            self._retired = kept

    def _sample_failed(self, e: Exception, buf: Any, pos: int, key: int) -> None:
        i = key >> 32 & 0xFFFF
        at = _stream_position(self._rings[i], key & 0xFFFFFFFF)
        try:
            ident = _U64(buf, pos + 8)[0]
        except Exception:
            ident = 0
        if isinstance(e, SampleError):
            self._problem(ident, at + e.offset, self.cpus[i % len(self.cpus)], e.message, "sample")
        elif isinstance(e, DecodeError):
            self._problem(ident, at, self.cpus[i % len(self.cpus)], e.message, e.reason or "malformed")
        else:
            defect(e)
            self._problem(ident, at, self.cpus[i % len(self.cpus)], f"{type(e).__name__}: {e}", "defect")

    def _lost(self, buf: Any, pos: int, end: int) -> None:
        stats = self.stats
        stats.skip("LOST")
        if end - pos < 24:
            return
        ident, n = _U64X2(buf, pos + 8)
        stats.lost += n
        name = self._names.get(ident, f"event id {ident}")
        stats.lost_by_tracepoint[name] = stats.lost_by_tracepoint.get(name, 0) + n

    def _problem(self, ident: int, position: int, cpu: int, reason: str, kind: str = "malformed") -> None:
        tp = self._names.get(ident, f"event id {ident}")
        self.stats.problem(position, f"CPU {cpu} ring: {tp}: {reason}", kind)
        n = self._problems[tp] = self._problems.get(tp, 0) + 1
        if n <= LOGGED_PROBLEMS or n % 1000 == 0:
            log.warning("%s: bad event (%d so far): %s", tp, n, reason)


class _Parsers(dict[int, SampleParser]):
    """Sample parsers by event id; an id without one (a tracepoint closed meanwhile) gets a parser that counts it."""

    def __init__(self, stats: SourceStats) -> None:
        super().__init__()
        self._stats = stats

    def __missing__(self, ident: int) -> SampleParser:
        return self._unknown

    def _unknown(self, buf: Any, pos: int, end: int) -> None:
        self._stats.skip("SAMPLE of a closed tracepoint")


def _load_prefilter() -> Any:
    """dyntel._prefilter where it is built and applies (little-endian: its reads are the host's), else None."""
    if _BIG_ENDIAN or os.environ.get("DYNTEL_NO_PREFILTER"):
        return None
    try:
        from dyntel import _prefilter  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _prefilter


def _record(ring: pe.Ring, pos: int, size: int) -> tuple[Any, int]:
    """(buffer, offset) of the record at offset `pos` of the ring's mapping: the mapping itself, or a copy of a
    record split by the ring's end."""
    limit = ring.base + ring.size
    over = pos + size - limit
    if over <= 0:
        return ring.mm, pos
    return ring.mm[pos:limit] + ring.mm[ring.base : ring.base + over], 0


def _stream_position(ring: pe.Ring, pos: int) -> int:
    """The stream position (data_tail's count) of the record at offset `pos` in the mapping, which lies between
    the ring's tail and its tail plus its size."""
    return ring.tail + ((pos - ring.base - ring.tail) & (ring.size - 1))

