"""The shape of a rule file (pydantic models), and its errors in words an on-call engineer can act on.

Models validate strictly (no "5" for 5) and forbid unknown keys. Each rule is validated on its own, so that one
bad rule does not hide the errors of the others; pydantic's error locations are paths into the document, which
`YamlDoc` turns back into file positions. What pydantic cannot say well (actions, one window kind per rule,
placeholders) is checked by hand here; conditions are checked by the compiler.
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from yaml.nodes import ScalarNode

from dyntel.rules.condition import EVENT_NAMES, RESERVED, did_you_mean
from dyntel.rules.durations import UnitError, parse_duration, parse_size
from dyntel.rules.errors import RuleError
from dyntel.rules.model import ActionSpec, Position
from dyntel.rules.yaml_read import YamlDoc, YamlPath

LEVEL_NAMES = {"critical": 1, "error": 2, "warning": 3, "informational": 4, "info": 4, "verbose": 5}
AGGS = ("avg", "min", "max", "sum", "p50", "p90", "p99")
OPS = (">", ">=", "<", "<=", "==", "!=")
WINDOW_KINDS = ("window", "threshold", "absence", "sequence")
ACTION_TYPES = ("dump", "stacks", "enable", "otlp", "record", "exec", "signal", "log")
# The first name of a {placeholder} in an action's text (what dyntel.actions.placeholders expands).
_NESTED_ROOTS = frozenset({"fields", "group", "actions"})
PLACEHOLDER_ROOTS = frozenset(EVENT_NAMES) | {"rule"} | _NESTED_ROOTS


def _custom(message: str) -> PydanticCustomError:
    # The message goes through the context so that braces in what the user wrote are not read as a template.
    return PydanticCustomError("dyntel", "{message}", {"message": message})


def _duration(v: Any) -> int:
    try:
        return parse_duration(v)
    except UnitError as e:
        raise _custom(str(e)) from None


def _size(v: Any) -> int:
    try:
        return parse_size(v)
    except UnitError as e:
        raise _custom(str(e)) from None


def level_value(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255:
        return v
    if isinstance(v, str) and v.lower() in LEVEL_NAMES:
        return LEVEL_NAMES[v.lower()]
    raise _custom(f"bad level {v!r}: expected a number 0-255 (1 critical, 2 error, 3 warning, 4 informational, "
                  f"5 verbose) or one of the names {', '.join(LEVEL_NAMES)}")


def _signal_value(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and v in {s.value for s in _signal.Signals}:
        return v
    if isinstance(v, str):
        name = v.upper() if v.upper().startswith("SIG") else "SIG" + v.upper()
        if name in _signal.Signals.__members__:
            return v
    names = ", ".join(s.name for s in sorted(_signal.Signals, key=lambda s: s.value)[:16])
    raise _custom(f"bad signal {v!r}: expected a signal name ({names}, ...) or number")


def _one_or_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else [] if v is None else v


def _empty_list(v: Any) -> Any:
    return [] if v is None else v


def _empty_dict(v: Any) -> Any:
    return {} if v is None else v


Duration = Annotated[int, BeforeValidator(_duration)]
Size = Annotated[int, BeforeValidator(_size)]
Level = Annotated[int, BeforeValidator(level_value)]
Keys = Annotated[list[str], BeforeValidator(_one_or_list)]
# A key written with nothing after it (`rules:` while a file is being written) is an empty list or mapping.
AnyList = Annotated[list[Any], BeforeValidator(_empty_list)]
AnyDict = Annotated[dict[str, Any], BeforeValidator(_empty_dict)]
Texts = Annotated[list[str], BeforeValidator(_empty_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    what: ClassVar[str] = "this mapping"


class FileModel(_Model):
    what: ClassVar[str] = "the top level of a rule file"
    version: int = 1
    lists: AnyDict = Field(default_factory=dict)
    macros: AnyDict = Field(default_factory=dict)
    rules: AnyList = Field(default_factory=list)


class MatchModel(_Model):
    what: ClassVar[str] = "match"
    provider: str | None = None
    event: str | None = None
    level: Level | None = None


class CountWindowModel(_Model):
    what: ClassVar[str] = "window"
    count: int = Field(ge=1)
    within: Duration
    group_by: Keys = Field(default_factory=list)


class ThresholdModel(_Model):
    what: ClassVar[str] = "threshold"
    value: str
    agg: Literal["avg", "min", "max", "sum", "p50", "p90", "p99"]
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    limit: float
    within: Duration
    group_by: Keys = Field(default_factory=list)


class AbsenceModel(_Model):
    what: ClassVar[str] = "absence"
    within: Duration
    group_by: Keys = Field(default_factory=list)


class SequenceModel(_Model):
    what: ClassVar[str] = "sequence"
    steps: list[str] = Field(min_length=2)
    within: Duration
    by: Keys = Field(default_factory=list)


class LimitModel(_Model):
    what: ClassVar[str] = "limit"
    actions: int = Field(ge=1)
    per: Duration


class RuleModel(_Model):
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


# --- actions ---------------------------------------------------------------------------------------------------------
# The options each action takes. The actions read ActionSpec.options as written; these models only check them.

class DumpOptions(_Model):
    what: ClassVar[str] = "dump"
    format: Literal["minidump", "core"] | None = None
    dir: str | None = None
    max_size: Size | None = None
    max_total: Size | None = None
    memory: Literal["stacks", "writable", "all"] | None = None
    pid: int | None = Field(default=None, ge=1)
    timeout: Duration | None = None


class StacksOptions(_Model):
    what: ClassVar[str] = "stacks"
    pid: int | None = Field(default=None, ge=1)
    dir: str | None = None
    max_total: Size | None = None
    native: bool | None = None
    python: bool | None = None
    timeout: Duration | None = None


class EnableOptions(_Model):
    what: ClassVar[str] = "enable"
    provider: str
    level: Level | None = None
    keyword: int | None = Field(default=None, ge=0)
    for_: Duration | None = Field(default=None, alias="for")
    event: str | None = None  # a tracefs system's event (a glob); EventHeader providers go by level and keyword


class OtlpOptions(_Model):
    what: ClassVar[str] = "otlp"
    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] | None = None
    severity: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"] | None = None
    body: str | None = None
    attributes: dict[str, Any] | None = None
    timeout: Duration | None = None


class RecordOptions(_Model):
    what: ClassVar[str] = "record"
    last: Duration | None = None
    next: Duration | None = None
    path: str | None = None  # the artifact directory, like `dir`
    format: Literal["jsonl", "json"] | None = None
    dir: str | None = None
    max_total: Size | None = None
    timeout: Duration | None = None


class ExecOptions(_Model):
    what: ClassVar[str] = "exec"
    argv: list[str] = Field(min_length=1)
    timeout: Duration | None = None


class SignalOptions(_Model):
    what: ClassVar[str] = "signal"
    signal: Annotated[Any, BeforeValidator(_signal_value)] = None
    pid: int | None = Field(default=None, ge=1)
    allow_special: bool | None = None  # let `pid` name process 1 or dyntel itself


class LogOptions(_Model):
    what: ClassVar[str] = "log"
    message: str | None = None
    level: Literal["debug", "info", "warning", "error"] | None = None


ACTION_OPTIONS: dict[str, type[_Model]] = {
    "dump": DumpOptions, "stacks": StacksOptions, "enable": EnableOptions, "otlp": OtlpOptions,
    "record": RecordOptions, "exec": ExecOptions, "signal": SignalOptions, "log": LogOptions,
}
# The short forms `- log: "text"`, `- exec: [argv...]`, `- signal: TERM`: the option they stand for.
_SHORTHAND: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "log": ("message", str), "exec": ("argv", list), "signal": ("signal", (str, int))}


# --- pydantic errors to messages --------------------------------------------------------------------------------------

_EXPECTED = {
    "string_type": "text", "int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
    "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "int_parsing": "a whole number", "float_parsing": "a number",
}


def describe(v: Any) -> str:
    """A value as an error message names it."""
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return f"the number {v}"
    if isinstance(v, str):
        return f"text {v!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _model_at(model: type[_Model], loc: tuple[str | int, ...]) -> type[_Model] | None:
    """The model that validates the mapping at `loc` (for listing its keys)."""
    current: Any = model
    for step in loc:
        if isinstance(step, int):
            continue
        if not (isinstance(current, type) and issubclass(current, _Model)):
            return None
        fields = {(f.alias or n): f for n, f in current.model_fields.items()}
        if step not in fields:
            return None
        current = _unwrap(fields[step].annotation)
    return current if isinstance(current, type) and issubclass(current, _Model) else None


def _unwrap(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    if origin is list:
        return _unwrap(get_args(annotation)[0])
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    return annotation


def allowed_keys(model: type[_Model]) -> list[str]:
    return [(f.alias or n) for n, f in model.model_fields.items()]


def _key_text(loc: tuple[str | int, ...]) -> str:
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def pydantic_errors(error: ValidationError, model: type[_Model], doc: YamlDoc, prefix: YamlPath,
                    what: str) -> list[RuleError]:
    """Pydantic's errors for the value at `prefix`, validated with `model`, as positioned messages."""
    out: list[RuleError] = []
    for e in error.errors():
        loc = tuple(e["loc"])
        kind = e["type"]
        path = (*prefix, *loc)
        key = _key_text(loc)
        inner = _model_at(model, loc[:-1]) if loc else model
        where_what = what if len(loc) <= 1 else f"{inner.what if inner else key}"
        if kind == "extra_forbidden":
            name = str(loc[-1])
            allowed = allowed_keys(inner) if inner else []
            listing = f"; expected one of: {', '.join(allowed)}" if allowed else "; it takes no options"
            out.append(RuleError(doc.key_at(path), f"unknown key '{name}' in {where_what}{listing}"
                                                   f"{did_you_mean(name, allowed)}"))
        elif kind == "missing":
            out.append(RuleError(doc.at(path[:-1]), f"missing required key '{loc[-1]}' in {where_what}"))
        elif kind in _EXPECTED:
            expected = _EXPECTED[kind]
            if kind in ("model_type", "dict_type") and inner is not None and loc:
                expected = f"a mapping with keys {', '.join(allowed_keys(_model_at(model, loc) or inner))}"
            elif kind in ("model_type", "dict_type") and not loc:
                expected = f"a mapping with keys {', '.join(allowed_keys(model))}"
            label = f"{key}: " if key else ""
            message = f"{label}expected {expected}, got {describe(e['input'])}"
            node = doc.nodes.get(path)
            if kind == "string_type" and isinstance(node, ScalarNode) and not node.style:
                message += (f" (YAML reads unquoted {node.value} as {describe(e['input'])}; write \"{node.value}\" for "
                            "the text)")
            out.append(RuleError(doc.at(path), message))
        elif kind == "literal_error":
            expected = str(e.get("ctx", {}).get("expected", "")).replace("'", "")
            out.append(RuleError(doc.at(path), f"{key}: bad value {e['input']!r}: expected one of {expected}"))
        elif kind in ("greater_than_equal", "greater_than"):
            bound = e.get("ctx", {}).get("ge", e.get("ctx", {}).get("gt"))
            word = "at least" if kind == "greater_than_equal" else "more than"
            out.append(RuleError(doc.at(path), f"{key}: must be {word} {bound}, got {e['input']!r}"))
        elif kind == "too_short":
            n = e.get("ctx", {}).get("min_length")
            out.append(RuleError(doc.at(path), f"{key}: needs at least {n} item{'s' if n != 1 else ''}"))
        elif kind == "dyntel":
            out.append(RuleError(doc.at(path), f"{key}: {e.get('ctx', {}).get('message', e['msg'])}"))
        else:
            out.append(RuleError(doc.at(path), f"{key}: {e['msg']}"))
    return out


