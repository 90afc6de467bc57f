"""Engine counters: per rule, and for the whole engine.

Counters are kept by rule name, so they survive `Engine.replace_rules` even when a rule's window state does not:
they describe the run, not one version of a rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(slots=True)
class RuleStats:
    candidates: int = 0  # events the index handed to the rule (met what its `match` and condition require)
    matched: int = 0  # of those, events whose condition held
    fired: int = 0  # firings handed to the scheduler
    suppressed_cooldown: int = 0  # firings a window or the condition asked for, held back by the cooldown
    suppressed_limit: int = 0  # ... held back by the per-rule limit
    groups_evicted: int = 0  # groups (window or cooldown) dropped by the group cap while still live
    errors: int = 0  # events on which the rule's compiled code raised; the rule skips that event
    last_error: str = ""

    def copy(self) -> RuleStats:
        return replace(self)


@dataclass(slots=True)
class EngineStats:
    events: int = 0
    candidates: int = 0  # sum over events of the candidates the index returned
    rules: dict[str, RuleStats] = field(default_factory=dict)

    @property
    def matched(self) -> dict[str, int]:
        return {name: s.matched for name, s in self.rules.items()}

    @property
    def fired(self) -> dict[str, int]:
        return {name: s.fired for name, s in self.rules.items()}

    @property
    def suppressed_cooldown(self) -> int:
        return sum(s.suppressed_cooldown for s in self.rules.values())

    @property
    def suppressed_limit(self) -> int:
        return sum(s.suppressed_limit for s in self.rules.values())

    @property
    def groups_evicted(self) -> int:
        return sum(s.groups_evicted for s in self.rules.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "candidates": self.candidates,
            "suppressed_cooldown": self.suppressed_cooldown,
            "suppressed_limit": self.suppressed_limit,
            "groups_evicted": self.groups_evicted,
            "rules": {name: asdict(s) for name, s in self.rules.items()},
        }
