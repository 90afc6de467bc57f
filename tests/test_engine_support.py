"""Builders for the engine tests: real CompiledRules (predicates as small functions over Event) and events.

These stand in for the YAML loader, so the engine is tested on its own; the loader's own tests cover the path from
text to CompiledRule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dyntel.engine.engine import ActionScheduler, Engine, default_index
from dyntel.event import Encoding, Event, FieldInfo, Schema
from dyntel.rules.model import (
    ActionSpec,
    CompiledRule,
    GroupKeys,
    Limit,
    Match,
    Predicate,
    RuleSet,
    Window,
)

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S  # a wall-clock time, so explain shows ISO times

_schemas: dict[tuple[tuple[str, type], ...], Schema] = {}


def _schema(fields: dict[str, Any]) -> Schema:
    shape = tuple((k, type(v)) for k, v in fields.items())
    schema = _schemas.get(shape)
    if schema is None:
        infos = tuple(FieldInfo(k, Encoding.ZSTRING_CHAR8 if isinstance(v, str) else Encoding.VALUE64)
                      for k, v in fields.items())
        schema = _schemas[shape] = Schema(infos)
    return schema


def ev(t: int | None, pid: int | None = 1, provider: str = "Svc", name: str = "Req", **fields: Any) -> Event:
    """An event at T0 + t."""
    return Event(provider, name, _schema(fields), tuple(fields.values()), time=None if t is None else T0 + t,
                 pid=pid, tid=pid, cpu=0)


def getter(name: str) -> Callable[[Event], Any]:
    if name.startswith("fields."):
        key = name[len("fields."):]
        return lambda e: e.fields.get(key)
    return lambda e: getattr(e, name, None)


def keys(*names: str) -> GroupKeys:
    return GroupKeys(tuple(names), tuple(getter(n) for n in names))


def always(e: Event) -> bool:
    return True


def field_is(name: str, value: Any) -> Predicate:
    return lambda e: e.fields.get(name) == value


def rule(name: str = "r", *, provider: str | None = "Svc", event: str | None = "Req", when: Predicate = always,
         text: str = "true", window: Window | None = None, cooldown: int = 0, limit: Limit | None = None,
         actions: tuple[ActionSpec, ...] = (), fingerprint: str | None = None,
         parts: tuple[tuple[str, Predicate], ...] = ()) -> CompiledRule:
    return CompiledRule(name=name, match=Match(provider, event), predicate=when, condition_text=text, window=window,
                        cooldown_ns=cooldown, limit=limit, actions=actions,
                        fingerprint=fingerprint if fingerprint is not None else f"fp-{name}", explain_parts=parts)


def engine(*rules: CompiledRule, scheduler: ActionScheduler | None = None, **kw: Any) -> Engine:
    return Engine(RuleSet(list(rules)), scheduler, index=default_index, **kw)


def fire_times(engine: Engine, events: list[Event], end: int | None = None) -> list[tuple[str, int]]:
    """(rule, seconds after T0) of every firing, absences by T0 + `end` (ns) included."""
    out = []
    for e in events:
        out.extend(engine.process(e))
    if end is not None:
        out.extend(engine.finish(T0 + end))
    return [(f.rule, (f.time - T0) / S) for f in out]
