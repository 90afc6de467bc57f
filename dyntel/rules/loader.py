"""Rule files to a RuleSet: read (YAML with positions) -> collect (files, shared lists and macros, unique names)
-> compile (conditions and keys to code). Every error of every file is collected before anything is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dyntel.rules.condition import Compiler, Macro, NamedList, Names
from dyntel.rules.errors import RuleError, RuleErrors, RuleWarning, unique_sorted
from dyntel.rules.model import (
    AbsenceWindow,
    CompiledRule,
    CountWindow,
    GroupKeys,
    Limit,
    Match,
    Position,
    RuleSet,
    SequenceWindow,
    ThresholdWindow,
    Window,
)
from dyntel.rules.requirements import unrestricted, with_match
from dyntel.rules.schema import FileParts, RuleDef, file_parts
from dyntel.rules.yaml_read import YamlPath, read_yaml

RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(slots=True)
class LoadResult:
    ruleset: RuleSet
    errors: list[RuleError]
    disabled: list[str] = field(default_factory=list)  # names of rules with `enabled: false` (checked, not loaded)

    @property
    def warnings(self) -> list[RuleWarning]:
        """What the loaded rules' authors should know (rules that are evaluated for every event, ...)."""
        return self.ruleset.warnings


def load_rules(paths: Sequence[str]) -> RuleSet:
    """The rules of every file (a directory stands for its *.yaml and *.yml files); RuleErrors if any is wrong."""
    result = load(paths)
    if result.errors:
        raise RuleErrors(result.errors)
    return result.ruleset


def check_rules(paths: Sequence[str]) -> list[RuleError]:
    """Everything wrong with the rule files, in file, line and column order; empty when they load."""
    return load(paths).errors


def rule_files(paths: Sequence[str]) -> tuple[list[str], list[RuleError]]:
    files: list[str] = []
    errors: list[RuleError] = []
    seen: set[str] = set()
    for p in paths:
        if os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).iterdir() if f.suffix in RULE_SUFFIXES and f.is_file())
            if not found:
                errors.append(RuleError(Position(p, 1, 1), "no rule files (*.yaml, *.yml) in this directory"))
        else:
            found = [p]
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:  # the same file twice would make every rule in it a duplicate
                seen.add(key)
                files.append(f)
    return files, errors


def load(paths: Sequence[str]) -> LoadResult:
    files, errors = rule_files(paths)
    parts: list[FileParts] = []
    for f in files:
        try:
            with open(f, encoding="utf-8-sig") as fh:
                text = fh.read()
        except UnicodeDecodeError as e:
            errors.append(RuleError(Position(f, 1, 1), f"not UTF-8 text: {e.reason} at byte {e.start}"))
            continue
        except OSError as e:
            errors.append(RuleError(Position(f, 1, 1), f"cannot read: {e.strerror or e}"))
            continue
        doc, errs = read_yaml(f, text)
        errors += errs
        if doc is not None:
            p, errs = file_parts(doc)
            errors += errs
            parts.append(p)
    names = _collect_names(parts, errors)
    compiler = Compiler(names)
    for macro in names.macros.values():
        errors += compiler.check_macro(macro)
    ruleset = RuleSet(files=tuple(files))
    disabled: list[str] = []
    first_seen: dict[str, Position] = {}
    for p in parts:
        for rule_def in p.rules:
            name = rule_def.model.name
            where = rule_def.doc.at((*rule_def.path, "name"))
            if name in first_seen and name != "?":
                first = first_seen[name]
                errors.append(RuleError(where, f"duplicate rule name '{name}'; first defined at {first}"))
            first_seen.setdefault(name, where)
            rule, errs = _compile_rule(rule_def, compiler)
            errors += errs
            if rule is None or errs or not rule_def.valid:
                continue
            if rule_def.model.enabled:
                ruleset.rules.append(rule)
                ruleset.warnings += _warnings(rule, rule_def)
            else:
                disabled.append(name)
    errors = unique_sorted(errors, files)
    if errors:
        ruleset.rules.clear()
        ruleset.warnings.clear()
    return LoadResult(ruleset, errors, disabled)


def _collect_names(parts: list[FileParts], errors: list[RuleError]) -> Names:
    names = Names()
    defined: dict[str, tuple[str, Position]] = {}

    def claim(name: str, kind: str, position: Position) -> bool:
        """Lists and macros share one namespace across all files: the first definition of a name wins."""
        if name in defined:
            other, first = defined[name]
            errors.append(RuleError(position, f"'{name}' is already defined as a {other} at {first}; "
                                              "lists and macros are shared by all loaded files"))
            return False
        defined[name] = (kind, position)
        return True

    for p in parts:
        for lst in p.lists:
            if claim(lst.name, "list", lst.position):
                names.lists[lst.name] = NamedList(lst.name, lst.values, lst.position)
        for m in p.macros:
            if claim(m.name, "macro", m.position):
                names.macros[m.name] = Macro(m.name, m.text, p.doc.text_map(m.path), m.position)
    return names