def validate_model(model: type[_Model], value: Any, doc: YamlDoc, prefix: YamlPath,
                   what: str) -> tuple[Any, list[RuleError]]:
    """The model for `value`, and errors. When `value` has errors, the model is built from its good keys
    (with placeholders for missing required ones) so that later checks can still run on the rest."""
    try:
        return model.model_validate(value), []
    except ValidationError as e:
        errors = pydantic_errors(e, model, doc, prefix, what)
        if not isinstance(value, dict):
            return None, errors
        bad = {loc[0] for loc in (tuple(x["loc"]) for x in e.errors()) if loc}
        good = {k: v for k, v in value.items() if k not in bad}
        if "name" in bad and model is RuleModel:
            good["name"] = "?"
        try:
            return model.model_validate(good), errors
        except ValidationError:
            return None, errors


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
        rule, errs = validate_model(RuleModel, raw, doc, path, what)
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


def check_actions(raw: list[Any], doc: YamlDoc, path: YamlPath, errors: list[RuleError]) -> Iterable[ActionSpec]:
    earlier: list[str] = []
    for i, item in enumerate(raw):
        here = (*path, i)
        if not isinstance(item, dict) or len(item) != 1:
            errors.append(RuleError(doc.at(here), _not_one_key(item)))
            continue
        ((kind, options),) = item.items()
        opath = (*here, kind)
        if kind not in ACTION_TYPES:
            errors.append(RuleError(doc.key_at(opath), f"unknown action '{kind}'; expected one of "
                                                        f"{', '.join(ACTION_TYPES)}{did_you_mean(kind, ACTION_TYPES)}"))
            continue
        if options is None:
            options = {}
        short = _SHORTHAND.get(kind)
        if short is not None and isinstance(options, short[1]) and not isinstance(options, bool):
            options = {short[0]: options}
        if not isinstance(options, dict):
            errors.append(RuleError(doc.at(opath), f"{kind}: expected its options as a mapping, like "
                                                   f"`{kind}: {{...}}` (or `{kind}: {{}}` for none), got "
                                                   f"{describe(options)}"))
            continue
        model = ACTION_OPTIONS[kind]
        # An option that is exactly one placeholder takes its value at firing time, whatever its type: only the
        # placeholder itself can be checked now.
        dynamic = {k for k, v in options.items() if isinstance(v, str) and _PLACEHOLDER.fullmatch(v.strip())
                   and not v.strip().startswith(("{{", "}}"))}
        static = {k: v for k, v in options.items() if k not in dynamic}
        _, errs = validate_model(model, static, doc, opath, f"the options of {kind}")
        errors += [e for e in errs if not any(e.message == f"missing required key '{k}' in the options of {kind}"
                                              for k in dynamic)]
        errors += _check_placeholders(options, doc, opath, earlier)
        earlier.append(kind)
        yield ActionSpec(kind, dict(options), doc.key_at(opath))


