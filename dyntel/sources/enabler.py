"""Turning providers on for a while: the service behind the `enable` action.

An enable is a `Grant`: a provider, a level, a keyword mask and an end time. What is on at any moment is the union
of the live grants, so overlapping enables of one provider merge (the highest level, the widest mask and the
latest end win) and revert by themselves: a tracepoint stays on while any live grant covers it, and goes off when
the last one expires. `EnableBook` is that bookkeeping, with no kernel in it.

On Linux (`PerfEnabler`) "on" means dyntel's live source has perf events open on the tracepoint: for a user_events
tracepoint the kernel then sets the producer's enable bit, and its events flow into the rules like any other.
- An EventHeader provider `P` covers the tracepoints `user_events:P_L<level>K<keyword>[options]` whose level is
  at most the grant's and whose keyword shares a bit with its mask (mask 0: every keyword; a keyword-0 tracepoint is
  covered by any mask, as ETW treats keyword-0 events).
- A provider that is a tracefs system (`syscalls`, `sched`) covers its tracepoints, or those its `event` glob names;
  level and keyword do not apply.
Names are listed from tracefs when a grant starts and again every `RESCAN_S` while one is live, so a producer
that registers during the window is turned on too.

Threads: actions call `enable` on worker threads, but the live source is driven by the engine thread. So `enable`
only queues the grant and waits (briefly) for the engine thread, which calls `poll` between events and when idle,
to open and close the tracepoints. Tracepoints the source had open already (because rules or --events select
them) are left alone: `PerfLiveSource.release` closes only what no other selection wants.

On Windows an ETW enabler implements the same `ProviderEnabler` protocol with EnableTraceEx2 on dyntel's session,
re-enabling the provider with the merged level and mask (`EnableBook.merged`) whenever a grant starts or ends.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from dyntel.decoders.eventheader_name import parse_tracepoint_name
from dyntel.errors import DyntelError
from dyntel.sources.perf.tracefs import LiveSetupError, Tracefs

USER_EVENTS = "user_events"
ALL_LEVELS = 255
ALL_KEYWORDS = 0
RESCAN_S = 1.0
OWNER = "enable"  # the live source's selections of the enabler, kept apart from the rules' own
NEVER = 1 << 127


class EnableError(DyntelError):
    """An enable that cannot be done; the message says why and what to change."""


@dataclass(slots=True, frozen=True)
class Grant:
    """One enable: `provider` on at `level` and `keyword` (0: all) until `until_ns` (time.time_ns())."""

    provider: str
    level: int = ALL_LEVELS
    keyword: int = ALL_KEYWORDS
    until_ns: int = 0
    # A tracefs system and, optionally, a glob of its event names (classic tracepoints); None: EventHeader.
    system: str | None = None
    event: str | None = None

    def covers(self, system: str, name: str) -> bool:
        """Whether this grant turns on tracepoint `system:name`."""
        if self.system is not None:
            return system == self.system and (self.event is None or fnmatch.fnmatchcase(name, self.event))
        if system != USER_EVENTS:
            return False
        try:
            tp = parse_tracepoint_name(name)
        except ValueError:
            return False
        return tp.provider == self.provider and tp.level <= self.level and keyword_covered(tp.keyword, self.keyword)


def keyword_covered(keyword: int, mask: int) -> bool:
    """EventHeader/ETW keyword matching: mask 0 takes everything, keyword 0 is taken by every mask."""
    return mask == ALL_KEYWORDS or keyword == 0 or bool(keyword & mask)


@dataclass(slots=True, frozen=True)
class Merged:
    """What a provider is on at, all its live grants together."""

    level: int
    keyword: int
    until_ns: int


class EnableBook:
    """The live grants. Not thread-safe: the owner serialises calls."""

    def __init__(self) -> None:
        self.grants: list[Grant] = []

    def add(self, grant: Grant) -> None:
        self.grants.append(grant)

    def expire(self, now_ns: int) -> list[Grant]:
        """Drop the grants that have ended by `now_ns`; returns them."""
        gone = [g for g in self.grants if g.until_ns <= now_ns]
        if gone:
            self.grants = [g for g in self.grants if g.until_ns > now_ns]
        return gone

    def next_expiry(self) -> int:
        return min((g.until_ns for g in self.grants), default=NEVER)

    def merged(self, provider: str) -> Merged | None:
        """The provider's merged state (for ETW, where a provider has one level and one mask per session)."""
        mine = [g for g in self.grants if g.provider == provider]
        if not mine:
            return None
        mask = 0
        for g in mine:
            if g.keyword == ALL_KEYWORDS:
                mask = ALL_KEYWORDS
                break
            mask |= g.keyword
        return Merged(max(g.level for g in mine), mask, max(g.until_ns for g in mine))

    def wanted(self, tracepoints: Callable[[str], Iterable[str]]) -> set[str]:
        """The tracepoints ("system:name") the live grants cover; `tracepoints(system)` lists a system's names."""
        out: set[str] = set()
        systems = {g.system or USER_EVENTS for g in self.grants}
        for system in sorted(systems):
            mine = [g for g in self.grants if (g.system or USER_EVENTS) == system]
            for name in tracepoints(system):
                if any(g.covers(system, name) for g in mine):
                    out.add(f"{system}:{name}")
        return out


