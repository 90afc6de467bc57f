"""Each rule's state as ops ask for it (`dyntel status`, /status): running, how full its window is, cooling down
until when, whether its limit is reached, and its counters. Like dotnet-monitor's collection rule states.

It is read from another thread (the metrics server) while the engine thread goes on: every read is of a copy
(`list(...)` of a dict or deque is atomic under the GIL), and a read that still races a change is retried, so
a status is never a reason for the engine to take a lock.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dyntel.formatting import format_duration, format_time
from dyntel.rules.model import AbsenceWindow, CountWindow, SequenceWindow, ThresholdWindow

if TYPE_CHECKING:
    from dyntel.engine.engine import Engine

RUNNING = "running"
COOLDOWN = "cooldown"
LIMIT_REACHED = "limit reached"


@dataclass(slots=True)
class RuleStatus:
    name: str
    state: str  # running | cooldown | limit reached
    kind: str  # event | count | threshold | absence | sequence
    groups: int  # live groups of its window or cooldowns
    window_fill: str | None  # count windows: the fullest group, "4/5 in 30s"
    cooldown_until: int | None  # ns: the latest end of a group's cooldown still ahead
    limit: str | None  # "2/3 per 1h"
    candidates: int
    matched: int
    fired: int
    suppressed_cooldown: int
    suppressed_limit: int
    errors: int
    last_error: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _kind(window: object) -> str:
    if isinstance(window, CountWindow):
        return "count"
    if isinstance(window, ThresholdWindow):
        return "threshold"
    if isinstance(window, AbsenceWindow):
        return "absence"
    if isinstance(window, SequenceWindow):
        return "sequence"
    return "event"


def _one(st: Any, now: int) -> RuleStatus:
    rule = st.rule
    groups = list(st.window.groups.values()) if st.window is not None and hasattr(st.window, "groups") else []
    fill = None
    if isinstance(rule.window, CountWindow):
        lo = now - rule.window.within_ns
        best = max((sum(1 for t in list(g.times) if t >= lo) for g in groups), default=0)
        fill = f"{best}/{rule.window.count} in {format_duration(rule.window.within_ns)}"
    cooldown_ends = [end for end in list(st.cooldowns.values()) if end > now]
    cooldown_until = max(cooldown_ends) if cooldown_ends else None
    limit_text = None
    state = RUNNING
    if rule.limit is not None:
        recent = [t for t in list(st.fire_times) if t > now - rule.limit.per_ns]
        limit_text = f"{len(recent)}/{rule.limit.actions} per {format_duration(rule.limit.per_ns)}"
        if len(recent) >= rule.limit.actions:
            state = LIMIT_REACHED
    if state == RUNNING and cooldown_ends and len(cooldown_ends) == len(st.cooldowns):
        state = COOLDOWN  # every group it knows is cooling down (an ungrouped rule has one)
    s = st.stats
    return RuleStatus(rule.name, state, _kind(rule.window), max(len(groups), len(cooldown_ends)), fill,
                      cooldown_until, limit_text, s.candidates, s.matched, s.fired, s.suppressed_cooldown,
                      s.suppressed_limit, s.errors, s.last_error)


def rule_statuses(engine: Engine, now_ns: int | None = None) -> list[RuleStatus]:
    """Every loaded rule's status at `now_ns` (default: the engine's clock, else the wall clock)."""
    # The engine's private state is read here on purpose: this module is the engine's window for observers, and
    # keeping it apart keeps the engine's hot path free of anything status needs.
    now = now_ns if now_ns is not None else (engine._now or time.time_ns())
    for attempt in range(5):
        try:
            return [_one(st, now) for st in list(engine._active.states.values())]
        except RuntimeError:  # a dict or deque changed while copied: the engine thread moved on; read again
            if attempt == 4:
                raise
    return []


def format_statuses(statuses: list[RuleStatus]) -> str:
    """A table for people."""
    rows = [("RULE", "STATE", "KIND", "WINDOW", "COOLDOWN UNTIL", "LIMIT", "MATCHED", "FIRED", "HELD BACK")]
    for s in statuses:
        held = s.suppressed_cooldown + s.suppressed_limit
        rows.append((s.name, s.state, s.kind, s.window_fill or "-",
                     format_time(s.cooldown_until) if s.cooldown_until else "-", s.limit or "-",
                     str(s.matched), str(s.fired), str(held)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows) + "\n"
