"""The action types: every module of this package that declares one, found by its name.

An action module declares

    TYPE = "dump"                      # the type name rules write (the module's own name)
    OPTIONS = DumpOptions              # its options schema, a dyntel.options.OptionsModel (default: no options)
    SHORT_FORM = ("message", str)      # optional: `- log: "text"` stands for `- log: {message: "text"}`
    RANK = 10                          # optional: where it comes in lists of types (built-ins 10, 20, ...;
                                       # without one, after them by name)
    def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome: ...

and that is all it takes: the rule schema (dyntel.rules.schema) and `dyntel action` read the type's options from
here, the runtime finds its `run` here. A rule naming a type imports that one module only; the list of all types
(for an unknown type's error) imports every module of the package once.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, cast

import dyntel.actions as _package
from dyntel.actions import ActionContext
from dyntel.actions.spec import ActionSpec
from dyntel.firing import ActionOutcome, Firing
from dyntel.options import NoOptions, OptionsModel

_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*")
LAST_RANK = 1_000_000  # a type without RANK comes after those with one


class ActionModule(Protocol):
    TYPE: str

    def run(self, spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome: ...


ShortForm = tuple[str, type | tuple[type, ...]]


@dataclass(frozen=True, slots=True)
class ActionType:
    """One action type, as its module declares it."""

    name: str
    module: ActionModule
    options: type[OptionsModel]
    short_form: ShortForm | None = None  # (the option a bare value stands for, the types a bare value may have)
    rank: int = LAST_RANK


class UnknownAction(LookupError):
    """No action type by that name; `reason` says why in words (a rule file's error, a skipped action's reason).
    `missing`: there is no module by that name at all (rather than one that is not an action or does not load)."""

    def __init__(self, action_type: str, reason: str, *, missing: bool) -> None:
        super().__init__(reason)
        self.action_type = action_type
        self.reason = reason
        self.missing = missing


def unavailable_reason(action_type: str) -> str:
    return f"the {action_type} action is not available in this build"


_found: dict[str, ActionType | UnknownAction] = {}


def find_action(action_type: str) -> ActionType:
    """The action type of that name; raises UnknownAction with the reason when there is none."""
    found = _found.get(action_type)
    if found is None:
        found = _find(action_type)
        _found[action_type] = found
    if isinstance(found, UnknownAction):
        # A new exception each time: re-raising the cached one would grow its traceback at every firing.
        raise UnknownAction(found.action_type, found.reason, missing=found.missing)
    return found


def _find(action_type: str) -> ActionType | UnknownAction:
    if not _TYPE_NAME.fullmatch(action_type):
        return UnknownAction(action_type, f"{action_type!r} is not an action type name", missing=True)
    name = f"{_package.__name__}.{action_type}"
    try:
        module: ModuleType = importlib.import_module(name)
    except ImportError as e:
        # Only the module itself missing means "not in this build"; a dependency it lacks is worth naming.
        if isinstance(e, ModuleNotFoundError) and e.name == name:
            return UnknownAction(action_type, unavailable_reason(action_type), missing=True)
        return UnknownAction(action_type, f"{unavailable_reason(action_type)}: {e}", missing=False)
    if getattr(module, "TYPE", None) != action_type or not callable(getattr(module, "run", None)):
        return UnknownAction(action_type, f"{name} is not an action module (it needs TYPE = {action_type!r} and run)",
                             missing=True)
    options = getattr(module, "OPTIONS", NoOptions)
    if not (isinstance(options, type) and issubclass(options, OptionsModel)):
        return UnknownAction(action_type, f"{name}.OPTIONS is not an options model (a dyntel.options.OptionsModel)",
                             missing=False)
    return ActionType(action_type, cast(ActionModule, module), options, getattr(module, "SHORT_FORM", None),
                      int(getattr(module, "RANK", LAST_RANK)))


def action_types() -> list[ActionType]:
    """Every action type of the package, in listing order (RANK, then name). Modules that are not actions (the
    helpers beside them) and modules that do not load are left out."""
    names = {m.name for m in pkgutil.iter_modules(_package.__path__) if not m.ispkg}
    names |= {n.rpartition(".")[2] for n in _registered_modules()}
    out: list[ActionType] = []
    for name in sorted(names):
        try:
            out.append(find_action(name))
        except UnknownAction:
            continue
    return sorted(out, key=lambda t: (t.rank, t.name))


def type_names() -> tuple[str, ...]:
    return tuple(t.name for t in action_types())


def _registered_modules() -> list[str]:
    """Action modules put in place without a file (tests, plugins that install a module object), found in
    sys.modules under this package."""
    prefix = _package.__name__ + "."
    return [n for n in list(sys.modules) if n.startswith(prefix) and "." not in n[len(prefix):]]
