"""What the compiler derives from a condition as the rule's requirements (dyntel.rules.requirements): the index keys
and field tests, exact where they are given, nothing where they cannot be proved; and, checked against the
compiled predicate itself, never a requirement that an event the condition takes would fail."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rule_helpers import compile_text, compiled_rule

from dyntel.engine.engine import Engine
from dyntel.event import Event
from dyntel.rules.index import RuleIndex
from dyntel.rules.loader import load
from dyntel.rules.model import Match, Requirement, RuleSet
from dyntel.rules.requirements import MAX_ALTERNATIVES, Requirements, alternatives

LISTS: dict[str, list[Any]] = {"ids": [3, -4], "names": ["A", "B"], "mixed": [1, "a"], "levels": [1, 2],
                               "none": []}
MACROS = {"is_a": 'provider == "A"', "bad_level": "level >= 1 and level <= 2", "who": "provider",
          "id_three": "fields.id == 3"}


def derive(text: str) -> Requirements:
    return compile_text(text, LISTS, MACROS).requires


def _tests(*tests: tuple[str, str, tuple[int, ...]]) -> tuple[Requirement, ...]:
    return (Requirement(tests=tests),)


@pytest.mark.parametrize(("text", "expected"), [
    # field tests: by attribute and subscript, either side, negative integers, in-lists, chains
    ("fields.id == 59", _tests(("id", "==", (59,)))),
    ('fields["id"] != 0', _tests(("id", "!=", (0,)))),
    ('fields["a.b"] > 1', _tests(("a.b", ">", (1,)))),
    ("500 <= fields.status", _tests(("status", ">=", (500,)))),
    ("fields.ret < -1", _tests(("ret", "<", (-1,)))),
    ("-2 == fields.ret", _tests(("ret", "==", (-2,)))),
    ("fields.nr in [1, 2, 3]", _tests(("nr", "in", (1, 2, 3)))),
    ("fields.nr not in (4,)", _tests(("nr", "not in", (4,)))),
    ("fields.nr in ids", _tests(("nr", "in", (3, -4)))),
    ("0 < fields.id < 5", _tests(("id", ">", (0,)), ("id", "<", (5,)))),
    ("fields.id == 1 and pid > 3 and fields.x != 2", _tests(("id", "==", (1,)), ("x", "!=", (2,)))),
    ("id_three", _tests(("id", "==", (3,)))),
    # or: alternatives
    ("fields.id == 1 or fields.id == 2", (Requirement(tests=(("id", "==", (1,)),)),
                                          Requirement(tests=(("id", "==", (2,)),)))),
    ("fields.id == 1 or fields.id == 1", _tests(("id", "==", (1,)))),
    # index keys from the condition
    ('provider == "sched" and event == "sched_switch" and fields.prev_prio < 10',
     (Requirement("sched", "sched_switch", tests=(("prev_prio", "<", (10,)),)),)),
    ('"sched" == provider', (Requirement("sched"),)),
    ('who == "sched"', (Requirement("sched"),)),
    ("is_a", (Requirement("A"),)),
    ('event in ["X", "Y"]', (Requirement(event="X"), Requirement(event="Y"))),
    ("provider in names", (Requirement("A"), Requirement("B"))),
    ('provider == "P" and (event == "E1" or event == "E2")', (Requirement("P", "E1"), Requirement("P", "E2"))),
    ('(provider == "P" and fields.id == 1) or provider == "Q"',
     (Requirement("P", tests=(("id", "==", (1,)),)), Requirement("Q"))),
    ('is_a and (provider == "A" or provider == "B")', (Requirement("A"),)),
    # levels: a comparison with a missing level is false, so each requires one
    ("level <= 2", (Requirement(max_level=2, has_level=True),)),
    ("level < 3", (Requirement(max_level=2, has_level=True),)),
    ("2 >= level", (Requirement(max_level=2, has_level=True),)),
    ("level > 1", (Requirement(min_level=2, has_level=True),)),
    ("level == 4", (Requirement(min_level=4, max_level=4, has_level=True),)),
    ("bad_level", (Requirement(min_level=1, max_level=2, has_level=True),)),
    ("level in levels", (Requirement(min_level=1, max_level=2, has_level=True),)),
    ("level != 3", (Requirement(has_level=True),)),
    ("level not in [1]", (Requirement(has_level=True),)),
    ("level <= 2.5", (Requirement(has_level=True),)),
    # no event can meet these
    ("False", ()),
    ("1 == 2", ()),
    ("fields.id in []", ()),
    ("fields.id in none", ()),
    ('provider == "A" and provider == "B"', ()),
    ('event == "A" and event in ["B", "C"]', ()),
    ("level > 3 and level < 2", ()),
    ("False or fields.id in []", ()),
    # nothing can be said
    ("True", None), ("1 == 1", None), ("not fields.id == 5", None), ('not provider == "X"', None),
    ('provider != "X"', None), ('provider not in ["X"]', None), ("fields.id == 1.5", None),
    ("fields.id == True", None), ("fields.path == '/x'", None), ("pid == 4", None), ("fields.a == fields.b", None),
    ("fields.x.y == 1", None), ("fields.x[0] == 1", None), ("len(fields.path) > 3", None),
    ('startswith(provider, "My")', None), ("exists(fields.id)", None), ("fields.id in mixed", None),
    ('provider in ["A", 1]', None), ("fields.id == 1 or pid == 2", None), ("fields.id in [1, True]", None),
    ('provider in "ABC"', None), ("lower(provider) == 'a'", None), ('process.name == "x"', None),
    ("fields.id not in []", None),
])
def test_derivation(text: str, expected: Requirements) -> None:
    assert derive(text) == expected


def test_match_and_condition_together() -> None:
    rule = compiled_rule('event in ["A", "B"] and level <= 3', match=Match("P", "A", 2))
    assert alternatives(rule) == (Requirement("P", "A", max_level=2, has_level=True),)
    rule = compiled_rule('provider == "Q"', match=Match("P"))
    assert alternatives(rule) == ()  # the match and the condition disagree: no event can meet both


def test_products_are_bounded() -> None:
    # (a1 or a2) and (b1 or b2) and ...: 2**12 combinations; the derivation keeps what fits, which still holds.
    text = " and ".join(f"(fields.f{i} == 1 or fields.f{i} == 2)" for i in range(12))
    found = derive(text)
    assert found is not None and 1 < len(found) <= MAX_ALTERNATIVES
    assert derive(" or ".join(f"fields.id == {i}" for i in range(MAX_ALTERNATIVES + 1))) is None


# -- soundness: a requirement never refuses an event the compiled condition takes -------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _test_holds(fields: dict[str, Any], name: str, op: str, values: tuple[int, ...]) -> bool:
    """A field test as a native pre-filter runs it: only on a field that is an integer in the payload (anything
    else is not a field the scan reads, and it lets the event through)."""
    v = fields.get(name)
    if type(v) is not int:
        return True
    if op == "in":
        return v in values
    if op == "not in":
        return v not in values
    return _OPS[op](v, values[0])


def _meets(requires: tuple[Requirement, ...], e: Event) -> bool:
    return any(r.admits(e.provider, e.name, e.level) and all(_test_holds(e.fields, *t) for t in r.tests)
               for r in requires)


SOUNDNESS = [
    *[c for c in (
        "fields.id == 3", "fields.id != 3", "fields.id < 0", "0 <= fields.id <= 3", "fields.id in ids",
        "fields.id not in ids", "fields.id == 3 or fields.x > 1", "not fields.id == 3", 'provider == "A"',
        'provider in names and fields.id >= 1', 'event == "e1" or (event == "e2" and fields.id == -4)',
        "level <= 2", "level < 2 or level > 4", "level != 3", "bad_level", "level in levels",
        "level not in levels", "is_a and not fields.x == 1",
        '(is_a or event == "e2") and (fields.id > 1 or level == 1)',
        "fields.id == 3 and fields.id == 4", "True", "False", 'exists(fields.id) and provider != "B"',
        "fields.x in [1, 2] and -4 < fields.id", "1 < 2 and fields.id > -5",
    )],
]


def _events() -> list[Event]:
    out = []
    values: list[Any] = [None, -4, 0, 1, 2, 3, 4, "3", 1.5, True, [3]]
    for provider, name, level, v, x in itertools.product(("A", "B", "sched"), ("e1", "e2"), (None, 0, 1, 2, 3, 5),
                                                          values, (None, 1, 2)):
        fields: dict[str, Any] = {}
        if v is not None:
            fields["id"] = v
        if x is not None:
            fields["x"] = x
        out.append(Event(provider, name, level=level, _fields=fields))
    return out


@pytest.mark.parametrize("text", SOUNDNESS)
def test_what_the_condition_takes_meets_the_requirement(text: str) -> None:
    rule = compiled_rule(text, lists=LISTS, macros=MACROS)
    requires = alternatives(rule)
    taken = [e for e in _events() if rule.predicate(e)]
    assert all(_meets(requires, e) for e in taken), text
    # ... and the index offers the rule every one of them.
    index = RuleIndex([rule])
    assert all(index.candidates(e.provider, e.name, e.level) for e in taken)


# -- the index, the engine and explain ---------------------------------------------------------------------------

def test_the_index_uses_what_the_condition_requires() -> None:
    by_event = compiled_rule('event in ["A", "B"]', "by-event")
    severe = compiled_rule("level >= 1 and level <= 2", "severe", Match(level=2))
    anything = compiled_rule("fields.id == 1", "anything")
    index = RuleIndex([by_event, severe, anything])
    assert index.candidates("P", "A", None) == (by_event, anything)
    assert index.candidates("P", "B", 2) == (by_event, severe, anything)
    assert index.candidates("P", "C", None) == (anything,)  # a plain tracepoint has no level
    assert index.candidates("P", "C", 0) == (anything,)
    assert index.candidates("P", "C", 1) == (severe, anything)


def test_explain_sees_every_event_the_match_takes() -> None:
    rule = compiled_rule('provider == "A" and fields.id == 1', "r")
    events = [Event("A", "e", time=1, _fields={"id": 1}), Event("B", "e", time=2, _fields={"id": 1})]
    plain = Engine(RuleSet([rule]), None)
    assert [len(plain.process(e)) for e in events] == [1, 0]
    assert plain.stats.candidates == 1
    explained = Engine(RuleSet([rule]), None, explain="r")
    for e in events:
        explained.process(e)
    assert [r.outcome for r in explained.take_explanations()] == ["fired", "condition"]


# -- the warning at load -----------------------------------------------------------------------------------------

def test_a_rule_evaluated_for_every_event_is_warned_of_with_its_position(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("""version: 1
rules:
  - name: by-match
    match: {provider: P}
    actions: [{log: x}]
  - name: by-condition
    condition: provider == "P" and fields.id == 1
    actions: [{log: x}]
  - name: by-level
    condition: level <= 2
    actions: [{log: x}]
  - name: everything
    condition: fields.id == 1
    actions: [{log: x}]
  - name: half
    condition: provider == "P" or fields.id == 1
    actions: [{log: x}]
  - name: level-match-only
    match: {level: 2}
    actions: [{log: x}]
  - name: never
    match: {provider: P}
    condition: provider == "Q"
    actions: [{log: x}]
  - name: disabled-one
    enabled: false
    condition: fields.id == 1
    actions: [{log: x}]
