"""`signal`: send a signal to the event's process.

Options: `signal` (a name, `TERM` or `SIGTERM`, or a number; default TERM), `pid` (another process than the
event's), `allow_special` (true to let `pid` name process 1 or dyntel itself: refused otherwise, since a rule
matching on dyntel's own events, or on init's, would otherwise take the host or the listener down).

The outcome has the pid and the signal; a kill the kernel refuses is a failure that says why (no such process, not
permitted: a process of another user needs CAP_KILL).
"""

from __future__ import annotations

import errno
import os
import signal as _signal
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field

from dyntel.actions import ActionContext
from dyntel.actions.dump import target_pid
from dyntel.actions.spec import ActionSpec
from dyntel.firing import FAILED, OK, SKIPPED, ActionOutcome, Firing
from dyntel.options import OptionsModel, custom

TYPE = "signal"
RANK = 70
SHORT_FORM = ("signal", (str, int))  # `- signal: TERM`


def _signal_value(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and v in {s.value for s in _signal.Signals}:
        return v
    if isinstance(v, str):
        name = v.upper() if v.upper().startswith("SIG") else "SIG" + v.upper()
        if name in _signal.Signals.__members__:
            return v
    names = ", ".join(s.name for s in sorted(_signal.Signals, key=lambda s: s.value)[:16])
    raise custom(f"bad signal {v!r}: expected a signal name ({names}, ...) or number")


class SignalOptions(OptionsModel):
    what: ClassVar[str] = "signal"
    signal: Annotated[Any, BeforeValidator(_signal_value)] = None
    pid: int | None = Field(default=None, ge=1)
    allow_special: bool | None = None  # let `pid` name process 1 or dyntel itself


OPTIONS = SignalOptions


def signal_of(value: Any) -> _signal.Signals:
    """A signal from a name (`TERM`, `sigterm`) or a number; ValueError naming the choices otherwise."""
    if value is None:
        return _signal.SIGTERM
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return _signal.Signals(value)
        except ValueError:
            raise ValueError(f"signal {value} is not a signal number of this system") from None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return signal_of(int(text))
        name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
        if name in _signal.Signals.__members__:
            return _signal.Signals[name]
    raise ValueError(f"signal {value!r}: expected a name such as TERM, KILL, USR1, or a number")


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    opts = spec.options
    try:
        sig = signal_of(opts.get("signal"))
    except ValueError as e:
        return ActionOutcome(TYPE, FAILED, {"reason": str(e)})
    pid = target_pid(spec, firing)
    if isinstance(pid, str):
        return ActionOutcome(TYPE, SKIPPED, {"reason": pid})
    special = {1: "process 1 (init)", os.getpid(): "dyntel itself"}
    if pid in special and not (opts.get("pid") is not None and opts.get("allow_special") is True):
        return ActionOutcome(TYPE, SKIPPED, {
            "reason": f"pid {pid} is {special[pid]}: refused unless the action names it with pid and "
                      f"allow_special: true", "pid": pid, "signal": sig.name})
    detail: dict[str, Any] = {"pid": pid, "signal": sig.name}
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return ActionOutcome(TYPE, FAILED, {**detail, "reason": f"ESRCH: no process {pid} (it has exited)"})
    except PermissionError:
        return ActionOutcome(TYPE, FAILED, {
            **detail, "reason": f"EPERM: not permitted to signal pid {pid}: it belongs to another user; run dyntel "
                                f"as that user or give it CAP_KILL"})
    except OSError as e:
        code = errno.errorcode.get(e.errno or 0, str(e.errno))
        return ActionOutcome(TYPE, FAILED, {**detail, "reason": f"{code}: {e.strerror}"})
    return ActionOutcome(TYPE, OK, detail)