def _compile_rule(d: RuleDef, compiler: Compiler) -> tuple[CompiledRule | None, list[RuleError]]:
    m = d.model
    doc, path = d.doc, d.path
    errors: list[RuleError] = []
    text = m.condition if m.condition is not None else "True"
    where = doc.text_map((*path, "condition"))
    compiled, errs = compiler.condition(text, where)
    errors += errs

    def keys(names: list[str], at: YamlPath) -> GroupKeys:
        getters = []
        for i, key in enumerate(names):
            g, errs = compiler.getter(key, doc.text_map((*at, i)), kind="key")
            errors.extend(errs)
            if g is not None:
                getters.append(g)
                digests.append(g.digest)
        return GroupKeys(tuple(names), tuple(g.function for g in getters))

    digests: list[str] = []
    # Every kind written is compiled, so that all their errors show; more than one is an error of its own.
    windows: list[Window] = []
    if m.window is not None:
        w = m.window
        windows.append(CountWindow(w.count, w.within, keys(w.group_by, (*path, "window", "group_by"))))
    if m.threshold is not None:
        t = m.threshold
        value, errs = compiler.getter(t.value, doc.text_map((*path, "threshold", "value")), kind="number")
        errors += errs
        group = keys(t.group_by, (*path, "threshold", "group_by"))
        if value is not None:
            digests.append(value.digest)
            windows.append(ThresholdWindow(value.function, t.value, t.agg, t.op, t.limit, t.within, group))
    if m.absence is not None:
        windows.append(AbsenceWindow(m.absence.within, keys(m.absence.group_by, (*path, "absence", "group_by"))))
    if m.sequence is not None:
        s = m.sequence
        steps = []
        for i, step in enumerate(s.steps):
            c, errs = compiler.condition(step, doc.text_map((*path, "sequence", "steps", i)))
            errors += errs
            if c is not None:
                steps.append(c.predicate)
                digests.append(c.digest)
        by = keys(s.by, (*path, "sequence", "by"))
        windows.append(SequenceWindow(tuple(steps), tuple(s.steps), s.within, by))
    window = windows[0] if windows else None
    if compiled is None or errors:
        return None, errors
    match = Match(m.match.provider, m.match.event, m.match.level)
    limit = Limit(m.limit.actions, m.limit.per) if m.limit is not None else None
    rule = CompiledRule(
        name=m.name, match=match, predicate=compiled.predicate, condition_text=text.strip(), window=window,
        cooldown_ns=m.cooldown or 0, limit=limit, actions=d.actions, description=m.description,
        tags=tuple(m.tags), position=doc.at(path), explain_parts=compiled.parts,
        requires=with_match(match, compiled.requires),
    )
    rule.fingerprint = _fingerprint(d, compiled.digest, digests)
    return rule, []


def _warnings(rule: CompiledRule, d: RuleDef) -> list[RuleWarning]:
    """A rule the index has to offer every event (it names no provider or event, in `match` or in its condition)
    costs a condition call per event, whatever the source: said at load, so that it is a choice, not an accident.
    A rule no event can meet is most likely a mistake: said too."""
    where = rule.position or d.doc.at(d.path)
    if rule.requires == ():
        return [RuleWarning(where, f"rule '{rule.name}' can never fire: no event can meet both its match and its "
                                   "condition (two providers, two event names, levels that exclude each other, or a "
                                   "condition that is always false)")]
    if not unrestricted(rule):
        return []
    level = rule.match.level
    has = "no match" if level is None else "a match with only a level"
    cond = "no condition" if d.model.condition is None else "a condition that requires no provider or event name"
    which = "every event" if level is None else f"every event at level {level} or more severe and every event " \
                                                "without a level"
    return [RuleWarning(where, f"rule '{rule.name}' has {has} and {cond}: it is evaluated for {which}; add "
                               "match: {provider: ..., event: ...} if it is meant for some events only")]


def _fingerprint(d: RuleDef, condition_digest: str, digests: list[str]) -> str:
    """What the rule does, not how it is written: compiled code (macros and lists expanded) and settings.
    Description and positions are left out, so that editing them keeps a rule's window state on reload."""
    m = d.model
    definition: dict[str, Any] = {
        "name": m.name,
        "match": m.match.model_dump(),
        "condition": condition_digest,
        "keys": digests,
        "window": {k: getattr(m, k).model_dump(by_alias=True) for k in ("window", "threshold", "absence", "sequence")
                   if getattr(m, k) is not None},
        "cooldown": m.cooldown,
        "limit": m.limit.model_dump() if m.limit else None,
        "actions": [[a.type, a.options] for a in d.actions],
        "tags": m.tags,
    }
    text = json.dumps(definition, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