@dataclass(slots=True)
class EnableResult:
    """What an enable turned on: every tracepoint it covers now (`names`), those it opened itself (`opened`, the
    others were on already), those that could not be opened and why, and the provider's merged end time."""

    names: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    until_ns: int = 0
    pending: bool = False  # the engine thread had not applied it when the wait ended


class ProviderEnabler(Protocol):
    """The service an `enable` action finds as `context.services["enabler"]` (Linux perf, Windows ETW)."""

    def enable(self, provider: str, level: int, keyword: int, until_ns: int, *, event: str | None = None,
               timeout: float = 5.0) -> EnableResult: ...


class LiveSelections(Protocol):
    """What PerfEnabler needs of the live source."""

    def add(self, pattern: str, *, owner: str | None = None) -> list[str]: ...

    def release(self, pattern: str, *, owner: str) -> list[str]: ...


@dataclass(slots=True, eq=False)
class _Request:
    grant: Grant
    done: threading.Event = field(default_factory=threading.Event)
    result: EnableResult = field(default_factory=EnableResult)


class PerfEnabler:
    """The Linux enabler: opens and closes tracepoints of a live source (see the module notes)."""

    def __init__(self, source: LiveSelections, tracefs: Tracefs, *, log: Callable[[str], None] | None = None) -> None:
        self.source = source
        self.tracefs = tracefs
        self.book = EnableBook()
        self.log = log
        # Read on the engine thread for every event: True while a grant waits to be applied or is live, so the
        # loop pays one attribute test per event when no enable is under way.
        self.armed = False
        self._lock = threading.Lock()
        self._requests: list[_Request] = []
        self._on: set[str] = set()  # tracepoints this enabler added to the source
        self._failed: dict[str, str] = {}
        self._due_ns = NEVER
        self._closed = False

    # -- worker threads ----------------------------------------------------------------------------------------

    def enable(self, provider: str, level: int, keyword: int, until_ns: int, *, event: str | None = None,
               timeout: float = 5.0) -> EnableResult:
        grant = self.grant_for(provider, level, keyword, until_ns, event)
        request = _Request(grant)
        with self._lock:
            if self._closed:
                raise EnableError("dyntel is stopping: nothing more is turned on")
            self._requests.append(request)
            self.armed = True
        if not request.done.wait(timeout):
            request.result.pending = True
            request.result.until_ns = until_ns
        if request.result.failed and not request.result.names:
            raise EnableError("; ".join(f"{n}: {why}" for n, why in request.result.failed.items()))
        return request.result

    def grant_for(self, provider: str, level: int, keyword: int, until_ns: int, event: str | None) -> Grant:
        """The grant an enable asks for, or EnableError naming what is wrong with it."""
        if not provider or ":" in provider or "/" in provider:
            raise EnableError(f"provider {provider!r} is not a provider or tracefs system name")
        if not 0 <= level <= ALL_LEVELS:
            raise EnableError(f"level {level} is not 0-255")
        if keyword < 0 or keyword >= 1 << 64:
            raise EnableError(f"keyword {keyword:#x} is not a 64-bit mask")
        events = self.tracefs.path / "events"
        if provider != USER_EVENTS and (events / provider).is_dir():
            return Grant(provider, level, keyword, until_ns, system=provider, event=event)
        if event is not None:
            raise EnableError(f"event {event!r}: an EventHeader provider is enabled by level and keyword, not by "
                              f"event name ({provider!r} is not a tracefs system of this kernel)")
        if not (self.tracefs.path / "user_events_data").exists():
            raise EnableError(f"{provider!r} is not a tracefs system of this kernel, and this kernel has no "
                              f"user_events (CONFIG_USER_EVENTS) for an EventHeader provider of that name")
        return Grant(provider, level, keyword, until_ns)

    # -- the engine thread ---------------------------------------------------------------------------------------

    def poll(self) -> None:
        """Apply what is due: new grants, expiries, the periodic rescan. Cheap when nothing is."""
        if self._requests or time.time_ns() >= self._due_ns:
            self.apply()

    def apply(self, now_ns: int | None = None) -> None:
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            requests, self._requests = self._requests, []
        for r in requests:
            self.book.add(r.grant)
        for gone in self.book.expire(now):
            if self.log is not None:
                self.log(f"dyntel: enable of {gone.provider} ended")
        try:
            wanted = self.book.wanted(self._list)
        except LiveSetupError as e:
            wanted = set(self._on)
            for r in requests:
                r.result.failed["tracefs"] = str(e)
        opened: set[str] = set()
        for name in sorted(wanted - self._on - set(self._failed)):
            opened.update(self._turn_on(name))
        for name in sorted(self._on - wanted):
            self._on.discard(name)
            self.source.release(name, owner=OWNER)
        if not self.book.grants:
            self._failed.clear()
        for r in requests:
            merged = self.book.merged(r.grant.provider)
            r.result.names = sorted(n for n in wanted if r.grant.covers(*n.split(":", 1)) and n not in self._failed)
            r.result.opened = sorted(n for n in opened if r.grant.covers(*n.split(":", 1)))
            r.result.failed.update({n: why for n, why in self._failed.items() if r.grant.covers(*n.split(":", 1))})
            r.result.until_ns = merged.until_ns if merged is not None else r.grant.until_ns
            r.done.set()
        with self._lock:
            live = bool(self.book.grants)
            self._due_ns = 0 if self._requests else min(self.book.next_expiry(),
                                                         now + int(RESCAN_S * 1e9) if live else NEVER)
            self.armed = live or bool(self._requests)

    def _turn_on(self, name: str) -> list[str]:
        """Select `name` in the source; what it opened (nothing when rules had it open already)."""
        try:
            opened = self.source.add(name, owner=OWNER)
        except LiveSetupError as e:
            self._failed[name] = str(e)
            self.source.release(name, owner=OWNER)
            if self.log is not None:
                self.log(f"dyntel: enable: {name}: {e}")
            return []
        self._on.add(name)
        return opened

    def _list(self, system: str) -> list[str]:
        return self.tracefs.system_events(system)

    @property
    def on(self) -> list[str]:
        """The tracepoints this enabler has added to the source and not yet released."""
        return sorted(self._on)

    def close(self) -> None:
        """Turn off everything this enabler turned on, and refuse new grants (on the engine thread, at exit)."""
        with self._lock:
            self._closed = True
            requests, self._requests = self._requests, []
            self.armed = False
        for r in requests:
            r.result.failed[r.grant.provider] = "dyntel is stopping"
            r.done.set()
        for name in sorted(self._on):
            try:
                self.source.release(name, owner=OWNER)
            except (OSError, LiveSetupError) as e:
                if self.log is not None:
                    self.log(f"dyntel: enable: turning {name} off: {e}")
        self._on.clear()
        self.book.grants.clear()

