"""Pydantic's validation errors as positioned messages in words an on-call engineer can act on.

Pydantic's error locations are paths into the document, which `YamlDoc` turns back into file positions; each
error kind gets a sentence that says what was expected there and what was written. Rule files and configs both
validate through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import ValidationError
from yaml.nodes import ScalarNode

from dyntel.options import OptionsModel
from dyntel.rules.condition import did_you_mean
from dyntel.rules.errors import RuleError
from dyntel.rules.yaml_read import YamlDoc, YamlPath

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


def _model_at(model: type[OptionsModel], loc: tuple[str | int, ...]) -> type[OptionsModel] | None:
    """The model that validates the mapping at `loc` (for listing its keys)."""
    current: Any = model
    for step in loc:
        if isinstance(step, int):
            continue
        if not (isinstance(current, type) and issubclass(current, OptionsModel)):
            return None
        fields = {(f.alias or n): f for n, f in current.model_fields.items()}
        if step not in fields:
            return None
        current = _unwrap(fields[step].annotation)
    return current if isinstance(current, type) and issubclass(current, OptionsModel) else None


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


def allowed_keys(model: type[OptionsModel]) -> list[str]:
    return [(f.alias or n) for n, f in model.model_fields.items()]


def _key_text(loc: tuple[str | int, ...]) -> str:
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def pydantic_errors(error: ValidationError, model: type[OptionsModel], doc: YamlDoc, prefix: YamlPath,
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


def validate_model(model: type[OptionsModel], value: Any, doc: YamlDoc, prefix: YamlPath,
                   what: str, fill: Mapping[str, Any] | None = None) -> tuple[Any, list[RuleError]]:
    """The model for `value`, and errors. When `value` has errors, the model is built from its good keys (with
    `fill`'s values for bad keys it names, placeholders for required ones) so that later checks can still run on
    the rest."""
    try:
        return model.model_validate(value), []
    except ValidationError as e:
        errors = pydantic_errors(e, model, doc, prefix, what)
        if not isinstance(value, dict):
            return None, errors
        bad = {loc[0] for loc in (tuple(x["loc"]) for x in e.errors()) if loc}
        good = {k: v for k, v in value.items() if k not in bad}
        good.update({k: v for k, v in (fill or {}).items() if k in bad})
        try:
            return model.model_validate(good), errors
        except ValidationError:
            return None, errors
