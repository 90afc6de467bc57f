"""A firing: one rule deciding to act on one event, and what its actions did. One JSON object each (the contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dyntel.event import Event
from dyntel.event_json import format_event

OK = "ok"
DRY_RUN = "dry-run"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass(slots=True)
class ActionOutcome:
    type: str
    status: str  # ok | dry-run | failed | skipped
    detail: dict[str, Any] = field(default_factory=dict)  # outputs (a path, a duration) or the reason

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "status": self.status, **self.detail}


@dataclass(slots=True)
class Firing:
    rule: str
    time: int  # ns, the event time that made the rule fire (or the time an absence timer ran out)
    group: dict[str, Any]
    event: Event | None  # the event that fired it; for an absence, the last event of the group
    actions: list[ActionOutcome] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        event = json.loads(format_event(self.event)) if self.event is not None else None
        return {"rule": self.rule, "time": self.time, "group": self.group, "event": event,
                "actions": [a.to_json() for a in self.actions]}
