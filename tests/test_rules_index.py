"""The rule index: which rules an event's provider, name and level let through, and at what cost."""

from __future__ import annotations

from dyntel.rules.index import RuleIndex
from dyntel.rules.model import CompiledRule, Match


def rule(name: str, provider: str | None = None, event: str | None = None, level: int | None = None) -> CompiledRule:
    return CompiledRule(name, Match(provider, event, level), lambda e: True, "True")


def names(rules: tuple[CompiledRule, ...]) -> list[str]:
    return [r.name for r in rules]


def test_buckets_union_in_load_order() -> None:
    index = RuleIndex([rule("any"), rule("svc", "MyService"), rule("done", "MyService", "RequestDone"),
                       rule("beat-anywhere", event="Heartbeat"), rule("other", "Other", "RequestDone")])
    assert names(index.candidates("MyService", "RequestDone", None)) == ["any", "svc", "done"]
    assert names(index.candidates("MyService", "Heartbeat", None)) == ["any", "svc", "beat-anywhere"]
    assert names(index.candidates("Other", "Heartbeat", None)) == ["any", "beat-anywhere"]
    assert names(index.candidates("Nobody", "Nothing", 5)) == ["any"]
    assert len(index) == 5


def test_level_is_a_ceiling_and_an_unknown_level_passes() -> None:
    index = RuleIndex([rule("errors", "P", level=2), rule("all", "P")])
    assert names(index.candidates("P", "E", 1)) == ["errors", "all"]
    assert names(index.candidates("P", "E", 2)) == ["errors", "all"]
    assert names(index.candidates("P", "E", 4)) == ["all"]
    assert names(index.candidates("P", "E", None)) == ["errors", "all"]


def test_wants_lets_a_source_skip_events_no_rule_can_match() -> None:
    index = RuleIndex([rule("done", "MyService", "RequestDone", level=4)])
    assert index.wants("MyService", "RequestDone", 4)
    assert not index.wants("MyService", "RequestDone", 5)
    assert not index.wants("MyService", "Heartbeat", 4)
    assert not RuleIndex([]).wants("P", "E", None)
    assert RuleIndex([rule("any")]).wants("P", "E", None)


def test_answers_are_remembered_per_key() -> None:
    index = RuleIndex([rule("svc", "P")])
    first = index.candidates("P", "E", 3)
    assert index.candidates("P", "E", 3) is first
    assert index.candidates("P", "E", 4) == first


def test_cost_follows_the_rules_an_event_can_match() -> None:
    rules = [rule(f"r{i}", f"Provider{i}", "E") for i in range(10_000)]
    index = RuleIndex(rules)
    assert names(index.candidates("Provider7", "E", None)) == ["r7"]
    assert index.candidates("Nobody", "E", None) == ()
