"""The live source's shared state types: its counters and one open tracepoint (dyntel.sources.perf.live and the
modules split from it: ring_reader, balance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dyntel.sources import SourceStats


@dataclass(slots=True)
class LiveStats(SourceStats):
    lost: int = 0  # samples the kernel dropped for a full ring (sum of PERF_RECORD_LOST)
    lost_by_tracepoint: dict[str, int] = field(default_factory=dict)  # as the LOST records name them
    out_of_order: int = 0  # events that came after a later one had been yielded
    wakeups: int = 0
    drains: int = 0
    bytes: int = 0  # ring bytes consumed
    max_drain_gap_ns: int = 0  # longest time between two drains: what a ring must hold to lose nothing


@dataclass(slots=True, eq=False)
class Tracepoint:
    """One open tracepoint: its perf events, one a CPU."""

    system: str
    name: str
    tp_id: int
    source: str
    callchain: bool
    filter: str | None
    fds: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    format_text: str = ""
    sample_type: int = 0
    fmt: Any = None  # its parsed tracefs format (None when unreadable)
    prompt: bool = False  # writing into the prompt rings (a wake-up on each sample), else the batched ones
    counted: tuple[int, int] = (0, 0)  # (samples, CLOCK_MONOTONIC ns) when its rate was last read

    @property
    def full_name(self) -> str:
        return f"{self.system}:{self.name}"
