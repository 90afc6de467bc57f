"""Replay: a recording (or JSON lines of EVENTs) through the rules, in event-time order, as the live sidecar would
have seen it.

The pieces, and why each is here:

- The source is told which events the rules can use at all (`want`, from the engine's own candidate index), so
  that samples of tracepoints no rule matches are dropped before they are decoded: most events of a production
  recording match no rule, and not decoding them is most of replay's speed.
- perf.data is read in perf's round order (each FINISHED_ROUND's samples sorted by time). Rounds can still overlap
  by a little (a CPU's buffer flushed late), so events pass through a small reorder buffer: `hold` events are kept
  back and handed on in time order. An event older than one already handed on (rare; it would need a round to run
  more than `hold` events late) still goes to the engine, whose clock does not go back (it is then seen at the
  clock's time), and is counted in `late`.
- At the end the engine is finished at the last event's time, so absence timers that ran out inside the recording
  fire, and nothing beyond it does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TextIO

from dyntel.engine.engine import Engine, default_index
from dyntel.engine.explain import ExplainRecord
from dyntel.engine.firing import Firing
from dyntel.engine.stats import EngineStats
from dyntel.event import Event
from dyntel.progress import Progress
from dyntel.rules.model import CompiledRule, RuleSet
from dyntel.sources import Source, SourceStats, Want
from dyntel.sources.recordings import open_recording

DEFAULT_HOLD = 4096
PROGRESS_EVERY = 4096  # events between progress updates (a power of two: the check is a mask)

_time_of = attrgetter("time")


@dataclass(slots=True)
class ReplayOptions:
    dry_run: bool = False
    explain: str | None = None  # a rule name: keep the engine's explain records for it
    hold: int = DEFAULT_HOLD  # events held back to put them in time order; 0 keeps the source's order
    filter: bool = True  # drop events no rule can match before decoding them
    progress: TextIO | None = None  # where a progress bar goes, when it is a terminal
    log: TextIO | None = None  # where the `log` action writes (default: stderr)


@dataclass(slots=True)
class ReplayResult:
    source: str
    source_stats: SourceStats
    engine: EngineStats
    firings: int = 0
    late: int = 0  # events handed to the engine after a later one (see the module docstring)
    first_time: int | None = None
    last_time: int | None = None
    rules: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def filtered(self) -> int:
        return self.source_stats.skipped.get("filtered", 0)


def make_want(rules: Sequence[CompiledRule]) -> Want:
    """Whether any rule can take events of (provider, event, level): the engine's own index decides, so the filter
    can never drop an event the engine would have given a rule."""
    index = default_index(list(rules))
    wants = getattr(index, "wants", None)
    if callable(wants):
        answer: Want = wants
        return answer
    candidates = index.candidates
    return lambda provider, event, level: bool(candidates(provider, event, level))


def time_ordered(events: Iterable[Event], hold: int, late: list[int]) -> Iterator[Event]:
    """`events` in time order, given that none arrives more than `hold` events late. `late[0]` counts those that
    do (they are handed on anyway). Events without a time are handed on where they come, after what is held."""
    if hold <= 0:
        yield from events
        return
    pending: list[Event] = []
    append = pending.append
    newest = -1  # the latest time appended since the last sort
    disordered = False
    floor = -1  # the latest time handed on
    limit = 2 * hold
    for event in events:
        t = event.time
        if t is None:
            if pending:
                if disordered:
                    pending.sort(key=_time_of)
                    disordered = False
                floor = _count_late(pending, floor, late)
                yield from pending
                pending.clear()
                newest = -1
            yield event
            continue
        if t < newest:
            disordered = True
        else:
            newest = t
        append(event)
        if len(pending) >= limit:
            if disordered:
                pending.sort(key=_time_of)
                disordered = False
            out = pending[:hold]
            del pending[:hold]
            floor = _count_late(out, floor, late)
            yield from out
    if pending:
        if disordered:
            pending.sort(key=_time_of)
        _count_late(pending, floor, late)
        yield from pending


def _count_late(out: list[Event], floor: int, late: list[int]) -> int:
    """Count the events of a sorted run that are older than what was handed on before it; the run's new floor."""
    first: int = out[0].time  # type: ignore[assignment]
    if first < floor:
        late[0] += sum(1 for e in out if e.time is not None and e.time < floor)
    last: int = out[-1].time  # type: ignore[assignment]
    return max(floor, last)


def open_for_replay(path: str) -> Source:
    source = open_recording(path)
    if hasattr(source, "order"):
        source.order = "round"  # perf's own time order within each round, as perf-decode
    return source


def replay(rules: RuleSet, path: str, on_firing: Callable[[Firing, Source], None],
           options: ReplayOptions | None = None,
           on_explain: Callable[[ExplainRecord, Source], None] | None = None,
           engine: Engine | None = None) -> ReplayResult:
    """Run `rules` over the recording at `path`; each firing goes to `on_firing` as it happens, each explain record
    (with `options.explain`) to `on_explain`. Raises DyntelError when the recording cannot be opened."""
    from dyntel.engine.scheduler import Scheduler

    options = options or ReplayOptions()
    source = open_for_replay(path)
    if options.filter and hasattr(source, "want"):
        source.want = make_want(rules.rules)
    if engine is None:
        scheduler = Scheduler(dry_run=options.dry_run, log=options.log)
        engine = Engine(rules, scheduler, explain=options.explain)
    size = _size(path)
    progress = (Progress.for_stream(options.progress, size, label=f"{os.path.basename(path)} ")
                if options.progress is not None else Progress(sys.stderr, None, enabled=False))
    late = [0]
    firings = 0
    first: int | None = None
    last: int | None = None
    explain = on_explain is not None and options.explain is not None
    process = engine.process
    n = 0
    events = source.events()
    try:
        for event in time_ordered(events, options.hold, late):
            fired = process(event)
            t = event.time
            if t is not None:
                if first is None:
                    first = t
                if last is None or t > last:
                    last = t
            if fired:
                progress.close()
                for firing in fired:
                    firings += 1
                    on_firing(firing, source)
            if explain:
                records = engine.take_explanations()
                if records:
                    progress.close()
                    for record in records:
                        on_explain(record, source)  # type: ignore[misc]
            n += 1
            if not n & (PROGRESS_EVERY - 1):
                progress.update(getattr(source, "position", 0), n)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
        progress.close()
    if last is not None:
        for firing in engine.finish(last):
            firings += 1
            on_firing(firing, source)
        if explain:
            for record in engine.take_explanations():
                on_explain(record, source)  # type: ignore[misc]
    return ReplayResult(source.name, source.stats, engine.stats, firings, late[0], first, last, len(rules.rules))


def _size(path: str) -> int | None:
    if path == "-":
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None
