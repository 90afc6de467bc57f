"""Live tracepoints and user_events, read from perf ring buffers: the `Source` behind `dyntel run`.

    src = PerfLiveSource(["raw_syscalls:sys_enter", "user_events:MyService_*"])
    for event in src.events():      # blocks; stop() from any thread ends it
        ...
    src.close()

How it reads. One ring buffer per CPU (two with low latency: see Waking), owned by a dummy software event; every
tracepoint is opened once per CPU and redirected into that CPU's ring with PERF_EVENT_IOC_SET_OUTPUT, so that
tracepoints come and go without touching the rings. The reader sleeps in epoll until a sample wakes it, then drains
every ring (dyntel.sources.perf.ring_reader), sorts what it found by time and yields it.

Time. The perf events use CLOCK_MONOTONIC (use_clockid), and `Event.time` is that plus the offset from
CLOCK_MONOTONIC to CLOCK_REALTIME measured once when the source opens: nanoseconds since the epoch, with
`time_is_wall` true. Monotonic time cannot step, so ordering and the reorder cut below stay sound when the wall
clock is stepped; the price is that a step of the wall clock after start is not followed (times keep the offset
measured at open). Perf's default clock has no defined relation to wall time; CLOCK_REALTIME in perf would follow
steps, but a step backwards would then hold every event back by the step's size in the reorder buffer.

Waking. `latency="low"` (the default; the config's `sources.latency`) gives each CPU a prompt ring (a wake-up on
each sample, for quiet tracepoints) and a batched one; `latency="throughput"` only batched ones: see
dyntel.sources.perf.balance.

Order. Events come out in time order across CPUs, held back at most `reorder_ns`: see dyntel.sources.perf.reorder.

Lost records, headroom, the native pre-filter: see dyntel.sources.perf.ring_reader, which reads the rings.

Watching. Patterns are resolved against tracefs when added and again every `watch_interval` seconds, so a
tracepoint that appears later (a user_events producer registering after dyntel started) is opened without a
restart. tracefs sends no inotify event when a tracepoint directory appears (eventfs creates its directories
lazily; seen on 6.18 with a uprobe event), so this polls: a pattern with a literal system lists that one directory
(about 20 us), one with a glob in the system reads available_events (about 0.4 ms for 2300 events).

Decoding. tracefs formats come from events/<system>/<name>/format. A user_event whose format is EventHeader is
decoded by EventHeaderDecoder (falling back to its tracefs fields when the bytes are not EventHeader); a payload
that contradicts its own metadata is a counted problem (`stats.problem`, and a log line naming the tracepoint and
the reason), and reading goes on. A tracefs payload with strings, __data_loc fields or arrays is decoded when
something first reads it (dyntel.event.LazyEvent; see _costly): an event no rule reads a field of skips the decode.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import resource
import select
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dyntel.errors import DecodeError
from dyntel.event import SOURCE_TRACEPOINT, SOURCE_USER_EVENTS, Encoding, Event, FieldInfo, Format, Schema
from dyntel.sources import FieldFilter, Want
from dyntel.sources.perf import abi
from dyntel.sources.perf import event as pe
from dyntel.sources.perf.balance import BALANCE_INTERVAL, PROMPT_MAX_RATE, PROMPT_MIN_RATE, RateBalancer
from dyntel.sources.perf.header import Attr
from dyntel.sources.perf.live_state import LiveStats, Tracepoint
from dyntel.sources.perf.reorder import DETACH_GRACE_NS, cut
from dyntel.sources.perf.ring_reader import (
    _BIG_ENDIAN,
    DRAIN_BUDGET,
    LOGGED_PROBLEMS,
    RingReader,
    _load_prefilter,
    _Parsers,
)
from dyntel.sources.perf.sample import Recipe, SampleParser, compile_sample_parser, eventheader_builder
from dyntel.sources.perf.tracefs import (
    LiveSetupError,
    Tracefs,
    explain_mmap_error,
    explain_perf_error,
    find_tracefs,
    online_cpus,
    require_user_events,
)
from dyntel.sources.selection import Pattern, parse_pattern

# Names that moved to the modules split from this one, still importable from here.
__all__ = ["BALANCE_INTERVAL", "DETACH_GRACE_NS", "DRAIN_BUDGET", "LOGGED_PROBLEMS", "PROMPT_MAX_RATE",
           "PROMPT_MIN_RATE", "SAMPLE_TYPE", "LiveStats", "PerfLiveSource", "Tracepoint", "default_ring_pages",
           "wall_clock_offset"]

log = logging.getLogger("dyntel.live")

# Ring size by default: 64 MiB shared by the CPUs, at most 4 MiB and at least 512 KiB a CPU (a power of two of
# pages). At 100k events/s on one CPU (112-byte samples) 4 MiB is 370 ms of slack before a reader that is not
# scheduled loses samples: perf record's 512 KiB (47 ms) lost samples at 100k/s on a busy 2-CPU machine, and 2 MiB
# still did, rarely. Where the memory-lock limit refuses a ring (no CAP_IPC_LOCK, kernel.perf_event_mlock_kb), it is
# halved down to 512 KiB.
DEFAULT_RING_TOTAL = 64 << 20
MAX_DEFAULT_RING_PAGES = 1024
MIN_FALLBACK_RING_PAGES = 128
MIN_PROMPT_PAGES = 8  # 32 KiB: a quiet tracepoint's ring (it is read on each sample)
DEFAULT_FLUSH_INTERVAL = 0.1  # seconds between on_idle calls while nothing comes (and throughput's max wait)
DEFAULT_REORDER_NS = 1_000_000
# Latency modes (the config's sources.latency; see "Waking" in the module notes).
LATENCY_LOW = "low"
LATENCY_THROUGHPUT = "throughput"
LATENCIES = (LATENCY_LOW, LATENCY_THROUGHPUT)
DEFAULT_MAX_WAIT_LOW = 0.002  # seconds a batched tracepoint's sample waits at most in low latency
DEFAULT_WATCH_INTERVAL = 1.0
SAMPLE_TYPE = abi.SAMPLE_IDENTIFIER | abi.SAMPLE_TID | abi.SAMPLE_TIME | abi.SAMPLE_CPU | abi.SAMPLE_RAW

RAW_SCHEMA = Schema((FieldInfo("raw", Encoding.BINARY_LENGTH16_CHAR8, Format.HEX_BYTES),))

_MONO = time.CLOCK_MONOTONIC


@dataclass(slots=True, eq=False)
class _Selection:
    pattern: Pattern
    filter: str | None
    callchain: bool
    owner: str | None = None  # who selected it, when not the rules (the enabler: see `release`)


def default_ring_pages(ncpus: int, page_size: int | None = None) -> int:
    """Data pages a CPU's ring gets by default (see DEFAULT_RING_TOTAL)."""
    page = page_size or os.sysconf("SC_PAGE_SIZE")
    share = DEFAULT_RING_TOTAL // max(ncpus, 1) // page
    pages = 1 << max(share.bit_length() - 1, 0)
    return max(MIN_FALLBACK_RING_PAGES, min(MAX_DEFAULT_RING_PAGES, pages))


