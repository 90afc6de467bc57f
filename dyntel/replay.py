"""Replay: a recording (or JSON lines of EVENTs) through the rules, in event-time order, as the live sidecar would
have seen it.

The pieces, and why each is here:

- The source is told which events the rules can use at all (`want`, from the engine's own candidate index), and
  which field tests a tracepoint's raw payload must pass for some rule to take it (dyntel.engine.prefilter, from
  the requirements the rule compiler derived), so that samples no rule can take are dropped before they are
  decoded: most events of a production recording match no rule, and not decoding them is most of replay's speed.
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
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TextIO, cast

from dyntel.decoders.otlp_metrics import METRICS_EVENT
from dyntel.decoders.otlp_metrics import expand as expand_metrics
from dyntel.engine.engine import Engine
from dyntel.engine.explain import ExplainRecord
from dyntel.engine.prefilter import make_filters
from dyntel.engine.stats import EngineStats
from dyntel.event import Event
from dyntel.firing import Firing
from dyntel.progress import ClearingStream, Progress
from dyntel.rules.model import RuleSet
from dyntel.sources import Source, SourceStats, Want
from dyntel.sources.recordings import open_recording

if TYPE_CHECKING:
    from dyntel.runtime.scheduler import ActionRuntime

DEFAULT_HOLD = 4096
MAX_PENDING = 1 << 20  # events a perf.data replay holds back at most while it waits for a round to close
PROGRESS_EVERY = 4096  # events between progress updates (a power of two: the check is a mask)

_time_of = attrgetter("time")


@dataclass(slots=True)
class ReplayOptions:
    dry_run: bool = False
    explain: str | None = None  # a rule name: keep the engine's explain records for it
    hold: int = DEFAULT_HOLD  # events held back to put them in time order; 0 keeps the source's order
    filter: bool = True  # drop events no rule can match before decoding them
    native: bool = True  # with the C pre-filter where the source has one, and the C EventHeader decoder
    progress: TextIO | None = None  # where a progress bar goes, when it is a terminal
    log: TextIO | None = None  # where the `log` action writes (default: stderr)
    # Builds the action runtime (artifact store, limits, action log) given the log stream; default: a plain one.
    runtime: Callable[[TextIO | None], ActionRuntime] | None = None
    # OTLP forwarding of the events its selection takes (dyntel.forwarding.Forwarder); None: none.
    forwarder: Any = None


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


def time_ordered(events: Iterable[Event], hold: int, late: list[int],
                 rounds: Callable[[], int] | None = None) -> Iterator[Event]:
    """`events` in time order. With `rounds` (a perf.data source's count of FINISHED_ROUNDs read), by perf's own
    rule; otherwise given that no event arrives more than `hold` events late. `late[0]` counts the events that
    arrive after a later one was handed on (they are handed on anyway). Events without a time are handed on where
    they come, after what is held. `hold` 0 keeps the source's order."""
    if hold <= 0:
        yield from events
        return
    if rounds is not None:
        yield from _by_rounds(events, rounds, late)
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


def _by_rounds(events: Iterable[Event], rounds: Callable[[], int], late: list[int]) -> Iterator[Event]:
    """perf's ordering (its ordered_events): once a round has been read, every event up to the latest time seen
    before that round can go, since no later round holds anything older. The source hands over each round's
    events (sorted within the round); the round count changes between rounds. At most MAX_PENDING events are
    held (a round that large is pathological), the oldest going on first."""
    pending: list[Event] = []
    append = pending.append
    current = rounds()
    seen = -1  # the latest time of the events handed over in the rounds before the current one
    newest = -1  # the latest time so far
    floor = -1
    for event in events:
        r = rounds()
        if r != current:
            current = r
            if pending:
                pending.sort(key=_time_of)  # two or more sorted runs: a merge
                cut = bisect_right(pending, seen, key=_time_of)
                if cut:
                    out = pending[:cut]
                    del pending[:cut]
                    floor = _count_late(out, floor, late)
                    yield from out
            seen = newest
        t = event.time
        if t is None:
            if pending:
                pending.sort(key=_time_of)
                floor = _count_late(pending, floor, late)
                yield from pending
                pending.clear()
            yield event
            continue
        if t > newest:
            newest = t
        append(event)
        if len(pending) > MAX_PENDING:
            pending.sort(key=_time_of)
            out = pending[: MAX_PENDING // 2]
            del pending[: MAX_PENDING // 2]
            floor = _count_late(out, floor, late)
            yield from out
    if pending:
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


def _with_metrics(want: Want) -> Want:
    return lambda p, e, lv: e == METRICS_EVENT or want(p, e, lv)


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
    from dyntel.decoders.eventheader import set_native
    from dyntel.runtime.scheduler import ActionRuntime, Scheduler

    options = options or ReplayOptions()
    set_native(options.native)  # EventHeader payloads in C (dyntel._eventheader) unless --no-native
    source = open_for_replay(path)
    forwarder = options.forwarder
    if options.filter:
        want, field_filter = make_filters(rules.rules, options.explain)
        if forwarder is not None:
            # Events only the forward section wants must be decoded whole, not dropped or field-filtered.
            rules_want, rules_fields = want, field_filter
            want = lambda p, e, lv: rules_want(p, e, lv) or forwarder.wants(p, e, lv)  # noqa: E731
            field_filter = lambda p, e: None if forwarder.wants(p, e, None) else rules_fields(p, e)  # noqa: E731
        # otlp_metrics events are decoded whole and let through: their points are named only once decoded.
        want = _with_metrics(want)
        fields_for = field_filter
        field_filter = lambda p, e: None if e == METRICS_EVENT else fields_for(p, e)  # noqa: E731
        if hasattr(source, "want"):
            source.want = want
        if hasattr(source, "field_filter"):
            source.field_filter = field_filter
        if not options.native and hasattr(source, "native_filter"):
            source.native_filter = False
    size = _size(path)
    progress = (Progress.for_stream(options.progress, size, label=f"{os.path.basename(path)} ")
                if options.progress is not None else Progress(sys.stderr, None, enabled=False))
    if engine is None:
        log = options.log
        if log is not None and progress.enabled:
            log = cast(TextIO, ClearingStream(log, progress))
        runtime = (options.runtime(log) if options.runtime is not None
                   else ActionRuntime(dry_run=options.dry_run, log=log))
        engine = Engine(rules, Scheduler(runtime=runtime), explain=options.explain)
    late = [0]
    firings = 0
    first: int | None = None
    last: int | None = None
    explain = on_explain is not None and options.explain is not None
    process = engine.process
    n = 0
    events = source.events()
    try:
        # Each otlp_metrics event becomes its data points (dyntel.decoders.otlp_metrics), in its place.
        ordered = time_ordered(events, options.hold, late, rounds_of(source))
        for event in expand_metrics(ordered, source.stats, position=partial(getattr, source, "position", 0)):
            fired = process(event)
            if forwarder is not None:
                forwarder.offer(event)
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
    # The recording ends with its last event, filtered or not: absences that run out before it fire.
    end: int | None = getattr(source, "end_time", None)
    if last is not None or end is not None:
        for firing in engine.finish(max(t for t in (last, end) if t is not None)):
            firings += 1
            on_firing(firing, source)
        if explain:
            for record in engine.take_explanations():
                on_explain(record, source)  # type: ignore[misc]
    return ReplayResult(source.name, source.stats, engine.stats, firings, late[0], first, last, len(rules.rules))


def rounds_of(source: Source) -> Callable[[], int] | None:
    """What `time_ordered` needs to order a perf.data source's events by perf's rule; None for other sources."""
    if not hasattr(source, "rounds"):
        return None
    get: Callable[[], int] = partial(getattr, source, "rounds")
    return get


def _size(path: str) -> int | None:
    if path == "-":
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None
