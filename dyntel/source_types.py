"""What every source shares with the decoders it calls and the layers that read its counts: the pre-decode
filters a source is given (`Want`, `FieldFilter`) and the counts it keeps (`SourceStats`, `Problem`).

They live below both sources and decoders (a decoder takes a `Want` and counts into a source's `SourceStats`), so
that decoders never import a source; `dyntel.sources` exports them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MAX_KEPT_PROBLEMS = 100

# A pre-decode filter: whether anything downstream can use events of this provider and event name at this level
# (None for events without one, such as tracefs samples). A source that has a `want` attribute and is given one asks
# it once per event type, before decoding payloads, and counts what it drops in `stats.skipped["filtered"]`.
Want = Callable[[str, str, int | None], bool]

# A finer pre-decode filter for events with typed payloads (tracefs formats; such events have no level): for
# (provider, event), None when every event of that type is wanted, or alternatives of tests
# `(field name, op, values)` with op one of == != < <= > >= (one value) or in / not in (any number): an event is
# wanted when all tests of some alternative hold. The tests are necessary conditions, so a source may apply them
# where it can read the fields cheaply, and ignore them elsewhere.
FieldTest = tuple[str, str, tuple[int, ...]]
FieldFilter = Callable[[str, str], Sequence[Sequence[FieldTest]] | None]


@dataclass(slots=True)
class Problem:
    """One record a source could not use."""

    offset: int
    message: str

    def __str__(self) -> str:
        return f"byte {self.offset}: {self.message}"


@dataclass(slots=True)
class SourceStats:
    records: int = 0  # records read, of any kind
    events: int = 0  # events yielded
    skipped: dict[str, int] = field(default_factory=dict)  # records not turned into events, by reason
    bad: int = 0  # records that were malformed
    problems: list[Problem] = field(default_factory=list)  # the first MAX_KEPT_PROBLEMS bad records
    # Malformed records by reason (a short fixed label): those counted in `bad`, and the user_events samples that
    # turned out not to be EventHeader after all (shown as their tracepoint's plain fields, as the reference does).
    bad_by_reason: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def problem(self, offset: int, message: str, reason: str = "malformed") -> None:
        self.bad += 1
        self.bad_by_reason[reason] = self.bad_by_reason.get(reason, 0) + 1
        if len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems.append(Problem(offset, message))

    def not_eventheader(self, reason: str) -> None:
        """A user_events sample with an EventHeader name whose bytes are not EventHeader (yielded as plain
        fields)."""
        key = f"not EventHeader: {reason}"
        self.bad_by_reason[key] = self.bad_by_reason.get(key, 0) + 1
