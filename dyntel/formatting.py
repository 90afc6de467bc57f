"""Times, durations and group values as dyntel writes them for people and in firings' JSON: one place for all.

The engine (explain lines, window notes), the actions (log lines, outcomes), the action runtime (action log) and
the commands (replay's firing lines, rule tests) all format through here, so a time reads the same everywhere.
Three time formats, each for a reason:
- `format_time`: for people; ISO-8601 UTC with nanoseconds when the clock looks like wall time, else the raw
  clock in seconds (a recording's monotonic clock is not a date);
- `format_time_iso`: ISO-8601 UTC with nanoseconds whatever the value (rule tests write times that way);
- `format_time_rfc3339`: the Common Schema wire format, with the fewest fraction digits that hold the value, as
  the OpenTelemetry Rust exporters write it (chrono's `SecondsFormat::AutoSi`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from dyntel.event_json import format_uuid

# Below this (1973) a time is a recording's raw clock, not nanoseconds since the epoch.
_WALL_CLOCK_NS = 10**17


def format_time_iso(ns: int) -> str:
    """`2024-05-01T12:00:00.000000000Z`: ISO-8601 UTC with all nine fraction digits."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def format_time(ns: int) -> str:
    """An event time for people: ISO-8601 UTC when it looks like wall time, else the raw clock in seconds."""
    if ns < _WALL_CLOCK_NS:
        return f"{ns / 1e9:.9f}"
    return format_time_iso(ns)


def format_time_rfc3339(unix_nano: int) -> str:
    """RFC 3339 in UTC with 'Z', and 0, 3, 6 or 9 fraction digits, the fewest that hold the value (chrono's
    `SecondsFormat::AutoSi`, which the Rust exporters use)."""
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + fraction_text(nanos)


def fraction_text(nanos: int) -> str:
    """The part after the seconds, as chrono's AutoSi writes it: none, milli-, micro- or nanoseconds, then Z."""
    if nanos == 0:
        return "Z"
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f".{nanos // 1000:06d}Z"
    return f".{nanos:09d}Z"


def format_duration(ns: int) -> str:
    """Back to the rule format's units: 30s, 500ms, 5m, 1h, 1m30s."""
    if ns <= 0:
        return "0s"
    if ns % 1_000_000_000:
        if ns % 1_000_000 == 0:
            return f"{ns // 1_000_000}ms"
        if ns % 1_000 == 0:
            return f"{ns // 1_000}us"
        return f"{ns}ns"
    s = ns // 1_000_000_000
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out


def json_value(value: Any) -> Any:
    """A group value as the firing's JSON shows it: GUIDs (activity) as UUID text, other bytes as hex."""
    if isinstance(value, bytes):
        if len(value) == 16:
            return format_uuid(value)
        return value.hex()
    return value


def json_value_deep(value: Any) -> Any:
    """`json_value` through lists, tuples and dicts (keys as text), bytearrays as bytes."""
    if isinstance(value, bytes | bytearray):
        return json_value(bytes(value))
    if isinstance(value, tuple | list):
        return [json_value_deep(x) for x in value]
    if isinstance(value, dict):
        return {str(k): json_value_deep(x) for k, x in value.items()}
    return value


def format_group(group: dict[str, Any]) -> str:
    """`{pid: 42, fields.path: "/x"}`: as ops wrote the keys, values as JSON."""
    return "{" + ", ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in group.items()) + "}"
