"""Durations ("500ms", "30s", "5m", "1h") and sizes ("512MB", "2G") as written in rule files and configs; below
every layer that reads them (rules, actions, the action runtime, config)."""

from __future__ import annotations

import re

_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
       "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d)\s*")
DURATION_HELP = "a number and a unit (ms, s, m, h), like 500ms, 30s, 5m or 1h"

_BYTES = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
SIZE_HELP = "a number of bytes or a number and a unit (KB, MB, GB), like 512MB or 2GB"


class UnitError(ValueError):
    """A duration or size that does not read; the message says what was expected."""


def parse_duration(value: object) -> int:
    """Nanoseconds in a duration such as "30s". A bare number has no obvious unit, so it is an error."""
    if isinstance(value, bool) or not isinstance(value, str):
        got = f"the number {value}" if isinstance(value, int | float) and not isinstance(value, bool) else repr(value)
        raise UnitError(f"expected a duration, {DURATION_HELP}; got {got}")
    m = _DURATION.fullmatch(value)
    if m is None:
        raise UnitError(f"bad duration {value!r}: expected {DURATION_HELP}")
    ns = round(float(m.group(1)) * _NS[m.group(2)]) if "." in m.group(1) else int(m.group(1)) * _NS[m.group(2)]
    if ns <= 0:
        raise UnitError(f"bad duration {value!r}: must be more than zero")
    return ns


def parse_size(value: object) -> int:
    """Bytes in a size such as "512MB" (binary units: 1MB = 1024*1024 bytes) or a plain number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise UnitError(f"bad size {value}: must be more than zero")
        return value
    if not isinstance(value, str):
        raise UnitError(f"expected a size, {SIZE_HELP}; got {value!r}")
    m = _SIZE.fullmatch(value)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _BYTES:
        raise UnitError(f"bad size {value!r}: expected {SIZE_HELP}")
    n = round(float(m.group(1)) * _BYTES[unit])
    if n <= 0:
        raise UnitError(f"bad size {value!r}: must be more than zero")
    return n
