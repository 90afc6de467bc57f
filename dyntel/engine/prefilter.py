"""The sources' pre-decode filters for a rule set, from the rules' stored requirements (dyntel.rules.requirements),
shared by replay and the live sidecar.

- `want` (by provider, event name and level) is the engine's own index: a source drops what it says no to, so it
  can never drop an event the engine would have given a rule.
- the field filter gives, per tracepoint type, the field tests (`fields.id == 59`, `fields.nr in [1, 2]`) a source's
  native scan can run on raw payloads: alternatives, one per way some rule can take an event of the type; None
  when some rule may take any event of it.

With `explain`, the named rule is taken as `--explain` shows it (every event its `match` takes reaches the engine,
untested), as the engine does.
"""

from __future__ import annotations

from collections.abc import Sequence

from dyntel.engine.engine import CandidateIndex, default_index
from dyntel.rules.model import CompiledRule
from dyntel.rules.requirements import explaining, field_tests
from dyntel.source_types import FieldFilter, FieldTest, Want

_MAX_MEMO = 4096  # event types whose field tests are remembered (a source asks once per type it opens)


def make_want(rules: Sequence[CompiledRule], explain: str | None = None) -> Want:
    """Whether any rule can take events of (provider, event, level)."""
    return _want(default_index(explaining(rules, explain)))


def _want(index: CandidateIndex) -> Want:
    wants = getattr(index, "wants", None)
    if callable(wants):
        want: Want = wants
        return want
    candidates = index.candidates
    return lambda provider, event, level: bool(candidates(provider, event, level))


def make_field_filter(rules: Sequence[CompiledRule], explain: str | None = None) -> FieldFilter:
    """The field tests for events of (provider, event) as alternatives (see the module docstring)."""
    return _field_filter(default_index(explaining(rules, explain)))


def _field_filter(index: CandidateIndex) -> FieldFilter:
    # The rules a tracefs event (which has no level) can reach are the index's candidates at no level: only theirs
    # are asked for tests, so a type costs what its own rules cost, not what the whole set does.
    candidates = index.candidates
    memo: dict[tuple[str, str], tuple[tuple[FieldTest, ...], ...] | None] = {}

    def field_filter(provider: str, event: str) -> Sequence[Sequence[FieldTest]] | None:
        key = (provider, event)
        try:
            return memo[key]
        except KeyError:
            pass
        out: list[tuple[FieldTest, ...]] = []
        result: tuple[tuple[FieldTest, ...], ...] | None
        for rule in candidates(provider, event, None):
            tests = field_tests(rule, provider, event)
            if tests is None:
                result = None  # this rule may take any event of the type
                break
            out += [t for t in tests if t not in out]
        else:
            result = tuple(out) or None  # no rule takes the type: `want` drops it
        if len(memo) >= _MAX_MEMO:
            memo.clear()
        memo[key] = result
        return result

    return field_filter


def make_filters(rules: Sequence[CompiledRule], explain: str | None = None) -> tuple[Want, FieldFilter]:
    """Both filters for a source: `want` and the field filter (one index for both)."""
    index = default_index(explaining(rules, explain))
    return _want(index), _field_filter(index)
