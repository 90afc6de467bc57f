"""Where event bytes come from: recordings on disk and live kernel streams.

Every source sits behind `Source`: it yields `Event`s in the order a reader should see them and keeps `SourceStats`,
where records it could not use are counted with their byte offset instead of stopping the loop. `SourceStats` and
the pre-decode filters (`Want`, `FieldFilter`) are defined in dyntel.source_types, below the decoders, which use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from dyntel.event import Event
from dyntel.source_types import MAX_KEPT_PROBLEMS, FieldFilter, FieldTest, Problem, SourceStats, Want

__all__ = ["MAX_KEPT_PROBLEMS", "FieldFilter", "FieldTest", "Problem", "Source", "SourceStats", "Want"]


class Source(Protocol):
    """A stream of events and the counts of what it read."""

    name: str  # what the user named: a path, or a live session's description
    stats: SourceStats
    field_tags: bool  # whether its reference output shows EventHeader field tags in JSON keys

    def events(self) -> Iterator[Event]: ...
