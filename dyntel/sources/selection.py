"""Tracepoints chosen by name: `sched:sched_switch`, `raw_syscalls:*`, `user_events:MyService_*`.

A pattern is `system:event`, each side a shell-style glob (`*`, `?`, `[...]`, matched case-sensitively, as
tracefs names are). Patterns are resolved against what the kernel has now (tracefs available_events); a pattern
may match nothing yet, such as a user_events name whose producer has not registered, and still match later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import translate

_GLOB = frozenset("*?[")


@dataclass(slots=True, frozen=True)
class Pattern:
    text: str
    system: str
    name: str
    _system_re: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _name_re: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def system_is_literal(self) -> bool:
        """True when the system part has no glob: its tracepoints can be listed from one tracefs directory."""
        return self._system_re is None

    @property
    def is_literal(self) -> bool:
        return self._system_re is None and self._name_re is None

    def matches(self, system: str, name: str) -> bool:
        if self._system_re is None:
            if system != self.system:
                return False
        elif self._system_re.match(system) is None:
            return False
        if self._name_re is None:
            return name == self.name
        return self._name_re.match(name) is not None


def _glob(text: str) -> re.Pattern[str] | None:
    if not _GLOB.intersection(text):
        return None
    return re.compile(translate(text))


def parse_pattern(text: str) -> Pattern:
    """`system:event`; ValueError saying what is wrong otherwise."""
    stripped = text.strip()
    system, colon, name = stripped.partition(":")
    if not colon:
        raise ValueError(f"tracepoint pattern {text!r} has no ':'; write system:event, e.g. sched:sched_switch, "
                         f"raw_syscalls:*, user_events:MyService_*")
    if not system or not name:
        raise ValueError(f"tracepoint pattern {text!r} needs both a system and an event around the ':'")
    if ":" in name:
        raise ValueError(f"tracepoint pattern {text!r} has more than one ':'")
    bad = sorted({c for c in stripped if c.isspace() or c == "/"})
    if bad:
        raise ValueError(f"tracepoint pattern {text!r} contains {''.join(bad)!r}, which no tracepoint name has")
    return Pattern(stripped, system, name, _glob(system), _glob(name))


def resolve(patterns: Iterable[Pattern], available: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (system, event) pairs of `available` that some pattern matches, in `available`'s order."""
    pats = list(patterns)
    return [(s, n) for s, n in available if any(p.matches(s, n) for p in pats)]
