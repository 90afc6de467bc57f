"""The condition language: Python's expression syntax, a small whitelist of it, compiled once to a Python function.

A condition is parsed with `ast`, every node is checked against what the language allows, macros are expanded and
named lists become frozensets; then Python source is generated from the checked tree and compiled, so that an
event costs one call of an ordinary function (no tree walking, no `eval` of rule text at event time). The
generated code runs with empty builtins and can reach only the helpers in `runtime.HELPERS`.

Semantics, for the docs and the tests:
- A comparison that reads a missing value (a field the event does not have, a process that has gone) is False;
  `not` of it is True. `exists(x)` asks directly.
- Values of kinds that do not order (text < number) make `<`, `<=`, `>`, `>=` False; `==` is False and `!=` True
  for them, as in Python. Never an exception.
- `x in y`: y a list literal or a named list is membership; y text is substring; y read from the event is
  membership in a list or substring of text.

This module is the compiler's face (`Compiler`, `compile_condition`). The language's tables, names and parsing are in
dyntel.rules.language, the code generation in dyntel.rules.codegen, and what a compiled condition requires of an
event (for the index and the pre-filters) in dyntel.rules.requirements.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dyntel.rules.codegen import Compiled, Generator, LazyPart
from dyntel.rules.errors import RuleError, RuleErrors
from dyntel.rules.language import (
    EVENT_NAMES,
    FUNCTIONS,
    PROCESS_NAMES,
    RESERVED,
    FunctionSpec,
    Macro,
    NamedList,
    Names,
    Parsed,
    boolish,
    did_you_mean,
    parse,
)
from dyntel.rules.model import Position, Predicate
from dyntel.rules.requirements import Requirements, derive
from dyntel.rules.yaml_read import TextMap

# Names importable from here since before the language, code generation and requirements had modules of their own.
__all__ = ["EVENT_NAMES", "FUNCTIONS", "PROCESS_NAMES", "RESERVED", "Compiled", "CompiledCondition", "Compiler",
           "FunctionSpec", "Macro", "NamedList", "Names", "Parsed", "boolish", "compile_condition", "did_you_mean",
           "parse"]


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    predicate: Predicate
    digest: str
    source: str
    parts: tuple[tuple[str, Predicate], ...]  # the top-level `and` conjuncts, text and predicate
    # What an event must have for the condition to hold (dyntel.rules.requirements): alternatives, None for
    # nothing known, () for no event.
    requires: Requirements = None


class Compiler:
    """Compiles conditions and value expressions against one set of lists and macros."""

    def __init__(self, names: Names | None = None) -> None:
        self.names = names or Names()
        for macro in self.names.macros.values():
            if macro.parsed is None:
                macro.parsed, _ = parse(macro.text, macro.where)

    def check_macro(self, macro: Macro) -> list[RuleError]:
        """Everything wrong with a macro on its own, reported at the macro (whether or not a rule uses it)."""
        parsed, errors = parse(macro.text, macro.where)
        if parsed is None:
            return errors
        gen = Generator(self.names)
        gen._macro_stack.append(macro.name)
        if boolish(parsed.tree) or (isinstance(parsed.tree, ast.Name) and parsed.tree.id in self.names.macros):
            gen.boolean(parsed.tree, parsed)
        else:
            v = gen.value(parsed.tree, parsed)
            if v.is_list:
                gen.fail(parsed, parsed.tree, "a macro is a condition or a value; for a list of values use lists:")
        return gen.errors

    def condition(self, text: str, where: TextMap) -> tuple[CompiledCondition | None, list[RuleError]]:
        parsed, errors = parse(text, where)
        if parsed is None:
            return None, errors
        gen = Generator(self.names)
        code = gen.boolean(parsed.tree, parsed)
        if gen.errors:
            return None, gen.errors
        whole = gen.build(code)
        parts: list[tuple[str, Predicate]] = []
        tree = parsed.tree
        if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And):
            for conjunct in tree.values:
                part = Generator(self.names)
                parts.append((parsed.segment(conjunct), LazyPart(part, part.boolean(conjunct, parsed))))
        else:
            parts.append((parsed.segment(tree), whole.function))
        requires = derive(tree, parsed, self.names)
        return CompiledCondition(whole.function, whole.digest, whole.source, tuple(parts), requires), []

    def getter(self, text: str, where: TextMap, kind: str = "key") -> tuple[Compiled | None, list[RuleError]]:
        """A value read from the event: a group key (`kind="key"`: hashable, JSON-friendly) or a threshold's
        number (`kind="number"`: None for anything that is not a number)."""
        parsed, errors = parse(text, where)
        if parsed is None:
            return None, errors
        gen = Generator(self.names)
        tree = parsed.tree
        if boolish(tree):
            gen.fail(parsed, tree, f"expected a value read from the event (like pid, fields.path, process.name), "
                                   f"got the condition {text.strip()!r}")
            return None, gen.errors
        v = gen.value(tree, parsed)
        if v.is_list or v.is_const:
            gen.fail(parsed, tree, "expected a value read from the event (like pid, fields.path, process.name), "
                                   f"got the constant {text.strip()!r}")
        if gen.errors:
            return None, gen.errors
        return gen.build(v.code, wrap="_key" if kind == "key" else "_number"), []


def standalone_names(lists: Mapping[str, Iterable[Any]] | None = None,
                     macros: Mapping[str, str] | None = None) -> Names:
    """Named lists and macros given as plain values (not from a rule file), for tests and tools."""
    names = Names()
    for name, values in (lists or {}).items():
        names.lists[name] = NamedList(name, tuple(values), Position("<lists>", 1, 1))
    for name, body in (macros or {}).items():
        names.macros[name] = Macro(name, body, TextMap.standalone(body, f"<macro {name}>"),
                                   Position(f"<macro {name}>", 1, 1))
    return names


def compile_condition(text: str, lists: Mapping[str, Iterable[Any]] | None = None,
                      macros: Mapping[str, str] | None = None) -> Predicate:
    """One condition from text, for tests and tools; raises RuleErrors (positions inside the text)."""
    names = standalone_names(lists, macros)
    compiler = Compiler(names)
    errors = [e for m in names.macros.values() for e in compiler.check_macro(m)]
    compiled, more = compiler.condition(text, TextMap.standalone(text))
    if errors or more or compiled is None:
        raise RuleErrors(errors + more)
    return compiled.predicate

