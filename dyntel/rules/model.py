"""Compiled rules: what the loader hands the engine.

The loader (read YAML with positions -> collect files, lists and macros -> compile conditions -> index) produces a
`RuleSet` of `CompiledRule`s; the engine only ever sees these. Everything here is plain data plus compiled
callables, so that the engine never looks at YAML or condition text while events flow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Re-exported: a compiled rule carries both, and they live below the rules so that the actions can use them too.
from dyntel.actions.spec import ActionSpec as ActionSpec
from dyntel.errors import Position as Position
from dyntel.event import Event
from dyntel.source_types import FieldTest

# A compiled condition: true when the event matches. Reading a missing field makes a comparison false, never raises.
Predicate = Callable[[Event], bool]
# Reads one value from an event (a group_by key, a threshold's value, a sequence's `by`); None when missing.
Getter = Callable[[Event], Any]


@dataclass(frozen=True, slots=True)
class RuleWarning:
    """Something about a rule that loads which its author should know (one line, at the rule's position)."""

    position: Position
    message: str

    def __str__(self) -> str:
        return f"{self.position}: warning: {self.message}"

    def to_json(self) -> dict[str, object]:
        p = self.position
        return {"file": p.file, "line": p.line, "column": p.column, "message": self.message, "severity": "warning"}


@dataclass(frozen=True, slots=True)
class Match:
    """The cheap pre-filter the engine indexes on. None means any."""

    provider: str | None = None
    event: str | None = None
    level: int | None = None  # level ceiling: events with level <= this (ETW/EventHeader: lower is more severe)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One way an event can meet a rule, as necessary conditions read from the rule's `match` and its compiled
    condition (dyntel.rules.requirements): an event the rule can take meets every part of at least one of its
    requirements. The index finds candidates by provider, event and level; `tests` are what a source's native
    pre-filter can check on a tracepoint's raw payload (dyntel.sources.FieldTest)."""

    provider: str | None = None  # None: any
    event: str | None = None
    max_level: int | None = None  # level <= this; an event without a level passes unless `has_level`
    min_level: int | None = None  # level >= this (only the condition says so, and then `has_level` too)
    has_level: bool = False  # the event must have a level: the condition compares it, which fails without one
    tests: tuple[FieldTest, ...] = ()

    def admits(self, provider: str, event: str, level: int | None) -> bool:
        """Whether an event of this provider, name and level meets the requirement's index keys."""
        if self.provider is not None and self.provider != provider:
            return False
        if self.event is not None and self.event != event:
            return False
        return self.admits_level(level)

    def admits_level(self, level: int | None) -> bool:
        if level is None:
            return not self.has_level
        return ((self.max_level is None or level <= self.max_level)
                and (self.min_level is None or level >= self.min_level))


@dataclass(frozen=True, slots=True)
class GroupKeys:
    names: tuple[str, ...]  # as written: "pid", "fields.path", ...
    getters: tuple[Getter, ...]


@dataclass(frozen=True, slots=True)
class CountWindow:
    count: int
    within_ns: int
    group_by: GroupKeys


@dataclass(frozen=True, slots=True)
class ThresholdWindow:
    value: Getter  # compiled from the `value` expression
    value_text: str
    agg: str  # avg | min | max | sum | p50 | p90 | p99
    op: str  # > >= < <= == !=
    limit: float
    within_ns: int
    group_by: GroupKeys


@dataclass(frozen=True, slots=True)
class AbsenceWindow:
    within_ns: int
    group_by: GroupKeys


@dataclass(frozen=True, slots=True)
class SequenceWindow:
    steps: tuple[Predicate, ...]
    step_texts: tuple[str, ...]
    within_ns: int
    by: GroupKeys


Window = CountWindow | ThresholdWindow | AbsenceWindow | SequenceWindow


@dataclass(frozen=True, slots=True)
class Limit:
    actions: int
    per_ns: int


@dataclass(slots=True, eq=False)
class CompiledRule:
    name: str
    match: Match
    predicate: Predicate
    condition_text: str
    window: Window | None = None
    cooldown_ns: int = 0
    limit: Limit | None = None
    actions: tuple[ActionSpec, ...] = ()
    description: str = ""
    tags: tuple[str, ...] = ()
    position: Position | None = None
    # A digest of everything that defines the rule's behaviour: on reload, a rule whose fingerprint did not change
    # keeps its window state.
    fingerprint: str = ""
    # Compiled parts of the condition, in source order, for --explain: (text, predicate) for each top-level
    # conjunct, so the engine can say which part stopped an event.
    explain_parts: Sequence[tuple[str, Predicate]] = ()
    # What an event must have for the rule to take it: `match` and what the compiled condition implies, as
    # alternatives (dyntel.rules.requirements). None: not derived (a rule made by hand), `match` alone says;
    # (): no event can meet the condition.
    requires: tuple[Requirement, ...] | None = None


@dataclass(slots=True)
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    files: tuple[str, ...] = ()
    # What the loader has to say about rules that load: shown where load errors are, never refused.
    warnings: list[RuleWarning] = field(default_factory=list)
