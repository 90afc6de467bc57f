"""The shape of a rule file (pydantic models) and its parts: lists, macros, rules and their actions.

Models validate strictly (no "5" for 5) and forbid unknown keys. Each rule is validated on its own, so that one
bad rule does not hide the errors of the others; dyntel.rules.schema_errors turns pydantic's errors into positioned
messages. What pydantic cannot say well is checked by hand: one window kind per rule here, the actions and their
placeholders in dyntel.rules.action_checks (each action type's options schema is its module's, found through
dyntel.actions.registry); conditions are checked by the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from dyntel.actions.spec import ActionSpec
from dyntel.options import AnyDict, AnyList, Duration, Keys, Level, OptionsModel, Texts
from dyntel.rules.action_checks import check_actions
from dyntel.rules.condition import RESERVED
from dyntel.rules.errors import RuleError
from dyntel.rules.model import Position
from dyntel.rules.schema_errors import describe, validate_model
from dyntel.rules.yaml_read import YamlDoc, YamlPath

AGGS = ("avg", "min", "max", "sum", "p50", "p90", "p99")
OPS = (">", ">=", "<", "<=", "==", "!=")
WINDOW_KINDS = ("window", "threshold", "absence", "sequence")


class FileModel(OptionsModel):
    what: ClassVar[str] = "the top level of a rule file"
    version: int = 1
    lists: AnyDict = Field(default_factory=dict)
    macros: AnyDict = Field(default_factory=dict)
    rules: AnyList = Field(default_factory=list)


class MatchModel(OptionsModel):
    what: ClassVar[str] = "match"
    provider: str | None = None
    event: str | None = None
    level: Level | None = None


class CountWindowModel(OptionsModel):
    what: ClassVar[str] = "window"
    count: int = Field(ge=1)
    within: Duration
    group_by: Keys = Field(default_factory=list)


class ThresholdModel(OptionsModel):
    what: ClassVar[str] = "threshold"
    value: str
    agg: Literal["avg", "min", "max", "sum", "p50", "p90", "p99"]
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    limit: float
    within: Duration
    group_by: Keys = Field(default_factory=list)


class AbsenceModel(OptionsModel):
    what: ClassVar[str] = "absence"
    within: Duration
    group_by: Keys = Field(default_factory=list)


class SequenceModel(OptionsModel):
    what: ClassVar[str] = "sequence"
    steps: list[str] = Field(min_length=2)
    within: Duration
    by: Keys = Field(default_factory=list)


class LimitModel(OptionsModel):
    what: ClassVar[str] = "limit"
    actions: int = Field(ge=1)
    per: Duration


class RuleModel(OptionsModel):
    what: ClassVar[str] = "a rule"
    name: str = Field(min_length=1)
    description: str = ""
    match: MatchModel = MatchModel()
    condition: str | None = None
    window: CountWindowModel | None = None
    threshold: ThresholdModel | None = None
    absence: AbsenceModel | None = None
    sequence: SequenceModel | None = None
    cooldown: Duration | None = None
    limit: LimitModel | None = None
    actions: AnyList = Field(default_factory=list)
    tags: Texts = Field(default_factory=list)
    enabled: bool = True


# --- a file's parts ---------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class ListDef:
    name: str
    values: tuple[Any, ...]
    position: Position


@dataclass(slots=True)
class MacroDef:
    name: str
    text: str
    position: Position
    path: YamlPath


@dataclass(slots=True)
class RuleDef:
    model: RuleModel
    path: YamlPath
    doc: YamlDoc
    actions: tuple[ActionSpec, ...]
    valid: bool  # false: it has errors and is only checked further, never loaded


@dataclass(slots=True)
class FileParts:
    doc: YamlDoc
    lists: list[ListDef] = field(default_factory=list)
    macros: list[MacroDef] = field(default_factory=list)
    rules: list[RuleDef] = field(default_factory=list)


def check_name(kind: str, name: str, where: Position) -> list[RuleError]:
    if not name.isidentifier():
        return [RuleError(where, f"bad {kind} name '{name}': expected letters, digits and _, not starting with a "
                                 "digit (it is used as a name in conditions)")]
    if name in RESERVED or name in ("True", "False", "None"):
        return [RuleError(where, f"bad {kind} name '{name}': that name already means something in conditions")]
    return []


def file_parts(doc: YamlDoc) -> tuple[FileParts, list[RuleError]]:
    parts = FileParts(doc)
    errors: list[RuleError] = []
    root = doc.value
    if root is None:
        return parts, errors  # an empty file: nothing to load, nothing wrong
    top, errs = validate_model(FileModel, root, doc, (), FileModel.what)
    errors += errs
    if top is None:
        return parts, errors
    if top.version != 1:
        errors.append(RuleError(doc.at(("version",)), f"version: this dyntel reads rule files of version 1, "
                                                      f"got {top.version}"))
    for name, values in top.lists.items():
        where = doc.key_at(("lists", name))
        errors += check_name("list", name, where)
        if not isinstance(values, list):
            errors.append(RuleError(doc.at(("lists", name)), f"lists.{name}: expected a list of values, like "
                                                             f"[\"/health\", \"/ready\"], got {describe(values)}"))
            continue
        for i, v in enumerate(values):
            if v is None or not isinstance(v, str | int | float | bool):
                errors.append(RuleError(doc.at(("lists", name, i)), f"lists.{name}[{i}]: expected text or a "
                                                                    f"number, got {describe(v)}"))
        parts.lists.append(ListDef(name, tuple(values), where))
    for name, text in top.macros.items():
        where = doc.key_at(("macros", name))
        errors += check_name("macro", name, where)
        if not isinstance(text, str):
            errors.append(RuleError(doc.at(("macros", name)), f"macros.{name}: expected a condition (text), got "
                                                              f"{describe(text)}"))
            continue
        parts.macros.append(MacroDef(name, text, where, ("macros", name)))
    for i, raw in enumerate(top.rules):
        path: YamlPath = ("rules", i)
        name = raw.get("name") if isinstance(raw, dict) else None
        what = f"rule '{name}'" if isinstance(name, str) else "a rule"
        rule, errs = validate_model(RuleModel, raw, doc, path, what, fill={"name": "?"})
        errors += errs
        if rule is None:
            continue
        # From what was written, in the order written: a window kind that failed to validate still counts.
        kinds = [k for k in raw if k in WINDOW_KINDS]
        for extra in kinds[1:]:
            first = doc.key_at((*path, kinds[0]))
            errors.append(RuleError(doc.key_at((*path, extra)),
                                    f"'{extra}' and '{kinds[0]}' (line {first.line}) in one rule: a rule has at "
                                    f"most one of {', '.join(WINDOW_KINDS)}"))
        action_errors: list[RuleError] = []
        actions = tuple(check_actions(rule.actions, doc, (*path, "actions"), action_errors))
        errors += action_errors
        parts.rules.append(RuleDef(rule, path, doc, actions, valid=not errs and not action_errors
                                   and len(kinds) <= 1))
    return parts, errors
