"""`enable`: turn a provider on at a level and keyword mask for a while, then back off.

Options: `provider` (required: an EventHeader provider, or a tracefs system such as `syscalls`), `level` (a number
or a name: critical 1 ... verbose 5; default every level), `keyword` (a mask; default 0, every keyword), `for` (a
duration; default 1m), `event` (for a tracefs system: one event name or glob; default all of its events).

The work is the engine's (`context.services["enabler"]`, dyntel.sources.enabler): the action asks for the grant
and reports what it covers. Overlapping enables of one provider merge; each tracepoint goes off when the last enable
covering it ends. Without the service (`dyntel replay`, `dyntel test`) the action is skipped.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import Field

from dyntel.actions import ActionContext
from dyntel.actions.spec import ActionSpec
from dyntel.firing import FAILED, OK, SKIPPED, ActionOutcome, Firing
from dyntel.formatting import format_time
from dyntel.options import LEVEL_NAMES, Duration, Level, OptionsModel
from dyntel.sources.enabler import ALL_KEYWORDS, ALL_LEVELS, EnableError, ProviderEnabler
from dyntel.units import parse_duration

TYPE = "enable"
RANK = 30
DEFAULT_FOR_NS = 60 * 1_000_000_000
# How long the action waits for the engine thread to open the tracepoints (it polls at least every ~100 ms).
APPLY_WAIT_S = 5.0


class EnableOptions(OptionsModel):
    what: ClassVar[str] = "enable"
    provider: str
    level: Level | None = None
    keyword: int | None = Field(default=None, ge=0)
    for_: Duration | None = Field(default=None, alias="for")
    event: str | None = None  # a tracefs system's event (a glob); EventHeader providers go by level and keyword


OPTIONS = EnableOptions


def level_of(value: Any) -> int:
    if value is None:
        return ALL_LEVELS
    if isinstance(value, str) and value.lower() in LEVEL_NAMES:
        return LEVEL_NAMES[value.lower()]
    if isinstance(value, bool):
        raise ValueError(f"level {value!r} is not a level")
    try:
        return int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"level {value!r} is not a number 0-255 or one of {', '.join(LEVEL_NAMES)}") from None


def keyword_of(value: Any) -> int:
    if value is None:
        return ALL_KEYWORDS
    if isinstance(value, bool):
        raise ValueError(f"keyword {value!r} is not a mask")
    try:
        return int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"keyword {value!r} is not a mask (a number such as 0xFF)") from None


def duration_ns(value: Any, default: int) -> int:
    if value is None:
        return default
    ns = parse_duration(value) if isinstance(value, str) else int(float(value) * 1e9)
    if ns <= 0:
        raise ValueError(f"for: {value!r} is not a positive duration")
    return ns


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    opts = spec.options
    enabler: ProviderEnabler | None = context.services.get("enabler")
    if enabler is None:
        return ActionOutcome(TYPE, SKIPPED, {"reason": "no provider enabler: enable runs in `dyntel run` (live "
                                                       "sources only), not in a replay or a test"})
    provider = opts.get("provider")
    event = opts.get("event")
    try:
        if not isinstance(provider, str) or not provider:
            raise ValueError(f"provider {provider!r} is not a provider name")
        level = level_of(opts.get("level"))
        keyword = keyword_of(opts.get("keyword"))
        length = duration_ns(opts.get("for"), DEFAULT_FOR_NS)
        result = enabler.enable(provider, level, keyword, time.time_ns() + length,
                                event=None if event is None else str(event),
                                timeout=min(APPLY_WAIT_S, context.remaining()))
    except (EnableError, ValueError) as e:
        return ActionOutcome(TYPE, FAILED, {"reason": str(e)})
    detail: dict[str, Any] = {
        "provider": provider, "level": level, "keyword": f"0x{keyword:X}", "for_s": length / 1e9,
        "until": format_time(result.until_ns), "tracepoints": result.names, "opened": result.opened}
    if result.failed:
        detail["failed"] = result.failed
    if result.pending:
        detail["pending"] = True
    if not result.names and not result.pending:
        detail["note"] = f"no tracepoint of {provider} is covered yet; any that appears before the end is turned on"
    return ActionOutcome(TYPE, OK, detail)
