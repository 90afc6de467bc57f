"""A rule's actions, checked as written: each a known type (dyntel.actions.registry) with its options schema, and
its {placeholders} names that exist when the action runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dyntel.actions.placeholders import PLACEHOLDER, placeholder_names
from dyntel.actions.registry import UnknownAction, find_action, type_names
from dyntel.actions.spec import ActionSpec
from dyntel.rules.condition import EVENT_NAMES, did_you_mean
from dyntel.rules.errors import RuleError
from dyntel.rules.schema_errors import describe, validate_model
from dyntel.rules.yaml_read import YamlDoc, YamlPath

# The first name of a {placeholder} in an action's text (what dyntel.actions.placeholders expands).
_NESTED_ROOTS = frozenset({"fields", "group", "actions"})
PLACEHOLDER_ROOTS = frozenset(EVENT_NAMES) | {"rule"} | _NESTED_ROOTS


def check_actions(raw: list[Any], doc: YamlDoc, path: YamlPath, errors: list[RuleError]) -> Iterable[ActionSpec]:
    earlier: list[str] = []
    for i, item in enumerate(raw):
        here = (*path, i)
        if not isinstance(item, dict) or len(item) != 1:
            errors.append(RuleError(doc.at(here), _not_one_key(item)))
            continue
        ((kind, options),) = item.items()
        opath = (*here, kind)
        if not isinstance(kind, str):
            errors.append(RuleError(doc.key_at(opath), _unknown(kind)))
            continue
        try:
            action = find_action(kind)
        except UnknownAction as e:
            errors.append(RuleError(doc.key_at(opath), _unknown(kind, e)))
            continue
        if options is None:
            options = {}
        short = action.short_form
        if short is not None and isinstance(options, short[1]) and not isinstance(options, bool):
            options = {short[0]: options}
        if not isinstance(options, dict):
            errors.append(RuleError(doc.at(opath), f"{kind}: expected its options as a mapping, like "
                                                   f"`{kind}: {{...}}` (or `{kind}: {{}}` for none), got "
                                                   f"{describe(options)}"))
            continue
        model = action.options
        # An option that is exactly one placeholder takes its value at firing time, whatever its type: only the
        # placeholder itself can be checked now.
        dynamic = {k for k, v in options.items() if isinstance(v, str) and PLACEHOLDER.fullmatch(v.strip())
                   and not v.strip().startswith(("{{", "}}"))}
        static = {k: v for k, v in options.items() if k not in dynamic}
        _, errs = validate_model(model, static, doc, opath, f"the options of {kind}")
        errors += [e for e in errs if not any(e.message == f"missing required key '{k}' in the options of {kind}"
                                              for k in dynamic)]
        errors += _check_placeholders(options, doc, opath, earlier)
        earlier.append(kind)
        yield ActionSpec(kind, dict(options), doc.key_at(opath))


def _unknown(kind: Any, e: UnknownAction | None = None) -> str:
    if e is not None and not e.missing:  # its module is there but does not load: say why, not that there is none
        return f"action '{kind}': {e.reason}"
    names = type_names()
    return f"unknown action '{kind}'; expected one of {', '.join(names)}{did_you_mean(kind, names)}"


def _not_one_key(item: Any) -> str:
    example = "like `- dump: {format: core}` or `- stacks: {}`"
    if isinstance(item, dict) and len(item) > 1:
        keys = ", ".join(item)
        return (f"an action is a mapping with one key, its type ({example}); this one has {len(item)} keys "
                f"({keys}): indent the options under the type, or start each action with '-'")
    if isinstance(item, str) and item in type_names():
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


def _check_placeholders(options: dict[str, Any], doc: YamlDoc, path: YamlPath,
                        earlier: list[str]) -> list[RuleError]:
    errors: list[RuleError] = []
    for text, where in _strings(options, path):
        for name in placeholder_names(text):
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
