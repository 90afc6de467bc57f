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

# A compiled condition: true when the event matches. Reading a missing field makes a comparison false, never raises.
Predicate = Callable[[Event], bool]
# Reads one value from an event (a group_by key, a threshold's value, a sequence's `by`); None when missing.
Getter = Callable[[Event], Any]


@dataclass(frozen=True, slots=True)
class Match:
    """The cheap pre-filter the engine indexes on. None means any."""

    provider: str | None = None
    event: str | None = None
    level: int | None = None  # level ceiling: events with level <= this (ETW/EventHeader: lower is more severe)


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


@dataclass(slots=True)
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    files: tuple[str, ...] = ()
