"""The engine's per-(provider, event, level) plans (issue 18): a rule's candidate count is kept once per plan and
event, and still reads exactly in the stats, the rule status, across a reload and past the plans' bound."""

from __future__ import annotations

from test_engine_support import S, engine, ev, field_is, rule

import dyntel.engine.engine as engine_module
from dyntel.engine.status import rule_statuses
from dyntel.rules.model import RuleSet


def _candidates(e: engine_module.Engine) -> dict[str, int]:
    return {name: s.candidates for name, s in e.stats.rules.items()}


def test_candidates_read_exactly_through_stats_status_and_reload() -> None:
    a, b, other = rule("a", when=field_is("status", 500)), rule("b"), rule("other", event="Other")
    e = engine(a, b, other)
    for i in range(3):
        e.process(ev(i * S, status=200 + 300 * (i == 2)))
    e.process(ev(3 * S, name="Other"))
    assert _candidates(e) == {"a": 3, "b": 3, "other": 1}
    assert {s.name: s.candidates for s in rule_statuses(e)} == {"a": 3, "b": 3, "other": 1}
    assert e.stats.rules["a"].matched == 1 and e.stats.rules["b"].matched == 3
    e.replace_rules(RuleSet([a, b]))
    e.process(ev(4 * S, status=200))
    assert _candidates(e) == {"a": 4, "b": 4, "other": 1}
    assert e.stats.candidates == 4 * 2 + 1


def test_candidates_survive_the_plans_bound(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(engine_module, "_MAX_PLANS", 2)
    e = engine(rule("any", provider=None, event=None))
    for i in range(7):
        e.process(ev(i * S, name=f"E{i % 3}"))
    assert _candidates(e) == {"any": 7}


def test_an_explained_rule_counts_its_candidates_too() -> None:
    e = engine(rule("a"), rule("b"), explain="a")
    for i in range(2):
        e.process(ev(i * S))
    assert _candidates(e) == {"a": 2, "b": 2}
