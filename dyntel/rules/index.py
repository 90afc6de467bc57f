"""Which rules can match an event, from its provider, name and level alone.

Rules are bucketed by what their requirements name (dyntel.rules.requirements: `match` and what the compiled
condition implies, such as `provider == "X" and event == "Y"`): provider and event, provider only, event only,
neither. A rule with several alternatives (`event in ["A", "B"]`) sits in a bucket for each. The answer for one
(provider, event, level) is the union of four buckets, computed the first time that key is seen and remembered, so
the cost per event is one dict lookup, and what it returns grows with the rules that can match the event, not with
all rules. The tuple keeps the rules' load order, so firings come out in a stable order.
"""

from __future__ import annotations

from collections.abc import Iterable

from dyntel.rules.model import CompiledRule, Requirement
from dyntel.rules.requirements import alternatives

# Distinct (provider, event, level) keys remembered before starting over: a bound for a source that invents names.
_MAX_MEMO = 65536

_Entry = tuple[CompiledRule, Requirement]


class RuleIndex:
    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self._order = {id(r): i for i, r in enumerate(self.rules)}
        self._both: dict[tuple[str, str], list[_Entry]] = {}
        self._provider: dict[str, list[_Entry]] = {}
        self._event: dict[str, list[_Entry]] = {}
        self._any: list[_Entry] = []
        for r in self.rules:
            for alt in alternatives(r):
                p, e = alt.provider, alt.event
                if p is not None and e is not None:
                    self._both.setdefault((p, e), []).append((r, alt))
                elif p is not None:
                    self._provider.setdefault(p, []).append((r, alt))
                elif e is not None:
                    self._event.setdefault(e, []).append((r, alt))
                else:
                    self._any.append((r, alt))
        self._memo: dict[tuple[str, str, int | None], tuple[CompiledRule, ...]] = {}

    def candidates(self, provider: str, event: str, level: int | None) -> tuple[CompiledRule, ...]:
        """The rules whose requirements this event meets, in load order; their conditions decide the rest.

        A `match` level is a ceiling: it takes events at that level or more severe (a lower number). An event with
        no level (a plain tracepoint) passes every ceiling: there is nothing to say it is too verbose; but not a
        rule whose condition compares the level (that comparison is false without one).
        """
        key = (provider, event, level)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found: dict[int, CompiledRule] = {}
        for entries in (self._both.get((provider, event), ()), self._provider.get(provider, ()),
                        self._event.get(event, ()), self._any):
            for r, alt in entries:
                if id(r) not in found and alt.admits_level(level):
                    found[id(r)] = r
        result = tuple(sorted(found.values(), key=lambda r: self._order[id(r)]))
        if len(self._memo) >= _MAX_MEMO:
            self._memo.clear()
        self._memo[key] = result
        return result

    def wants(self, provider: str, event: str, level: int | None) -> bool:
        """Whether any rule could match such an event: a source can skip decoding the payload when not."""
        return bool(self.candidates(provider, event, level))

    def __len__(self) -> int:
        return len(self.rules)
