"""What a rule requires of an event, derived from its `match` and its compiled condition.

The engine's index and the sources' pre-decode filters (dyntel.engine.prefilter) only ever skip work for events
a rule cannot take, so what they use must be a necessary condition of the rule: if a requirement said no where the
condition says yes, an event would be dropped in silence. The derivation therefore reads the condition exactly as
the code generator does (dyntel.rules.codegen: the same value reader, the same constant folding) and keeps only
what it can prove; anything else is "no requirement", which costs speed and never an event.

A requirement is a tuple of alternatives (`Requirement`: provider, event, a level range, field tests): an event
the rule can take meets at least one. By construction:
- `a and b`: every pair of an alternative of `a` with one of `b` (two providers that differ cannot both hold: that
  pair is gone). Beyond `MAX_ALTERNATIVES` pairs, the conjunct with more alternatives is left out (weaker, so still
  necessary).
- `a or b`: the alternatives of both; if either has no requirement, neither has the whole.
- `not a`: no requirement (what `a` requires says nothing of what its negation does).
- A comparison: `provider == "X"`, `event in ["A", "B"]` name the index's keys; `level <= 2`, `level in [1, 2]`
  bound the level (and, since a comparison with a missing level is false, require one); `fields.NAME OP INT` and
  `fields.NAME in [INT, ...]` (an integer on one side, one payload field read by name on the other; a chain such
  as `0 < fields.x < 9` gives one per pair) become field tests. A comparison of two constants is folded, as the
  compiled code folds it: false is "no event", true no requirement.
- `True` requires nothing; `False` and `x in []` no event can meet. Macros are read where they are used; named
  lists by their values. Function calls (`startswith`, `exists`, ...) require nothing.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Sequence

from dyntel.rules.codegen import Generator, Value
from dyntel.rules.language import CMP_OPS, FOLD, MIRROR, Names, Parsed
from dyntel.rules.model import CompiledRule, Match, Requirement
from dyntel.source_types import FieldTest

# A rule's requirement: alternatives, any one of which an event it takes meets. None: nothing is required (any
# event may do); (): no event can meet it.
Requirements = tuple[Requirement, ...] | None

MAX_ALTERNATIVES = 256  # bounds `a and b` products and long `or`s; beyond it a part is let go (see above)

_ANYTHING = Requirement()
_FIELD_OPS = ("==", "!=", "<", "<=", ">", ">=")


def derive(tree: ast.expr, src: Parsed, names: Names) -> Requirements:
    """The requirement of a condition that compiled without errors (`tree` as parsed from `src`)."""
    return _Deriver(names).boolean(tree, src)


def with_match(match: Match, requires: Requirements) -> tuple[Requirement, ...]:
    """`requires` with what `match` says added to each alternative; the alternatives `match` contradicts go."""
    base = Requirement(provider=match.provider, event=match.event, max_level=match.level)
    if requires is None:
        return (base,)
    if all(_implies(r, match) for r in requires):
        return requires  # the loader's: `match` is in already (the index and the filters ask for every rule)
    return _unique(m for r in requires if (m := both(base, r)) is not None)


def _implies(r: Requirement, match: Match) -> bool:
    return ((match.provider is None or r.provider == match.provider) and (match.event is None or r.event == match.event)
            and (match.level is None or (r.max_level is not None and r.max_level <= match.level)))


def alternatives(rule: CompiledRule) -> tuple[Requirement, ...]:
    """The rule's requirement with its `match`: what the index and the pre-filters use. A rule made by hand
    (`requires` None) has its `match` alone."""
    return with_match(rule.match, rule.requires)


def for_explain(rule: CompiledRule) -> CompiledRule:
    """The rule as `--explain` sees it: a candidate for every event its `match` takes (as the docs promise), so
    that each event the condition turns down is shown, whatever the condition requires."""
    return dataclasses.replace(rule, requires=None)


def explaining(rules: Iterable[CompiledRule], explain: str | None) -> list[CompiledRule]:
    """`rules` with the one named `explain` (if any) replaced by its `for_explain` form."""
    return [for_explain(r) if r.name == explain else r for r in rules]


def unrestricted(rule: CompiledRule) -> bool:
    """Whether the index must offer the rule every event: an alternative names no provider and no event and does
    not even need the event to have a level (a plain tracepoint has none)."""
    return any(r.provider is None and r.event is None and not r.has_level for r in alternatives(rule))


def field_tests(rule: CompiledRule, provider: str, event: str) -> tuple[tuple[FieldTest, ...], ...] | None:
    """The field tests an event of (provider, event) without a level must pass for the rule to take it, as
    alternatives (any one may hold); None when some way of taking it has no test (every event of the type may do);
    () when the rule takes no such event. Field tests are for typed (tracefs) payloads, and those events have no
    level (dyntel.sources.FieldFilter)."""
    out: list[tuple[FieldTest, ...]] = []
    for r in alternatives(rule):
        if r.admits(provider, event, None):
            if not r.tests:
                return None
            if r.tests not in out:
                out.append(r.tests)
    return tuple(out)


def both(a: Requirement, b: Requirement) -> Requirement | None:
    """What meeting `a` and `b` at once requires; None when no event can (two providers, or an empty level range)."""
    if a.provider is not None and b.provider is not None and a.provider != b.provider:
        return None
    if a.event is not None and b.event is not None and a.event != b.event:
        return None
    hi = a.max_level if b.max_level is None else b.max_level if a.max_level is None else min(a.max_level,
                                                                                             b.max_level)
    lo = a.min_level if b.min_level is None else b.min_level if a.min_level is None else max(a.min_level,
                                                                                             b.min_level)
    if hi is not None and lo is not None and lo > hi:
        return None
    tests = a.tests + tuple(t for t in b.tests if t not in a.tests)
    return Requirement(a.provider if a.provider is not None else b.provider,
                       a.event if a.event is not None else b.event, hi, lo, a.has_level or b.has_level, tests)


def all_of(parts: Sequence[Requirements]) -> Requirements:
    known = [p for p in parts if p is not None]
    if any(not p for p in known):
        return ()
    out: tuple[Requirement, ...] = (_ANYTHING,)
    for p in sorted(known, key=len):  # the fewest alternatives first: single keys always make it in
        if len(out) * len(p) > MAX_ALTERNATIVES:
            continue  # left out: what remains is still required
        out = _unique(m for a in out for b in p if (m := both(a, b)) is not None)
        if not out:
            return ()
    return _normal(out)


def any_of(parts: Sequence[Requirements]) -> Requirements:
    out: list[Requirement] = []
    for p in parts:
        if p is None:
            return None
        out.extend(p)
    alts = _unique(out)
    if len(alts) > MAX_ALTERNATIVES:
        return None
    return _normal(alts)


def _unique(alts: Iterable[Requirement]) -> tuple[Requirement, ...]:
    return tuple(dict.fromkeys(alts))


def _normal(alts: tuple[Requirement, ...]) -> Requirements:
    """An alternative that requires nothing makes the whole require nothing."""
    return None if _ANYTHING in alts else alts


class _Deriver:
    """Walks a checked condition as dyntel.rules.codegen.Generator.boolean does, reading values with a Generator
    of its own (its code is thrown away; only what each value is and reads matters here)."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.values = Generator(names)
        self.macros: list[str] = []

    def boolean(self, node: ast.expr, src: Parsed) -> Requirements:
        if isinstance(node, ast.BoolOp):
            parts = [self.boolean(v, src) for v in node.values]
            return all_of(parts) if isinstance(node.op, ast.And) else any_of(parts)
        if isinstance(node, ast.Compare):
            return self.compare(node, src)
        if isinstance(node, ast.Constant) and node.value is False:
            return ()
        if isinstance(node, ast.Name) and node.id in self.names.macros and node.id not in self.macros:
            parsed = self.names.macros[node.id].parsed
            if parsed is None:
                return None
            self.macros.append(node.id)
            try:
                return self.boolean(parsed.tree, parsed)
            finally:
                self.macros.pop()
        return None  # not, function calls, True: nothing required

    def compare(self, node: ast.Compare, src: Parsed) -> Requirements:
        ops = [CMP_OPS.get(type(op)) for op in node.ops]
        operands = [node.left, *node.comparators]
        values = [self.values.value(o, src) for o in operands]
        parts: list[Requirements] = []
        for i, op in enumerate(ops):
            if op is None:
                return None
            parts.append(self.pair(op, values[i], values[i + 1]))
        return all_of(parts)  # a chain holds when each of its pairs does

    def pair(self, op: str, left: Value, right: Value) -> Requirements:
        if left.is_list:
            return None
        if op in ("in", "not in"):
            return self.membership(op, left, right)
        if right.is_list:
            return None
        if left.is_const and not right.is_const:
            left, right, op = right, left, MIRROR[op]
        if left.is_const:
            return None if FOLD[op](left.const, right.const) else ()
        if not right.is_const or left.reads is None:
            return None
        kind, name = left.reads
        c = right.const
        if kind == "fields":
            if type(c) is int and op in _FIELD_OPS:
                return (Requirement(tests=((name, op, (c,)),)),)
            return None
        if name in ("provider", "event"):
            if op == "==" and type(c) is str:
                return (_named(name, c),)
            return None
        if name == "level":
            return (_level(op, c),)
        return None

    def membership(self, op: str, left: Value, right: Value) -> Requirements:
        if not right.is_list:
            return None  # a substring, or a list read from the event
        items: tuple[object, ...] = right.const
        if left.is_const:
            hashable = frozenset(x for x in items if x.__hash__ is not None)
            return None if FOLD[op](left.const, hashable) else ()
        if op == "in" and not items:
            return ()  # nothing is in an empty list
        if left.reads is None or not items:
            return None
        kind, name = left.reads
        if kind == "fields":
            if all(type(x) is int for x in items):
                return (Requirement(tests=((name, op, tuple(x for x in items if type(x) is int)),)),)
            return None
        if name in ("provider", "event"):
            if op == "in" and all(type(x) is str for x in items):
                return _unique(_named(name, str(x)) for x in items)
            return None
        if name == "level":
            ints = [x for x in items if type(x) is int]
            if op == "in" and len(ints) == len(items):
                return (Requirement(min_level=min(ints), max_level=max(ints), has_level=True),)
            return (Requirement(has_level=True),)  # missing, a level is in no list (and `not in` is false)
        return None


def _named(name: str, value: str) -> Requirement:
    return Requirement(provider=value) if name == "provider" else Requirement(event=value)


def _level(op: str, c: object) -> Requirement:
    """`level OP c`: false whenever the event has no level (the compiled comparison of a missing value), and for
    an integer `c` bounded as the comparison says (levels are integers)."""
    if type(c) is not int:
        return Requirement(has_level=True)
    if op == "==":
        return Requirement(min_level=c, max_level=c, has_level=True)
    if op in ("<", "<="):
        return Requirement(max_level=c - 1 if op == "<" else c, has_level=True)
    if op in (">", ">="):
        return Requirement(min_level=c + 1 if op == ">" else c, has_level=True)
    return Requirement(has_level=True)  # !=