def wall_clock_offset() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC in nanoseconds, from the tightest of a few bracketed readings."""
    best: tuple[int, int] | None = None
    for _ in range(7):
        a = time.clock_gettime_ns(_MONO)
        w = time.time_ns()
        b = time.clock_gettime_ns(_MONO)
        if best is None or b - a < best[0]:
            best = (b - a, w - (a + b) // 2)
    assert best is not None
    return best[1]


class PerfLiveSource(RingReader, RateBalancer):
    """Tracepoints and user_events from the running kernel, as Events in time order.

    `patterns` are `system:event` globs (see dyntel.sources.selection). Opening (tracefs, rings) happens on the
    first `open()`, `add()` or `events()`; errors that the machine's setup causes are `LiveSetupError`s saying
    what to change. `add`, `remove`, `release`, `stop` and `lost` may be called from any thread.
    """

    def __init__(self, patterns: Iterable[str] = (), *, tracefs: Tracefs | None = None,
                 ring_pages: int | None = None, watermark: int | None = None,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL, reorder_ns: int = DEFAULT_REORDER_NS,
                 watch: bool = True, watch_interval: float = DEFAULT_WATCH_INTERVAL,
                 cpus: Sequence[int] | None = None, callchain: bool = False, name: str | None = None,
                 latency: str = LATENCY_LOW, max_wait: float | None = None) -> None:
        if latency not in LATENCIES:
            raise ValueError(f"latency {latency!r}: expected one of {', '.join(LATENCIES)}")
        texts = list(patterns)
        self._initial = [_Selection(parse_pattern(t), None, callchain) for t in texts]
        self.name = name or "live:" + ",".join(texts)
        self.stats = LiveStats()
        self.field_tags = True  # as a perf.data recording of the same events prints them (see perf_data.py)
        self.tracefs = tracefs
        self.ring_pages = ring_pages or 0  # chosen at open by default_ring_pages unless given
        self.prompt_pages = 0  # a prompt ring's data pages (low latency), chosen at open
        self._ring_fixed = ring_pages is not None
        self.watermark = watermark
        self.flush_interval = flush_interval
        self.reorder_ns = reorder_ns
        self.latency = latency
        # The longest a batched sample waits in its ring before the reader looks (the bytes watermark aside).
        self.max_wait = max_wait if max_wait is not None else (
            DEFAULT_MAX_WAIT_LOW if latency == LATENCY_LOW else flush_interval)
        self.watch = watch
        self.watch_interval = watch_interval
        self.cpus: list[int] = list(cpus) if cpus is not None else []
        self.failed: dict[str, str] = {}  # tracepoints a glob matched that could not be opened, and why
        self.warnings: list[str] = []  # selections that cannot match on this machine (no user_events), and why
        self._want: Want | None = None
        # Called from the reading thread after a wake-up that found nothing to yield (at least every
        # flush_interval while idle), so a consumer blocked in events() still gets to act on the passing of time.
        self.on_idle: Callable[[], None] | None = None
        self._lock = threading.RLock()
        # Reentrant: stop() may run in a signal handler that interrupted close() in the same thread.
        self._wake_lock = threading.RLock()
        self._selections: list[_Selection] = []
        self._excluded: set[str] = set()  # removed by name while a remaining pattern still matches them
        self._open: dict[str, Tracepoint] = {}
        self._parsers = _Parsers(self.stats)
        self._names: dict[int, str] = {}  # event id -> "system:event"
        self._lost_closed: dict[str, int] = {}
        self._problems: dict[str, int] = {}
        # Samples found in the rings and not yet yielded, as sort keys (see _drain); their ring space is held.
        self._pending: list[int] = []
        # Parsers of closed tracepoints, kept until the rings are handed back past what those wrote: (event ids,
        # each ring's read position when they were closed).
        self._retired: list[tuple[list[int], list[int]]] = []
        # One batched ring per CPU, then (low latency) one prompt ring per CPU: ring i is CPU cpus[i % len(cpus)].
        self._rings: list[pe.Ring] = []
        self._prompt_from = 1 << 30  # index of the first prompt ring
        self._prompt_counts: dict[int, int] = {}  # samples found in the prompt rings by event id, since the last look
        self._tracepoint_of: dict[int, Tracepoint] = {}  # event id -> its tracepoint
        self._field_filter: FieldFilter | None = None
        # The native pre-filter's plans for what is open (built on demand, None after a change), and the module.
        self._plans: tuple[dict[int, int], list[Any], bool] | None = None
        self._native: Any = _load_prefilter()
        self._epoll: select.epoll | None = None
        self._wake = -1
        self._opened = False
        self._closed = False
        self._stopping = False
        self._offset = 0
        self._read_format = pe.FORMAT_ID | pe.FORMAT_LOST
        self._last_time = 0  # raw clock of the last sample yielded
        self._eventheader: Any = None

    # ----------------------------------------------------------------------------------------------------------
    # Setup

    def open(self) -> None:
        """Find tracefs, map one ring per CPU, open the tracepoints the patterns match. Idempotent."""
        with self._lock:
            if self._opened:
                return
            if self._closed:
                raise ValueError("the live source is closed")
            if self.tracefs is None:
                self.tracefs = find_tracefs()
            if not self.cpus:
                self.cpus = online_cpus()
            if not self.ring_pages:
                self.ring_pages = default_ring_pages(len(self.cpus))
            _raise_fd_limit()
            self._offset = wall_clock_offset()
            self._epoll = select.epoll()
            self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self._epoll.register(self._wake, select.EPOLLIN)
            self._opened = True
            try:
                for cpu in self.cpus:
                    ring = self._open_ring(cpu)
                    self._rings.append(ring)
                    self._epoll.register(ring.fd, select.EPOLLIN)
                if self.latency == LATENCY_LOW:
                    self._open_prompt_rings()
                for sel in self._initial:
                    self._select(sel)
            except BaseException:
                self.close()
                raise

    def _open_prompt_rings(self) -> None:
        """One prompt ring per CPU, as large as the batched ones where the memory-lock limit allows (it is halved
        down to MIN_PROMPT_PAGES otherwise). Without CAP_IPC_LOCK the batched rings may take all of
        kernel.perf_event_mlock_kb: then there are none, every tracepoint is batched and read every max_wait, and
        a warning says so."""
        assert self._epoll is not None
        self.prompt_pages = self.ring_pages
        self._prompt_from = len(self._rings)
        try:
            for cpu in self.cpus:
                ring = self._open_ring(cpu, prompt=True)
                self._rings.append(ring)
                self._epoll.register(ring.fd, select.EPOLLIN)
        except LiveSetupError as e:
            for ring in self._rings[self._prompt_from:]:
                with contextlib.suppress(OSError, BufferError, ValueError):
                    self._epoll.unregister(ring.fd)
                    ring.close()
                with contextlib.suppress(OSError):
                    os.close(ring.fd)
            del self._rings[self._prompt_from:]
            self._prompt_from = 1 << 30
            message = (f"low latency without prompt rings ({e}): every tracepoint is batched and read every "
                       f"{self.max_wait * 1000:g} ms, which costs more CPU while idle")
            self.warnings.append(message)
            log.warning("%s", message)

    def _open_ring(self, cpu: int, prompt: bool = False) -> pe.Ring:
        """A ring of one CPU, owned by a dummy event. Without an explicit size, a ring the memory-lock limit
        refuses is retried at half the size, down to perf's default of 128 pages. A prompt ring wakes the reader
        as soon as it holds a byte (every sample); a batched one at its watermark (a quarter of it by default)."""
        while True:
            pages = self.prompt_pages if prompt else self.ring_pages
            ring_bytes = pages * os.sysconf("SC_PAGE_SIZE")
            if ring_bytes + os.sysconf("SC_PAGE_SIZE") > 1 << 32:
                raise ValueError(f"a ring of {pages} pages is 4 GiB or more; sample places are 32-bit")
            attr = pe.make_attr(pe.TYPE_SOFTWARE, pe.COUNT_SW_DUMMY, SAMPLE_TYPE, clockid=_MONO,
                                wakeup_watermark=1 if prompt else self.watermark or max(ring_bytes // 4, 8))
            try:
                fd = pe.perf_event_open(attr, -1, cpu)
            except OSError as e:
                raise LiveSetupError(explain_perf_error(e.errno or 0, f"the ring of CPU {cpu}")) from None
            try:
                return pe.Ring(fd, pages)
            except OSError as e:
                os.close(fd)
                if prompt:  # halved quietly down to MIN_PROMPT_PAGES; then open() does without prompt rings
                    if pages <= MIN_PROMPT_PAGES or e.errno not in (errno.EPERM, errno.ENOMEM):
                        raise LiveSetupError(explain_mmap_error(e.errno or 0, ring_bytes)) from None
                    self.prompt_pages //= 2
                    continue
                if self._ring_fixed or self.ring_pages <= MIN_FALLBACK_RING_PAGES or e.errno not in (
                        errno.EPERM, errno.ENOMEM):
                    raise LiveSetupError(explain_mmap_error(e.errno or 0, ring_bytes)) from None
                log.warning("%s; trying %d pages", explain_mmap_error(e.errno or 0, ring_bytes), self.ring_pages // 2)
                self.ring_pages //= 2

    def __enter__(self) -> PerfLiveSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def want(self) -> Want | None:
        """The pre-decode filter (dyntel.sources.Want): samples of a tracefs event it does not want are dropped by
        their event id; EventHeader events once their metadata names them, before the payload is decoded. Either
        way counted in stats.skipped["filtered"]. Setting it (from any thread) applies to what is open already."""
        return self._want

    @want.setter
    def want(self, want: Want | None) -> None:
        with self._lock:
            self._want = want
            for tp in self._open.values():
                if tp.sample_type:
                    self._file(tp, self._parser(tp, tp.format_text, tp.sample_type))

    @property
    def field_filter(self) -> FieldFilter | None:
        """Field tests by event type (dyntel.replay.make_filters): a batched ring's samples of a tracefs event
        whose every candidate rule has a false test are dropped in C (dyntel._prefilter) before Python reads
        them, counted in stats.skipped["filtered"], as in a replay of a recording."""
        return self._field_filter

    @field_filter.setter
    def field_filter(self, field_filter: FieldFilter | None) -> None:
        with self._lock:
            self._field_filter = field_filter
            self._plans = None

    @property
    def enabled(self) -> list[str]:
        """The tracepoints open now, as "system:event"."""
        with self._lock:
            return sorted(self._open)

    # ----------------------------------------------------------------------------------------------------------
    # Selection at run time

    def add(self, pattern: str, *, filter: str | None = None, callchain: bool = False,
            owner: str | None = None) -> list[str]:
        """Select `pattern` (now and whenever a matching tracepoint appears) and open what it matches now.

        `filter` is a tracefs filter expression the kernel applies before writing a sample (`common_pid == 42`);
        `callchain` adds PERF_SAMPLE_CALLCHAIN. Returns the tracepoints this call opened. A tracepoint already open
        keeps the filter and call-chain setting it was opened with; `remove` it first to change them. `owner`
        keeps this selection apart from an equal one of the rules, for `release`.
        """
        sel = _Selection(parse_pattern(pattern), filter, callchain, owner)
        self.open()
        with self._lock:
            self._selections = [s for s in self._selections
                                if s.pattern.text != sel.pattern.text or s.owner != owner]
            self._excluded = {n for n in self._excluded if not sel.pattern.matches(*n.split(":", 1))}
            return self._select(sel)

    def remove(self, name: str) -> list[str]:
        """Close every open tracepoint that `name` (a name or a pattern) matches, and drop a selection of exactly
        that text. Samples already in the rings are still delivered. Returns the tracepoints closed."""
        pat = parse_pattern(name)
        with self._lock:
            self._selections = [s for s in self._selections if s.pattern.text != pat.text]
            victims = [tp for full, tp in self._open.items() if pat.matches(tp.system, tp.name)]
            self._retire(victims)
            for tp in victims:
                if any(s.pattern.matches(tp.system, tp.name) for s in self._selections):
                    self._excluded.add(tp.full_name)
            return sorted(tp.full_name for tp in victims)

    def release(self, pattern: str, *, owner: str) -> list[str]:
        """Undo `add(pattern, owner=owner)`: drop that selection and close the tracepoints it matched that no other
        selection still matches (the `enable` action's "off", which must not close what the rules listen to).
        Returns the tracepoints closed."""
        pat = parse_pattern(pattern)
        with self._lock:
            self._selections = [s for s in self._selections if s.pattern.text != pat.text or s.owner != owner]
            victims = [tp for tp in self._open.values() if pat.matches(tp.system, tp.name)
                       and not any(s.pattern.matches(tp.system, tp.name) for s in self._selections)]
            self._retire(victims)
            return sorted(tp.full_name for tp in victims)

    def _retire(self, victims: list[Tracepoint]) -> None:
        """Disable and close `victims`, keeping their parsers until the rings are read past what they wrote."""
        if not victims:
            return
        for tp in victims:
            for fd in tp.fds:
                pe.disable(fd)
        self._drain()  # everything they wrote before the disable, found while their parsers are kept
        for tp in victims:
            self._retired.append((list(tp.ids), [ring.read for ring in self._rings]))
            self._close_tracepoint(tp)

    def _select(self, sel: _Selection) -> list[str]:
        self._selections.append(sel)
        if not self._opened:
            return []
        p = sel.pattern
        if p.system_is_literal and p.system.startswith("user_events") and self.tracefs is not None:
            try:
                require_user_events(self.tracefs)
            except LiveSetupError as e:
                # Kernel tracepoints may still be worth reading; the user_events ones can never come.
                message = f"{p.text} can match nothing: {e}"
                if message not in self.warnings:
                    self.warnings.append(message)
                    log.warning("%s", message)
        return self._open_matches([sel])

    def rescan(self) -> list[str]:
        """Open tracepoints that appeared since the last look and match a selection; what `events()` does every
        `watch_interval` seconds. Returns the tracepoints opened."""
        with self._lock:
            return self._open_matches(self._selections)

    def _open_matches(self, selections: Sequence[_Selection]) -> list[str]:
        tracefs = self.tracefs
        assert tracefs is not None
        candidates: list[tuple[str, str]] = []
        everything: list[tuple[str, str]] | None = None
        listed: dict[str, list[str]] = {}
        for sel in selections:
            p = sel.pattern
            if p.is_literal:
                if os.path.exists(tracefs.event_dir(p.system, p.name) / "id"):
                    candidates.append((p.system, p.name))
            elif p.system_is_literal:
                names = listed.get(p.system)
                if names is None:
                    names = listed[p.system] = tracefs.system_events(p.system)
                candidates.extend((p.system, n) for n in names if p.matches(p.system, n))
            else:
                if everything is None:
                    everything = tracefs.available_events()
                candidates.extend((s, n) for s, n in everything if p.matches(s, n))
        opened: list[str] = []
        for system, name in candidates:
            full = f"{system}:{name}"
            if full in self._open or full in self._excluded or full in self.failed:
                continue
            sel = next(s for s in selections if s.pattern.matches(system, name))
            try:
                if self._open_tracepoint(system, name, sel):
                    opened.append(full)
            except LiveSetupError as e:
                if sel.pattern.is_literal:
                    raise
                self.failed[full] = str(e)
                log.warning("%s", e)
        return opened

    def _open_tracepoint(self, system: str, name: str, sel: _Selection) -> bool:
        tracefs = self.tracefs
        assert tracefs is not None
        try:
            tp_id = tracefs.event_id(system, name)
            fmt_text = tracefs.format_text(system, name)
        except FileNotFoundError:
            return False  # gone between the listing and now
        full = f"{system}:{name}"
        tp = Tracepoint(system, name, tp_id, SOURCE_USER_EVENTS if system.startswith("user_events")
                        else SOURCE_TRACEPOINT, sel.callchain, sel.filter)
        sample_type = SAMPLE_TYPE | (abi.SAMPLE_CALLCHAIN if sel.callchain else 0)
        # For a user_event, opening the first perf event sets the producers' enable bit, and what they write on a
        # CPU before its event is enabled is lost. So the parser is compiled first and each event is enabled as
        # soon as it writes to its ring: the window is a few system calls a CPU. (Samples written before the
        # parser is filed under their ids wait in the rings: the reader needs the lock this runs under.)
        parser = self._parser(tp, fmt_text, sample_type)
        # It starts batched (its rate is not known yet: a busy one woken for on each sample would cost its writers
        # dearly until the first look at the rates, a quiet one waits max_wait until then).
        try:
            for cpu, ring in zip(self.cpus, self._rings[:len(self.cpus)], strict=True):
                fd = self._perf_open(sample_type, tp_id, cpu, full)
                tp.fds.append(fd)
                if sel.filter is not None:
                    try:
                        pe.set_filter(fd, sel.filter)
                    except OSError as e:
                        why = os.strerror(e.errno or 0)
                        raise LiveSetupError(f"filter {sel.filter!r} on {full} was refused ({why}); its fields are "
                                             f"in {tracefs.event_dir(system, name)}/format") from None
                pe.set_output(fd, ring.fd)
                tp.ids.append(pe.event_id(fd))
                pe.enable(fd)
        except BaseException:
            for fd in tp.fds:
                os.close(fd)
            raise
        for ring in self._rings[:len(self.cpus)]:
            ring.attached += 1
        tp.counted = (0, time.clock_gettime_ns(_MONO))
        self._file(tp, parser)
        return True

    def _register(self, tp: Tracepoint, fmt_text: str, sample_type: int) -> None:
        """Compile the tracepoint's sample parser and file it under each of its event ids."""
        self._file(tp, self._parser(tp, fmt_text, sample_type))

    def _parser(self, tp: Tracepoint, fmt_text: str, sample_type: int) -> SampleParser:
        tp.format_text, tp.sample_type = fmt_text, sample_type  # to compile it again when `want` changes
        recipe = self._recipe(tp, fmt_text)
        if recipe.build is None and self.want is not None and not self.want(tp.system, tp.name, None):
            return self._filtered
        return compile_sample_parser(Attr(abi.TYPE_TRACEPOINT, tp.tp_id, sample_type, 0, False), _BIG_ENDIAN, recipe)

    def _file(self, tp: Tracepoint, parser: SampleParser) -> None:
        self._plans = None
        for ident in tp.ids:
            self._parsers[ident] = parser
            self._names[ident] = tp.full_name
            self._tracepoint_of[ident] = tp
        self._open[tp.full_name] = tp

    def _filtered(self, buf: Any, pos: int, end: int) -> None:
        self.stats.skip("filtered")

    def _perf_open(self, sample_type: int, tp_id: int, cpu: int, full: str) -> int:
        while True:
            attr = pe.make_attr(pe.TYPE_TRACEPOINT, tp_id, sample_type, flags=pe.ATTR_DISABLED, clockid=_MONO,
                                read_format=self._read_format)
            try:
                return pe.perf_event_open(attr, -1, cpu)
            except OSError as e:
                if e.errno == errno.EINVAL and self._read_format & pe.FORMAT_LOST:
                    self._read_format &= ~pe.FORMAT_LOST  # before Linux 6.0: LOST records are all there is
                    continue
                raise LiveSetupError(explain_perf_error(e.errno or 0, f"{full} on CPU {cpu}")) from None

    def _close_tracepoint(self, tp: Tracepoint) -> None:
        lost = 0
        for fd in tp.fds:
            if self._read_format & pe.FORMAT_LOST:
                with contextlib.suppress(OSError):
                    lost += pe.read_lost(fd)
            os.close(fd)
        if lost:
            self._lost_closed[tp.full_name] = self._lost_closed.get(tp.full_name, 0) + lost
        if tp.fds:
            self._detach(self._rings_of(tp), time.clock_gettime_ns(_MONO))
        tp.fds.clear()
        for ident in tp.ids:
            self._tracepoint_of.pop(ident, None)
        del self._open[tp.full_name]
        self._plans = None

    # ----------------------------------------------------------------------------------------------------------
    # Decoding

    def _recipe(self, tp: Tracepoint, fmt_text: str) -> Recipe:
        from dyntel.decoders.tracefs_format import parse_format

        try:
            fmt = tp.fmt = parse_format(fmt_text, tp.system, 8 if sys.maxsize > 2**32 else 4, strict=False)
        except DecodeError as e:
            log.warning("%s: format not readable (%s); its events carry their raw bytes", tp.full_name, e.message)
            return Recipe(tp.system, tp.name, RAW_SCHEMA, tp.source, decode=_raw_values, time_offset=self._offset,
                          time_is_wall=True)
        decoder = fmt.decoder(_BIG_ENDIAN)
        lazy = _costly(fmt)
        recipe = Recipe(tp.system, tp.name, fmt.schema, tp.source, decode=decoder, time_offset=self._offset,
                        time_is_wall=True, lazy=lazy, fixed=None if lazy else getattr(decoder, "fixed", None))
        if fmt.kind == "eventheader":
            recipe.build = self._eventheader_builder(fmt, recipe)
        return recipe

    def _eventheader_builder(self, fmt: Any, tracefs: Recipe) -> Callable[..., Event | None]:
        if self._eventheader is None:
            from dyntel.decoders.eventheader import EventHeaderDecoder

            self._eventheader = EventHeaderDecoder()
        return eventheader_builder(fmt, tracefs, self._eventheader, self.want, self.stats.skip,
                                   self.stats.not_eventheader)

    # ----------------------------------------------------------------------------------------------------------
    # Reading (the rings themselves: RingReader, dyntel.sources.perf.ring_reader; the order: reorder)

    def events(self) -> Iterator[Event]:
        """Events as they happen, in time order; blocks between them. Ends after `stop()`."""
        self.open()
        return self._loop()

    def stop(self) -> None:
        """End `events()` (from any thread): it drains the rings once more, yields what it holds, and returns."""
        self._stopping = True
        with self._wake_lock:  # close() must not free the descriptor number between the test and the write
            if self._wake >= 0:
                with contextlib.suppress(OSError):
                    os.eventfd_write(self._wake, 1)

    def _loop(self) -> Iterator[Event]:
        epoll = self._epoll
        assert epoll is not None
        wake = self._wake
        stats = self.stats
        next_watch = time.monotonic() + self.watch_interval
        more = False  # a ring had more than one drain's budget: read on without waiting
        last_drain = 0
        low = self.latency == LATENCY_LOW
        balance_ns = int(BALANCE_INTERVAL * 1e9)
        last_balance = time.clock_gettime_ns(_MONO)
        while not self._closed:
            stopping = self._stopping
            if not stopping and not more:
                for fd, _ in epoll.poll(self._wait()):
                    if fd == wake:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(wake)
                stats.wakeups += 1
                stopping = self._stopping
                if self.watch and time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + self.watch_interval
                    try:
                        self.rescan()
                    except LiveSetupError as e:
                        log.warning("watching tracefs: %s", e)
            with self._lock:
                if self._closed:
                    return
                start = time.clock_gettime_ns(_MONO)
                if last_drain and start - last_drain > stats.max_drain_gap_ns:
                    stats.max_drain_gap_ns = start - last_drain
                last_drain = start
                if low and start - last_balance >= balance_ns:
                    self._balance(start - last_balance, start)
                    last_balance = start
                # Stopping, one last look reads each ring up to its head now: against producers faster than the
                # reader, "until empty" might never come.
                more, hold = self._drain(1 << 62 if stopping else DRAIN_BUDGET)
                pending = self._pending
                pending.sort()
                if stopping and not more:
                    ready = pending
                    self._pending = []
                else:
                    upto = min(cut(self._rings, start, self.reorder_ns), hold)
                    n = bisect.bisect_left(pending, (upto + 1) << 48)
                    ready = pending[:n]
                    del pending[:n]
                if not ready:
                    self._release()
            if ready:
                last = self._last_time
                if ready[0] >> 48 < last:
                    stats.out_of_order += sum(1 for k in ready if k >> 48 < last)
                self._last_time = ready[-1] >> 48
                yield from self._batch(ready)
            elif self.on_idle is not None:
                # Nothing to yield: time still passes for whoever waits on it (absence rules, reloads).
                self.on_idle()
            if stopping and not more:
                return

    def _wait(self) -> float:
        """Seconds to wait in epoll: until the oldest sample held for order may go, else while a tracepoint is
        batched its max wait, else (every tracepoint wakes the reader itself) the idle tick."""
        rings = self._rings
        batched = self.latency == LATENCY_THROUGHPUT or any(r.attached for r in rings[:self._prompt_from])
        wait = self.max_wait if batched else self.flush_interval
        if self._pending:
            due = (self._pending[0] >> 48) + self.reorder_ns - time.clock_gettime_ns(_MONO)
            wait = min(wait, max(due, 0) / 1e9 + 50e-6)
        return wait

    def lost(self) -> dict[str, int]:
        """Samples lost to a full ring, per tracepoint, as each event counted them (exact; Linux 6.0+). Before 6.0,
        what the LOST records said (see the module notes)."""
        with self._lock:
            if not self._read_format & pe.FORMAT_LOST:
                return dict(self.stats.lost_by_tracepoint)
            out = dict(self._lost_closed)
            for full, tp in self._open.items():
                n = 0
                for fd in tp.fds:
                    with contextlib.suppress(OSError):
                        n += pe.read_lost(fd)
                if n:
                    out[full] = out.get(full, 0) + n
            return out

    # ----------------------------------------------------------------------------------------------------------
    # Teardown

    def close(self) -> None:
        """Close every perf event, unmap the rings, and end `events()`. Idempotent."""
        self.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for tp in list(self._open.values()):
                with contextlib.suppress(OSError):
                    self._close_tracepoint(tp)
            for ring in self._rings:
                with contextlib.suppress(OSError, BufferError, ValueError):
                    ring.close()
                with contextlib.suppress(OSError):
                    os.close(ring.fd)
            self._rings.clear()
            self._parsers.clear()
            if self._epoll is not None:
                self._epoll.close()
            with self._wake_lock:
                if self._wake >= 0:
                    os.close(self._wake)
                    self._wake = -1


def _costly(fmt: Any) -> bool:
    """Whether a format's payload is decoded on first use (LazyEvent) rather than at once: where it has strings,
    __data_loc fields or arrays, whose decode (a slice, a string cache lookup, a list) costs several times the
    holder (measured: sched_process_exec's 1.3 us against 0.16 us); a payload of plain integers is one unpack_from,
    as cheap as the holder, and is decoded at once."""
    from dyntel.decoders.tracefs_format import FieldShow

    return fmt.kind == "tracefs" and any(f.dynamic is not None or f.show == FieldShow.STRING or f.array
                                         for f in fmt.user_fields)


def _raw_values(raw: bytes | None) -> tuple[bytes]:
    return (b"" if raw is None else raw,)


def _raise_fd_limit() -> None:
    # One descriptor per tracepoint per CPU: a glob such as syscalls:* on a large machine needs tens of thousands.
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
