"""Limits on actions, per action type, whatever rule fires them: how many may run at once and how many may start
in a sliding window of time, and how long one may take.

They protect the host and the target, not the rules' logic (that is `cooldown:` and `limit:` on a rule): fifty
rules firing on one incident must not take fifty dumps. Time here is the wall clock (monotonic), because what is
limited is work on this machine, even during a replay. An action over a limit is skipped with a reason that says
which limit and how to change it; it is never queued for later, since a dump taken minutes after its event shows
the wrong moment.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

from dyntel.formatting import format_duration


@dataclass(slots=True, frozen=True)
class TypeLimits:
    concurrent: int = 2  # of this type at once
    count: int | None = None  # at most `count` started per `per_s` seconds (None: no rate limit)
    per_s: float = 3600.0
    timeout_s: float = 30.0  # an action's deadline unless its own `timeout` option says otherwise


# Captures pause the target and write large files: one at a time, and a few an hour unless ops say otherwise.
DEFAULT_LIMITS: dict[str, TypeLimits] = {
    "dump": TypeLimits(concurrent=1, count=5, per_s=3600.0, timeout_s=120.0),
    "stacks": TypeLimits(concurrent=1, count=120, per_s=3600.0, timeout_s=30.0),
}
DEFAULT = TypeLimits()


@dataclass(slots=True)
class _TypeState:
    running: int = 0
    started: deque[float] = field(default_factory=deque)


class ActionGate:
    def __init__(self, limits: dict[str, TypeLimits] | None = None) -> None:
        self.limits = dict(DEFAULT_LIMITS)
        self.limits.update(limits or {})
        self._state: dict[str, _TypeState] = {}
        self._lock = threading.Lock()

    def limits_for(self, action_type: str) -> TypeLimits:
        return self.limits.get(action_type, DEFAULT)

    def set(self, action_type: str, **changes: object) -> None:
        self.limits[action_type] = replace(self.limits_for(action_type), **changes)  # type: ignore[arg-type]

    def enter(self, action_type: str) -> str | None:
        """None: the action may start (call `leave` when it ends). Else the reason it is skipped."""
        limits = self.limits_for(action_type)
        now = time.monotonic()
        with self._lock:
            st = self._state.setdefault(action_type, _TypeState())
            if st.running >= limits.concurrent:
                return (f"busy: {st.running} {action_type} action(s) already running, at most {limits.concurrent} "
                        f"at once (--action-limit {action_type}=concurrent:N)")
            if limits.count is not None:
                while st.started and now - st.started[0] >= limits.per_s:
                    st.started.popleft()
                if len(st.started) >= limits.count:
                    per = format_duration(int(limits.per_s * 1e9))
                    return (f"limit: {limits.count} {action_type} action(s) per {per} reached "
                            f"(--action-limit {action_type}={limits.count}/{per} to change)")
                st.started.append(now)
            st.running += 1
            return None

    def leave(self, action_type: str) -> None:
        with self._lock:
            self._state[action_type].running -= 1


def parse_limit(text: str) -> tuple[str, dict[str, object]]:
    """`dump=3/1h`, `dump=concurrent:2`, `stacks=timeout:10s`, `dump=none` (no rate limit), comma-separated.

    Returns (type, changes) for ActionGate.set."""
    from dyntel.units import parse_duration

    action_type, sep, spec = text.partition("=")
    if not sep or not action_type or not spec:
        raise ValueError(f"{text!r}: write TYPE=COUNT/DURATION, TYPE=concurrent:N, TYPE=timeout:DURATION or TYPE=none")
    changes: dict[str, object] = {}
    for part in spec.split(","):
        part = part.strip()
        if part == "none":
            changes["count"] = None
        elif part.startswith("concurrent:"):
            changes["concurrent"] = int(part.removeprefix("concurrent:"))
        elif part.startswith("timeout:"):
            changes["timeout_s"] = parse_duration(part.removeprefix("timeout:")) / 1e9
        elif "/" in part:
            count, per = part.split("/", 1)
            changes["count"] = int(count)
            changes["per_s"] = parse_duration(per) / 1e9
        else:
            raise ValueError(f"{text!r}: {part!r} is not COUNT/DURATION, concurrent:N, timeout:DURATION or none")
    return action_type.strip(), changes
