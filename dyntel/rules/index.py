"""Which rules can match an event, from its provider, name and level alone.

Rules are bucketed by what their `match` names (provider and event, provider only, event only, neither); the
answer for one (provider, event, level) is the union of four buckets, computed the first time that key is seen and
remembered, so the cost per event is one dict lookup, and what it returns grows with the rules that can match the
event, not with all rules. The tuple keeps the rules' load order, so firings come out in a stable order.
"""

from __future__ import annotations

from collections.abc import Iterable

from dyntel.rules.model import CompiledRule

# Distinct (provider, event, level) keys remembered before starting over: a bound for a source that invents names.
_MAX_MEMO = 65536


class RuleIndex:
    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self._order = {id(r): i for i, r in enumerate(self.rules)}
        self._both: dict[tuple[str, str], list[CompiledRule]] = {}
        self._provider: dict[str, list[CompiledRule]] = {}
        self._event: dict[str, list[CompiledRule]] = {}
        self._any: list[CompiledRule] = []
        for r in self.rules:
            p, e = r.match.provider, r.match.event
            if p is not None and e is not None:
                self._both.setdefault((p, e), []).append(r)
            elif p is not None:
                self._provider.setdefault(p, []).append(r)
            elif e is not None:
                self._event.setdefault(e, []).append(r)
            else:
                self._any.append(r)
        self._memo: dict[tuple[str, str, int | None], tuple[CompiledRule, ...]] = {}

    def candidates(self, provider: str, event: str, level: int | None) -> tuple[CompiledRule, ...]:
        """The rules whose `match` lets this event through, in load order; their conditions decide the rest.

        A rule's level is a ceiling: it takes events at that level or more severe (a lower number). An event with
        no level (a plain tracepoint) passes every ceiling: there is nothing to say it is too verbose.
        """
        key = (provider, event, level)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = [*self._both.get((provider, event), ()), *self._provider.get(provider, ()),
                 *self._event.get(event, ()), *self._any]
        if level is not None:
            found = [r for r in found if r.match.level is None or level <= r.match.level]
        found.sort(key=lambda r: self._order[id(r)])
        result = tuple(found)
        if len(self._memo) >= _MAX_MEMO:
            self._memo.clear()
        self._memo[key] = result
        return result

    def wants(self, provider: str, event: str, level: int | None) -> bool:
        """Whether any rule could match such an event: a source can skip decoding the payload when not."""
        return bool(self.candidates(provider, event, level))

    def __len__(self) -> int:
        return len(self.rules)
