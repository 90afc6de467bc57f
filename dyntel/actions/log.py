"""`log`: one line to dyntel's own log (stderr, or the file the scheduler was given).

Options: `message` (text with placeholders; default: the rule, its group and the event), `level` (a word shown at
the start of the line: info, warning (the default), error). The line reads

    2024-05-01T12:00:00.000000000Z warning http-5xx-burst {pid: 42}: 5xx burst in pid 42
"""

from __future__ import annotations

from typing import ClassVar, Literal

from dyntel.actions import ActionContext
from dyntel.actions.placeholders import as_text
from dyntel.actions.spec import ActionSpec
from dyntel.firing import OK, ActionOutcome, Firing
from dyntel.formatting import format_group, format_time
from dyntel.options import OptionsModel

TYPE = "log"
RANK = 80
SHORT_FORM = ("message", str)  # `- log: "text"`


class LogOptions(OptionsModel):
    what: ClassVar[str] = "log"
    message: str | None = None
    level: Literal["debug", "info", "warning", "error"] | None = None


OPTIONS = LogOptions


def default_message(firing: Firing) -> str:
    e = firing.event
    if e is None:
        return "fired"
    pid = f" pid {e.pid}" if e.pid is not None else ""
    return f"fired on {e.provider}:{e.name}{pid}"


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    raw = spec.options.get("message")
    message = as_text(raw) if raw is not None else default_message(firing)
    level = as_text(spec.options.get("level", "warning"))
    group = f" {format_group(firing.group)}" if firing.group else ""
    context.log(f"{format_time(firing.time)} {level} {firing.rule}{group}: {message}")
    return ActionOutcome(TYPE, OK, {"message": message})
