"""The one contract every queue and buffer keeps: items in, out, dropped by reason, size and capacity.

A component that holds items on their way (the action pool, the forwarder, an alert exporter and its spool, the
flight recorder, the live ETW queue, the perf rings) keeps a `QueueCounts` and registers it, where it is made, with
the run's `QueueRegistry`: the registry is passed down to it (`dyntel run` and `dyntel replay` make one per run),
never imported from a higher layer. The metrics (`dyntel_queue_*`, dyntel.service.metrics), the exit summary that
`run` and `replay` print, and `/status` (`dyntel status`) all read the registry, so a drop counted anywhere shows
in all three.

The counts:
- `put`: items offered to the queue (accepted or dropped at the door);
- `out`: items that left it for the next stage (sent, run, handed on, moved to a spool);
- `dropped`: items that left it for nothing, by reason (`queue full`, `export failed`, `shutdown`, ...);
- `size()` now and `capacity` (None when the component cannot tell), in `size_unit` (the unit of `put` unless
  said otherwise: the flight recorder and the perf rings are bounded in bytes).

Counting must cost the hot paths nothing they do not pay already. A component that keeps its own counters (the
perf source's `stats.lost`, the recorder's append count) registers a `refresh` that copies them into its
QueueCounts when the registry is read (a scrape, the exit summary), instead of counting twice per event.

Neutral: this module imports nothing of dyntel, so sources, engine, actions and the OTLP code all may use it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Drop reasons every component uses alike (others are free text naming the cause).
QUEUE_FULL = "queue full"
SHUTDOWN = "shutdown"


@dataclass(slots=True, eq=False)
class QueueCounts:
    name: str  # unique in its registry: "actions", "forward http://collector:4318", ...
    kind: str = ""  # the component: actions, forward, alerts, spool, recorder, etw, perf
    unit: str = "items"  # what put/out/dropped count: firings, events, alerts, records
    capacity: int | None = None
    size_unit: str | None = None  # the unit of size() and capacity when not `unit` (bytes)
    put: int = 0
    out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    size_of: Callable[[], int] | None = None
    # Copies counters the component keeps in its own form into this object; run before every read.
    refresh: Callable[[QueueCounts], None] | None = None

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def size(self) -> int | None:
        if self.size_of is None:
            return None
        try:
            return int(self.size_of())
        except Exception:  # a component closed under the reader: its size is not known, its counts still are
            return None

    def update(self) -> QueueCounts:
        if self.refresh is not None:
            # Reading must never fail a scrape or the exit: on an error the counts stay as they were.
            with contextlib.suppress(Exception):
                self.refresh(self)
        return self

    def to_json(self) -> dict[str, Any]:
        self.update()
        return {"name": self.name, "kind": self.kind, "unit": self.unit, "in": self.put, "out": self.out,
                "dropped": dict(sorted(self.dropped.items())), "dropped_total": self.total_dropped,
                "size": self.size(), "capacity": self.capacity, "size_unit": self.size_unit or self.unit}


class QueueRegistry:
    """The queues of one run, by name, in the order they were made."""

    def __init__(self) -> None:
        self._queues: dict[str, QueueCounts] = {}
        self._lock = threading.Lock()

    def add(self, name: str, *, kind: str = "", unit: str = "items", capacity: int | None = None,
            size_unit: str | None = None, size_of: Callable[[], int] | None = None,
            refresh: Callable[[QueueCounts], None] | None = None) -> QueueCounts:
        return self.register(QueueCounts(name, kind, unit, capacity, size_unit, size_of=size_of, refresh=refresh))

    def register(self, counts: QueueCounts) -> QueueCounts:
        """Register `counts` (renamed `NAME #2`, ... when the name is taken by another queue); returns it."""
        with self._lock:
            base, n = counts.name, 1
            while counts.name in self._queues and self._queues[counts.name] is not counts:
                n += 1
                counts.name = f"{base} #{n}"
            self._queues[counts.name] = counts
        return counts

    def all(self) -> list[QueueCounts]:
        with self._lock:
            queues = list(self._queues.values())
        return [q.update() for q in queues]

    def of_kind(self, kind: str) -> list[QueueCounts]:
        return [q for q in self.all() if q.kind == kind]

    def size_of_kind(self, kind: str) -> int:
        """What the queues of one kind hold now, together (the OTLP spools' depth: kind `spool`)."""
        return sum(q.size() or 0 for q in self.of_kind(kind))

    def total_dropped(self) -> int:
        return sum(q.total_dropped for q in self.all())

    def to_json(self) -> list[dict[str, Any]]:
        return [q.to_json() for q in self.all()]


def _amount(n: int | None, unit: str) -> str:
    if n is None:
        return "-"
    if unit == "bytes":
        for step, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if n >= step:
                return f"{n / step:.1f} {name}"
        return f"{n} B"
    return str(n)


def format_queue(q: dict[str, Any]) -> str:
    """One queue as a line for people: `forward http://...: 120 events in, 0 out, 120 dropped (120 export
    failed), 0 of 65536 waiting`."""
    dropped = f"{q['dropped_total']} dropped"
    reasons = [f"{n} {reason}" for reason, n in q["dropped"].items() if n]
    if reasons:
        dropped += " (" + ", ".join(reasons) + ")"
    size_unit = q.get("size_unit") or q["unit"]
    size = _amount(q["size"], size_unit)
    capacity = _amount(q["capacity"], size_unit)
    held = f"{size} of {capacity} waiting" if size_unit == q["unit"] else f"{size} of {capacity} held"
    return f"{q['name']}: {q['in']} {q['unit']} in, {q['out']} out, {dropped}, {held}"


def format_queues(queues: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    """The queues section of an exit summary or of `dyntel status` (dicts as `QueueCounts.to_json` gives)."""
    if not queues:
        return []
    total = sum(q["dropped_total"] for q in queues)
    head = f"{indent}queues ({total} item(s) dropped in all):" if total else f"{indent}queues (nothing dropped):"
    return [head, *(f"{indent}  {format_queue(q)}" for q in queues)]
