"""The EventRecordCallback's side of a live ETW session (dyntel.sources.etw.live): an EVENT_RECORD copied out while
the callback runs, its time placed on the Unix epoch (`EtwClock`), decoded, and put on a bounded queue that counts
what it drops (`RecordPump`). Nothing here needs advapi32, so the tests drive it with EVENT_RECORDs built in memory.
"""

from __future__ import annotations

import ctypes
import queue
from dataclasses import dataclass
from typing import Any

from dyntel.decoders.etw_header import (
    EVENT_HEADER_FLAG_32_BIT_HEADER,
    EVENT_HEADER_FLAG_PROCESSOR_INDEX,
    EtwEventHeader,
)
from dyntel.decoders.tracelogging import decode_etw_event
from dyntel.errors import DecodeError, defect
from dyntel.event import Event
from dyntel.queues import QUEUE_FULL, QueueCounts
from dyntel.sources import SourceStats, Want
from dyntel.sources.etw import structs as s
from dyntel.sources.perf.tracefs import LiveSetupError

DEFAULT_QUEUE = 65536
FILETIME_UNIX_EPOCH = 116444736000000000  # 1970-01-01 in 100 ns ticks since 1601-01-01
_ITEM_SIZE = ctypes.sizeof(s.EVENT_HEADER_EXTENDED_DATA_ITEM)

# The callback's C type: WINAPI is the one x64 calling convention, so CFUNCTYPE where WINFUNCTYPE does not exist.
_FUNCTYPE: Any = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)
EVENT_RECORD_CALLBACK = _FUNCTYPE(None, ctypes.POINTER(s.EVENT_RECORD))


@dataclass(slots=True)
class EtwLiveStats(SourceStats):
    dropped: int = 0  # events decoded but dropped for a full queue (the consumer fell behind)
    header_events: int = 0  # the session's own EventTrace header events, not handed on



@dataclass(slots=True, frozen=True)
class EtwClock:
    """How EVENT_HEADER.TimeStamp maps to Unix-epoch nanoseconds.

    `kind` 0 is FILETIME (what ProcessTrace delivers unless timestamps are raw, and a raw CLOCK_SYSTEM_TIME
    session too); CLOCK_QPC and CLOCK_CPU_CYCLE are ticks at `frequency` a second, placed on the wall clock by a
    reference pair: the tick count `ref_ticks` was the Unix time `ref_unix_ns`.
    """

    kind: int = 0
    frequency: int = 0
    ref_ticks: int = 0
    ref_unix_ns: int = 0

    def to_unix_ns(self, stamp: int) -> int:
        if self.kind in (0, s.CLOCK_SYSTEM_TIME):
            return (stamp - FILETIME_UNIX_EPOCH) * 100
        # Split whole seconds from the remainder so that the product stays exact for any uptime.
        whole, rest = divmod(stamp - self.ref_ticks, self.frequency)
        return self.ref_unix_ns + whole * 1_000_000_000 + rest * 1_000_000_000 // self.frequency


def clock_for(header: s.TRACE_LOGFILE_HEADER, *, raw: bool, ref_ticks: int = 0, ref_unix_ns: int = 0) -> EtwClock:
    """The clock of a session whose logfile header OpenTraceW filled in."""
    if not raw:
        return EtwClock()
    kind = header.ReservedFlags
    if kind == s.CLOCK_QPC:
        if header.PerfFreq <= 0:
            raise LiveSetupError(f"the session reports a QPC clock with frequency {header.PerfFreq}")
        return EtwClock(s.CLOCK_QPC, header.PerfFreq, ref_ticks, ref_unix_ns)
    if kind == s.CLOCK_CPU_CYCLE:
        if header.CpuSpeedInMHz <= 0:
            raise LiveSetupError("the session reports a CPU-cycle clock and no CPU speed")
        return EtwClock(s.CLOCK_CPU_CYCLE, header.CpuSpeedInMHz * 1_000_000, ref_ticks, ref_unix_ns)
    return EtwClock(s.CLOCK_SYSTEM_TIME)


