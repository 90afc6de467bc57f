"""Why a rule did or did not fire: one record per event that met the rule's `match` pre-filter.

Each record says what stopped the event, in the order the engine looks: the condition (which of its top-level
`and` parts were false), the window (how far it has got), the cooldown (until when), the limit (until when);
or that the rule fired. An absence timer that runs out gives a record too, with the group's last event.

`Engine(rules, scheduler, explain="rule-name")` keeps these records in `engine.explanations` as it processes
events; `explain_rule` (dyntel.engine.explain_run) runs a whole event stream through an engine and returns them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dyntel.event import Event
from dyntel.event_json import format_event
from dyntel.formatting import format_group, format_time

CONDITION = "condition"  # the condition was false
WINDOW = "window"  # the condition held, the window did not fire (yet)
COOLDOWN = "cooldown"  # the window fired; the group's cooldown held the firing back
LIMIT = "limit"  # the window fired; the rule's limit held the firing back
FIRED = "fired"
ERROR = "error"  # the rule's compiled code raised on this event


@dataclass(slots=True)
class ExplainRecord:
    rule: str
    time: int
    event: Event | None
    outcome: str
    detail: str
    false_parts: tuple[str, ...] = ()  # for CONDITION: the top-level conjuncts that were false, as written
    group: dict[str, Any] | None = field(default=None)

    def line(self) -> str:
        e = self.event
        if e is not None:
            pid = f" pid {e.pid}" if e.pid is not None else ""
            what = f"{e.provider}:{e.name}{pid}"
        else:
            what = "(timer)"
        group = f" group {format_group(self.group)}" if self.group else ""
        head = f"{format_time(self.time)} {self.rule} {what}"
        if self.outcome == CONDITION:
            return f"{head}: condition false: {self.detail}"
        if self.outcome == WINDOW:
            return f"{head}: window: {self.detail}"
        if self.outcome in (COOLDOWN, LIMIT):
            return f"{head}: held back by {self.detail}{group}"
        if self.outcome == FIRED:
            return f"{head}: fired{group}" + (f" ({self.detail})" if self.detail else "")
        return f"{head}: {self.outcome}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "time": self.time, "outcome": self.outcome, "detail": self.detail,
            "false_parts": list(self.false_parts), "group": self.group,
            "event": json.loads(format_event(self.event)) if self.event is not None else None,
            "line": self.line(),
        }
