"""The pieces the option schemas of rule files and configs are built from: a strict pydantic model and the value
types written in words (durations, sizes, levels). Below every layer that declares options, so an action module
declares its own options schema without reaching up into dyntel.rules.

Models validate strictly (no "5" for 5) and forbid unknown keys; `what` names the mapping in error messages
(dyntel.rules.schema_errors turns pydantic's errors into positioned messages). A validator that refuses a value
raises `custom(message)`, whose message is shown as written.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from dyntel.units import UnitError, parse_duration, parse_size

# Event levels by name (ETW / EventHeader: lower is more severe).
LEVEL_NAMES = {"critical": 1, "error": 2, "warning": 3, "informational": 4, "info": 4, "verbose": 5}


def custom(message: str) -> PydanticCustomError:
    # The message goes through the context so that braces in what the user wrote are not read as a template.
    return PydanticCustomError("dyntel", "{message}", {"message": message})


def _duration(v: Any) -> int:
    try:
        return parse_duration(v)
    except UnitError as e:
        raise custom(str(e)) from None


def _size(v: Any) -> int:
    try:
        return parse_size(v)
    except UnitError as e:
        raise custom(str(e)) from None


def level_value(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255:
        return v
    if isinstance(v, str) and v.lower() in LEVEL_NAMES:
        return LEVEL_NAMES[v.lower()]
    raise custom(f"bad level {v!r}: expected a number 0-255 (1 critical, 2 error, 3 warning, 4 informational, "
                 f"5 verbose) or one of the names {', '.join(LEVEL_NAMES)}")


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


class OptionsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    what: ClassVar[str] = "this mapping"


class NoOptions(OptionsModel):
    """The options of an action that takes none."""