def _not_one_key(item: Any) -> str:
    example = "like `- dump: {format: core}` or `- stacks: {}`"
    if isinstance(item, dict) and len(item) > 1:
        keys = ", ".join(item)
        return (f"an action is a mapping with one key, its type ({example}); this one has {len(item)} keys "
                f"({keys}): indent the options under the type, or start each action with '-'")
    if isinstance(item, str) and item in ACTION_TYPES:
        return f"an action is a mapping with one key, its type ({example}); write `- {item}: {{}}`"
    return f"an action is a mapping with one key, its type ({example}); got {describe(item)}"


def _strings(value: Any, path: YamlPath) -> Iterable[tuple[str, YamlPath]]:
    if isinstance(value, str):
        yield value, path
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))


# As dyntel.actions.placeholders finds them: `{{` and `}}` are braces, and braces around text that does not start with
# a letter (`{"a": 1}`) are not a placeholder.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][^{}]*)\}")


def placeholders(text: str) -> list[str]:
    """The placeholder names in a piece of action text, as written."""
    return [m.group(1).strip() for m in _PLACEHOLDER.finditer(text) if m.group(1) is not None]


def _check_placeholders(options: dict[str, Any], doc: YamlDoc, path: YamlPath,
                        earlier: list[str]) -> list[RuleError]:
    errors: list[RuleError] = []
    for text, where in _strings(options, path):
        for name in placeholders(text):
            root, _, rest = name.partition(".")
            if root not in PLACEHOLDER_ROOTS:
                errors.append(RuleError(doc.at(where), f"unknown placeholder {{{name}}}; expected {{fields.NAME}}, "
                                                       "{group.KEY}, {actions.TYPE.KEY} or one of "
                                                       f"{', '.join(sorted(PLACEHOLDER_ROOTS - _NESTED_ROOTS))}"
                                                       f"{did_you_mean(root, PLACEHOLDER_ROOTS)}"))
            elif root in _NESTED_ROOTS and not rest and root != "group":
                errors.append(RuleError(doc.at(where), f"placeholder {{{name}}} needs a name after it, like "
                                                       f"{{{root}.{'path' if root == 'fields' else 'dump.path'}}}"))
            elif root not in _NESTED_ROOTS and rest:
                errors.append(RuleError(doc.at(where), f"placeholder {{{name}}}: {root} has no parts"))
            elif root == "actions":
                action = rest.partition(".")[0]
                if action not in earlier:
                    errors.append(RuleError(doc.at(where), f"placeholder {{{name}}} reads the result of a "
                                                           f"'{action}' action, but no '{action}' action comes "
                                                           "before this one in the rule"))
    return errors