""")
    result = load([str(f)])
    assert not result.errors
    lines = [str(w) for w in result.warnings]
    assert lines == [
        f"{f}:12:5: warning: rule 'everything' has no match and a condition that requires no provider or event "
        "name: it is evaluated for every event; add match: {provider: ..., event: ...} if it is meant for some "
        "events only",
        f"{f}:15:5: warning: rule 'half' has no match and a condition that requires no provider or event name: it "
        "is evaluated for every event; add match: {provider: ..., event: ...} if it is meant for some events only",
        f"{f}:18:5: warning: rule 'level-match-only' has a match with only a level and no condition: it is "
        "evaluated for every event at level 2 or more severe and every event without a level; add match: "
        "{provider: ..., event: ...} if it is meant for some events only",
        f"{f}:21:5: warning: rule 'never' can never fire: no event can meet both its match and its condition (two "
        "providers, two event names, levels that exclude each other, or a condition that is always false)",
    ]
    assert result.warnings[0].to_json() == {"file": str(f), "line": 12, "column": 5, "message": lines[0].split(
        "warning: ", 1)[1], "severity": "warning"}


def test_the_bundled_packs_load_without_warnings() -> None:
    from support import ROOT

    result = load([str(ROOT / "rules"), str(ROOT / "dyntel" / "demo" / "rules.yaml")])
    assert not result.warnings, [str(w) for w in result.warnings]


def test_replay_holds_no_condition_parsing() -> None:
    from support import ROOT

    for name in ("replay.py", "live.py"):
        text = (ROOT / "dyntel" / name).read_text()
        assert "ast.parse" not in text and "import ast" not in text
    assert "dyntel.replay" not in (ROOT / "dyntel" / "live.py").read_text()
