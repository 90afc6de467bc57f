"""Compiled rules from condition text, as the loader makes them (requirements derived), for tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dyntel.rules.condition import CompiledCondition, Compiler, standalone_names
from dyntel.rules.errors import RuleErrors
from dyntel.rules.model import CompiledRule, Match
from dyntel.rules.requirements import with_match
from dyntel.rules.yaml_read import TextMap


def compile_text(text: str, lists: Mapping[str, Iterable[Any]] | None = None,
                 macros: Mapping[str, str] | None = None) -> CompiledCondition:
    compiler = Compiler(standalone_names(lists, macros))
    compiled, errors = compiler.condition(text, TextMap.standalone(text))
    if errors or compiled is None:
        raise RuleErrors(errors)
    return compiled


def compiled_rule(condition: str, name: str = "r", match: Match | None = None,
                  lists: Mapping[str, Iterable[Any]] | None = None,
                  macros: Mapping[str, str] | None = None) -> CompiledRule:
    match = match or Match()
    c = compile_text(condition, lists, macros)
    return CompiledRule(name, match, c.predicate, condition, explain_parts=c.parts,
                        requires=with_match(match, c.requires))