def record_parts(rec: s.EVENT_RECORD, clock: EtwClock) -> tuple[EtwEventHeader, list[tuple[int, bytes]], bytes]:
    """What decode_etw_event takes, copied out of an EVENT_RECORD (whose pointers live only during the callback)."""
    h = rec.EventHeader
    d = h.EventDescriptor
    flags = h.Flags
    ctx = rec.BufferContext
    processor = ctx.ProcessorIndex if flags & EVENT_HEADER_FLAG_PROCESSOR_INDEX else ctx.ProcessorNumber
    header = EtwEventHeader(
        provider_id=bytes(h.ProviderId), event_id=d.Id, version=d.Version, channel=d.Channel, level=d.Level,
        opcode=d.Opcode, task=d.Task, keyword=d.Keyword, time_ns=clock.to_unix_ns(h.TimeStamp), pid=h.ProcessId,
        tid=h.ThreadId, processor=processor, activity_id=bytes(h.ActivityId), flags=flags,
        event_property=h.EventProperty)
    extended: list[tuple[int, bytes]] = []
    base = rec.ExtendedData
    if rec.ExtendedDataCount and base:
        for i in range(rec.ExtendedDataCount):
            item = s.EVENT_HEADER_EXTENDED_DATA_ITEM.from_address(base + i * _ITEM_SIZE)
            data = ctypes.string_at(item.DataPtr, item.DataSize) if item.DataSize and item.DataPtr else b""
            extended.append((item.ExtType, data))
    n = rec.UserDataLength
    user_data = ctypes.string_at(rec.UserData, n) if n and rec.UserData else b""
    return header, extended, user_data


def record_pointer_size(rec: s.EVENT_RECORD) -> int:
    return 4 if rec.EventHeader.Flags & EVENT_HEADER_FLAG_32_BIT_HEADER else 8


class RecordPump:
    """The EventRecordCallback's side: EVENT_RECORD -> Event -> a bounded queue, and the counts of what happened.

    `callback` is the C function pointer to give EVENT_TRACE_LOGFILEW.EventRecordCallback; it runs in
    ProcessTrace's thread. `get` runs in the consumer's thread.
    """

    def __init__(self, stats: EtwLiveStats, clock: EtwClock = EtwClock(), maxsize: int = DEFAULT_QUEUE) -> None:
        self.stats = stats
        self.clock = clock
        self.want: Want | None = None
        self.queue: queue.Queue[Event] = queue.Queue(maxsize)
        # The queue's counts (dyntel.queues): events in, out (to the consumer), dropped (`queue full`); copied from
        # `stats` when read, so the callback counts nothing twice.
        self.counts = QueueCounts("etw queue", kind="etw", unit="events", capacity=maxsize,
                                  size_of=self.queue.qsize, refresh=self._refresh)
        self.callback = EVENT_RECORD_CALLBACK(self._on_record)  # kept here: ETW calls it for as long as we live

    def _refresh(self, counts: QueueCounts) -> None:
        st = self.stats
        counts.out = st.events
        counts.dropped[QUEUE_FULL] = st.dropped
        counts.put = st.events + st.dropped + self.queue.qsize()

    def _on_record(self, ptr: Any) -> None:
        # An exception must not leave a ctypes callback (it would be printed and lost), so everything is caught.
        stats = self.stats
        stats.records += 1
        try:
            rec = ptr.contents
            if bytes(rec.EventHeader.ProviderId) == s.EVENT_TRACE_GUID:
                stats.header_events += 1
                stats.skip("session header")
                return
            event = self.decode(rec)
        except DecodeError as e:
            stats.problem(stats.records, f"event {stats.records} of the session: {e.message}")
            return
        except Exception as e:
            defect(e)
            stats.problem(stats.records, f"event {stats.records} of the session: {type(e).__name__}: {e}")
            return
        want = self.want
        if want is not None and not want(event.provider, event.name, event.level):
            stats.skip("filtered")
            return
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            stats.dropped += 1

    def decode(self, rec: s.EVENT_RECORD) -> Event:
        header, extended, data = record_parts(rec, self.clock)
        return decode_etw_event(header, extended, data, pointer_size=record_pointer_size(rec))

    def get(self, timeout: float) -> Event | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
