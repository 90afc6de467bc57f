"""The flight recorder: the recent events, kept so that a `record` action can write what led up to a firing.

One ring (a deque of Events) per provider, so that a chatty provider cannot push a quiet one's history out, all
bounded together:
- in time: events older than `keep_ns` before the newest one are dropped (the engine sets `keep_ns` from the
  longest `last:`/`next:` of the loaded rules' record actions, see `keep_for`);
- in bytes: `max_bytes` over all rings, by an estimate of each event's size in memory (a fixed cost plus one per
  payload value; the strings themselves are not measured, which would cost a walk over every event). Past the cap,
  the oldest events of the ring holding the most bytes go first; they are counted in `dropped`.

Threads. `append` runs on the engine thread for every event while a rule records, so it is one dict lookup, one
deque append and a few integer operations; trimming runs every `TRIM_EVERY` appends or when over the byte cap.
`window` runs on an action's worker thread: it copies each ring with `list(deque)`, one C call that the GIL keeps
whole (no Python code runs between its steps), so no lock is taken on the engine's path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from dyntel.actions.spec import ActionSpec
from dyntel.event import Event
from dyntel.queues import QueueCounts, QueueRegistry
from dyntel.units import parse_duration

SECOND = 1_000_000_000
DEFAULT_LAST_NS = 30 * SECOND
DEFAULT_NEXT_NS = 0
DEFAULT_MAX_BYTES = 64 << 20
# Events `next:` waits for are read from the ring once the wait is over, so it must hold them that long too; the
# margin covers the live source's delay (flush interval and reorder window) and a busy engine thread.
KEEP_MARGIN_NS = 5 * SECOND
TRIM_EVERY = 1024
EVENT_BYTES = 200  # an Event, its values tuple, and the deque's share
VALUE_BYTES = 48  # a small int or str object and its slot
BYTE_CAP = "byte cap: pushed out before its time"


def estimate(event: Event) -> int:
    """About how many bytes an event holds in memory (cheap: no walk over its values)."""
    return EVENT_BYTES + VALUE_BYTES * len(event.values)


class _Ring:
    __slots__ = ("bytes", "events")

    def __init__(self) -> None:
        self.events: deque[Event] = deque()
        self.bytes = 0


class FlightRecorder:
    """Registered with `queues` (dyntel.queues) as `flight recorder`: events in, out (aged past keep_ns, their
    time up), dropped (`byte cap`: pushed out before their time was up), bytes held of max_bytes. The counts are
    copied when read, so `append` pays nothing for them."""

    def __init__(self, *, keep_ns: int = DEFAULT_LAST_NS + KEEP_MARGIN_NS, max_bytes: int = DEFAULT_MAX_BYTES,
                 queues: QueueRegistry | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError("the flight recorder needs a positive byte cap")
        self.keep_ns = keep_ns
        self.max_bytes = max_bytes
        self.bytes = 0
        self.dropped = 0  # pushed out by the byte cap before their time was up
        self.aged = 0  # dropped because their time was up (kept as long as the rules' record actions need)
        self._rings: dict[str, _Ring] = {}
        self._count = 0
        if queues is not None:
            queues.add("flight recorder", kind="recorder", unit="events", capacity=max_bytes, size_unit="bytes",
                       size_of=lambda: self.bytes, refresh=self._refresh)

    def _refresh(self, counts: QueueCounts) -> None:
        counts.put = self._count
        counts.out = self.aged
        counts.dropped[BYTE_CAP] = self.dropped

    def append(self, event: Event) -> None:
        ring = self._rings.get(event.provider)
        if ring is None:
            ring = self._rings[event.provider] = _Ring()
        ring.events.append(event)
        size = EVENT_BYTES + VALUE_BYTES * len(event.values)
        ring.bytes += size
        self.bytes += size
        self._count += 1
        if self.bytes > self.max_bytes or not self._count % TRIM_EVERY:
            self.trim(event.time or 0)

    def trim(self, now_ns: int) -> None:
        """Drop what is older than keep_ns before `now_ns`, then what is over the byte cap (engine thread)."""
        oldest = now_ns - self.keep_ns
        for ring in self._rings.values():
            events = ring.events
            while events and (events[0].time or 0) < oldest:
                gone = events.popleft()
                size = estimate(gone)
                ring.bytes -= size
                self.bytes -= size
                self.aged += 1
        while self.bytes > self.max_bytes:
            ring = max(self._rings.values(), key=lambda r: r.bytes)
            if not ring.events:
                break
            gone = ring.events.popleft()
            size = estimate(gone)
            ring.bytes -= size
            self.bytes -= size
            self.dropped += 1

    def window(self, start_ns: int, end_ns: int, *, after: bool = False) -> list[Event]:
        """The events with `start_ns <= time <= end_ns` (`start_ns < time` with `after`), in time order."""
        out: list[Event] = []
        for ring in list(self._rings.values()):
            for e in list(ring.events):  # one C call: atomic under the GIL (see the module notes)
                t = e.time
                if t is not None and (t > start_ns if after else t >= start_ns) and t <= end_ns:
                    out.append(e)
        out.sort(key=_time)
        return out

    @property
    def events(self) -> int:
        return sum(len(r.events) for r in list(self._rings.values()))


def _time(event: Event) -> int:
    return event.time or 0


def record_spans(options: dict[str, Any]) -> tuple[int, int]:
    """(last, next) in ns of one record action's options; defaults where absent or not known until it fires."""
    return (_span(options.get("last"), DEFAULT_LAST_NS), _span(options.get("next"), DEFAULT_NEXT_NS))


def _span(value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        return parse_duration(value) if isinstance(value, str) else int(float(value) * SECOND)
    except (TypeError, ValueError):
        return default  # a placeholder: its value is known only when the rule fires


class HasActions(Protocol):
    """A compiled rule, as far as the recorder looks at it (dyntel.rules.model.CompiledRule)."""

    @property
    def actions(self) -> Sequence[ActionSpec]: ...


def keep_for(rules: Iterable[HasActions]) -> int | None:
    """How long the rings must keep events for these rules' record actions; None when no rule records."""
    spans = [max(record_spans(a.options)) for r in rules for a in r.actions if a.type == "record"]
    return max(spans) + KEEP_MARGIN_NS if spans else None
