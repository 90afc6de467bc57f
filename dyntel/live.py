"""`dyntel run`: the live sidecar loop. Rules decide what to listen to; the engine sees events as they happen.

What to open comes from the rules' `match` (and `--events` patterns): a provider that is a tracefs system
(`sched`, `raw_syscalls`) opens `system:event`; any other provider is an EventHeader user_events provider and opens
`user_events:<provider>_L*` (the EventHeader naming convention, `Provider_L<level>K<keyword>...`), which also
picks up producers that register later. Rule files are watched: a reload replaces the rules between two events and
keeps the state of unchanged rules.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from dyntel.decoders.otlp_metrics import METRIC_PROVIDER, METRICS_EVENT
from dyntel.decoders.otlp_metrics import expand as expand_metrics
from dyntel.engine.engine import Engine
from dyntel.firing import Firing
from dyntel.rules.model import CompiledRule, RuleSet

if TYPE_CHECKING:
    from dyntel.forwarding import Forwarder
    from dyntel.runtime.pool import PooledScheduler
    from dyntel.runtime.scheduler import ActionRuntime

SWITCH_INTERVAL = 0.001


@dataclass(slots=True)
class RunOptions:
    events: Sequence[str] = ()  # extra tracepoint patterns, "system:event" globs
    dry_run: bool = False
    duration: float | None = None  # seconds; None runs until SIGINT/SIGTERM
    callchain: bool = False
    # sources.latency and sources.max_wait (seconds; None: the mode's default): see dyntel.sources.perf.live.
    latency: str = "low"
    max_wait: float | None = None
    reload: bool = True
    log: TextIO | None = None
    # EventHeader tracepoint names (Provider_L5K1...) to register before listening, held until the run ends, so
    # that they are enabled before their producers start and a producer's first events are not missed.
    register: Sequence[str] = ()
    # How actions run: artifact store, limits, action log (default: a plain runtime), on this many workers with
    # this many firings waiting at most.
    runtime: ActionRuntime | None = None
    action_workers: int = 2
    action_queue: int = 64
    # The flight recorder's cap (bytes, all providers) for `record` actions.
    record_memory: int = 64 << 20
    # HOST:PORT of /metrics, /healthz, /readyz, /status (None: no endpoint).
    metrics_listen: str | None = None
    # An OTLP/HTTP endpoint dyntel's own metrics are pushed to every metrics_interval seconds (None: none).
    metrics_otlp: str | None = None
    metrics_interval: float = 30.0
    # OTLP forwarding of selected events (the config's `forward:` section, dyntel.forwarding); None: none.
    forwarder: Any = None
    # Load rule files others could have written (with a warning) instead of refusing them (--insecure-rules).
    insecure_rules: bool = False
    # Windows: the name of dyntel's ETW session ("dyntel-" is prefixed); two dyntels on a host need two names.
    etw_session: str = "dyntel-live"


def with_metrics(want: Any) -> Any:
    """A source's pre-decode filter that also lets the otlp_metrics tracepoint's events through: which rules take
    their points is known only once they are decoded (the points are named after their metrics). They are few (one
    per data point per export interval), so letting them all through costs little."""
    return lambda p, e, lv: e == METRICS_EVENT or want(p, e, lv)


def _metrics_reporter(options: RunOptions) -> Callable[[str], None]:
    def report(message: str) -> None:
        print(f"dyntel run: bad otlp_metrics event: {message}", file=options.log or sys.stderr)

    return report


def pattern_for(provider: str, event: str | None, level: int | None, systems: Iterable[str]) -> str:
    """The tracepoint pattern that opens a provider's events: `system:event` for a tracefs system, else the
    EventHeader user_events tracepoints of the provider."""
    if provider == METRIC_PROVIDER:
        # Metric points come out of the metrics exporters' one plain tracepoint (dyntel.decoders.otlp_metrics).
        return f"user_events:{METRICS_EVENT}"
    if provider in systems and provider != "user_events":
        return f"{provider}:{event or '*'}"
    if level is not None and level <= 9:
        # A level ceiling opens only the levels it takes (`_L0K..` to `_L<level>K..`), so that more verbose
        # tracepoints stay off (their producers skip writing) until an `enable` action asks for them.
        return f"user_events:{provider}_L[0-{level}]K*"
    return f"user_events:{provider}_L*"


def patterns_for(rules: Iterable[CompiledRule], systems: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The tracepoint patterns the rules can match, given the tracefs systems this kernel has."""
    known = set(systems)
    out: list[str] = list(extra)
    for rule in rules:
        if rule.match.provider is None:
            continue  # matches whatever else is opened; it cannot name what to open
        pattern = pattern_for(rule.match.provider, rule.match.event, rule.match.level, known)
        if pattern not in out:
            out.append(pattern)
    return out


@dataclass(slots=True)
class RunResult:
    firings: int
    summary: str  # the exit summary for people: source counts, rule errors, queues and their drops, deliveries


def run_live(rules: RuleSet, rule_paths: Sequence[str], on_firing: Callable[[Firing], None],
             options: RunOptions) -> RunResult:
    """Listen until the duration ends or a signal asks to stop. Returns the number of firings and the summary."""
    from dyntel.actions.recorder import FlightRecorder
    from dyntel.engine.reload import RuleReloader
    from dyntel.runtime.pool import PooledScheduler
    from dyntel.runtime.scheduler import ActionRuntime

    runtime = options.runtime or ActionRuntime(dry_run=options.dry_run, log=options.log or sys.stderr)
    queues = runtime.context.queues  # every queue of the run registers here (dyntel.queues)
    forwarder = options.forwarder
    if forwarder is not None:
        # Made with this registry, or without one (a caller's own): registering the same counts again changes nothing.
        queues.register(forwarder.counts)
    live = (_open_etw if sys.platform == "win32" else _open_perf)(rules, options, runtime.context.log, queues)
    source = live.source

    _set_filters(source, rules.rules, forwarder)
    printing = threading.Lock()

    def done(firing: Firing) -> None:
        # Called from the action workers once a firing's actions have their outcomes (at once when it has none).
        with printing:
            on_firing(firing)

    # Services of the enable and record actions. Both live on this (the engine's) thread: the enabler's requests
    # from the action workers are applied by `enabler.poll()` below, between events and when idle.
    enabler = live.enabler
    recorder = FlightRecorder(max_bytes=options.record_memory, queues=queues)
    runtime.context.services = {**runtime.context.services, "enabler": enabler, "recorder": recorder}
    scheduler = PooledScheduler(runtime, workers=options.action_workers, queue_size=options.action_queue,
                                on_done=done)
    engine = Engine(rules, scheduler, recorder=recorder)
    reloader = RuleReloader(list(rule_paths), engine, rules, loader=_trusted_loader(options)) \
        if options.reload else None
    observe = _observe(options, source, engine, runtime, scheduler, reloader, queues)

    stop = threading.Event()

    stopped = False  # read once an event: a plain local is cheaper than stop.is_set()

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopped
        stopped = True
        stop.set()
        source.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    old_switch = sys.getswitchinterval()
    timer: threading.Timer | None = None
    if options.duration is not None:
        timer = threading.Timer(options.duration, lambda: on_signal(0, None))
        timer.daemon = True
        timer.start()
    fired = 0
    delivery: list[str] = []

    def check_reload() -> None:
        if reloader is None or not reloader.pending():
            return
        # New rules may name providers nothing listens to yet, and want events the filter drops.
        current = engine.rules
        _set_filters(source, current, forwarder)
        live.open_for(current)

    def on_idle() -> None:
        # No events: absence timers still run out on the wall clock, and a reload still takes effect.
        nonlocal fired
        if observe is not None:
            observe.health.beat()
        check_reload()
        if enabler.armed:
            enabler.poll()
        fired += len(engine.advance(time.time_ns()))

    source.on_idle = on_idle
    try:
        if reloader is not None:
            reloader.start()
        source.open()
        if observe is not None:
            observe.health.ready = True
        # Rules, compiled code and decoders live as long as the run: keep the collector from scanning them again on
        # every collection (a drain cost about 30% less per event with collection out of the way).
        gc.freeze()
        # A worker that wakes for an action (a dump, stacks) waits for the engine's thread to let go of the GIL: at
        # most the switch interval, 5 ms by default, on each hand-over. 1 ms keeps that off the action's latency.
        sys.setswitchinterval(SWITCH_INTERVAL)
        for warning in source.warnings:
            print(f"dyntel run: {warning}", file=options.log or sys.stderr)
        # otlp_metrics events become one event per metric data point (dyntel.decoders.otlp_metrics).
        for event in expand_metrics(source.events(), source.stats, report=_metrics_reporter(options)):
            if reloader is not None:
                check_reload()
            if enabler.armed:  # an enable waits to be applied, or is live and will expire
                enabler.poll()
            fired += len(engine.process(event))
            if forwarder is not None:
                forwarder.offer(event)
            if stopped:
                break
        fired += len(engine.finish(time.time_ns()))
    finally:
        if observe is not None:
            observe.health.stopped = True
        delivery = _wind_down(enabler, scheduler, forwarder)
        if timer is not None:
            timer.cancel()
        if reloader is not None:
            reloader.stop()
        live.close()
        for s, handler in old.items():
            signal.signal(s, handler)
        sys.setswitchinterval(old_switch)
        if observe is not None:
            observe.close()
    from dyntel.service.summary import exit_summary

    summary = exit_summary(f"dyntel run: {fired} firing(s)", source_stats=source.stats, engine=engine.stats,
                           queues=queues, delivery=delivery)
    return RunResult(fired, summary)


def _set_filters(source: Any, rules: Sequence[CompiledRule], forwarder: Forwarder | None) -> None:
    """What the source may skip before decoding: what no rule can take (dyntel.engine.prefilter) and the forwarder
    does not want either; the rules' raw field tests go to the native pre-filter where the source has one (what the
    forwarder takes is kept whole). At the start and after each reload."""
    from dyntel.engine.prefilter import make_field_filter, make_want

    rules_want = with_metrics(make_want(rules))
    rules_fields = make_field_filter(rules)
    if forwarder is None:
        source.want = rules_want
        field_filter: Any = rules_fields
    else:
        source.want = lambda p, e, lv: rules_want(p, e, lv) or forwarder.wants(p, e, lv)
        field_filter = lambda p, e: None if forwarder.wants(p, e, None) else rules_fields(p, e)  # noqa: E731
    if hasattr(source, "field_filter"):
        source.field_filter = field_filter


def _wind_down(enabler: Any, scheduler: PooledScheduler, forwarder: Forwarder | None) -> list[str]:
    """The end of a run, in the order that loses nothing: what enable actions turned on goes off first (enables
    still queued are refused, "dyntel is stopping"); queued actions still run, each bounded by its own timeout,
    before the sources' resources go; then what waits for a collector is sent (or stays in the spool for the next
    start). Returns the delivery lines for the exit summary."""
    from dyntel.actions import deliver_queued

    enabler.close()
    scheduler.close()
    if forwarder is not None:
        forwarder.close(timeout=5.0)  # what it sent and dropped is its queue's counts, in the summary
    return deliver_queued(timeout=5.0)


def _trusted_loader(options: RunOptions) -> Callable[[Sequence[str]], RuleSet]:
    """Reloads check the files as the start did: a rule file made writable by others since is refused (the
    running rules stay, the reload counts as failed with the reason)."""
    from dyntel.rules.loader import load_rules
    from dyntel.rules.trust import check_rule_files

    def load(paths: Sequence[str]) -> RuleSet:
        check_rule_files(paths, refuse=not options.insecure_rules, log=options.log, command="dyntel run")
        return load_rules(paths)

    return load


@dataclass(slots=True)
class _Live:
    """The platform's live source, its `enable` service, how to open what reloaded rules name, how to close."""

    source: Any
    enabler: Any
    open_for: Callable[[Sequence[CompiledRule]], None]
    close: Callable[[], None]


def _open_perf(rules: RuleSet, options: RunOptions, log: Callable[[str], None], queues: Any = None) -> _Live:
    """Linux: tracepoints and user_events through perf ring buffers."""
    from dyntel.sources.enabler import PerfEnabler
    from dyntel.sources.perf.live import PerfLiveSource
    from dyntel.sources.perf.tracefs import find_tracefs

    tracefs = find_tracefs()
    registration = None
    if options.register:
        from dyntel.sources.perf.user_events import Registration

        registration = Registration(options.register)
        # A pre-registered name is a user_events tracepoint like any other: listen to it by its exact name.
        options.events = [*options.events, *(f"user_events:{n}" for n in options.register)]
    systems = [d for d in os.listdir(os.path.join(str(tracefs.path), "events"))
               if os.path.isdir(os.path.join(str(tracefs.path), "events", d))]
    patterns = patterns_for(rules.rules, systems, options.events)
    if options.forwarder is not None:
        # What the forward section selects by provider is opened like what rules name.
        for sel in options.forwarder.config.select:
            if sel.provider is not None:
                pattern = pattern_for(sel.provider, sel.event, None, systems)
                if pattern not in patterns:
                    patterns.append(pattern)
    if not patterns:
        raise SystemExit("dyntel run: the rules name no provider to listen to; give --events system:event")
    source = PerfLiveSource(patterns, tracefs=tracefs, callchain=options.callchain, latency=options.latency,
                            max_wait=options.max_wait)
    if queues is not None:
        _count_perf_rings(queues, source)
    opened = set(patterns)

    def open_for(current: Sequence[CompiledRule]) -> None:
        for pattern in patterns_for(current, systems):
            if pattern not in opened:
                opened.add(pattern)
                source.add(pattern)

    def close() -> None:
        source.close()
        if registration is not None:
            registration.close()

    return _Live(source, PerfEnabler(source, tracefs, log=log), open_for, close)


def etw_providers_for(rules: Iterable[CompiledRule], extra: Iterable[str] = ()) -> list[str]:
    """The ETW providers the rules name (TraceLogging names or GUIDs), plus `extra`, each once, in order."""
    out = list(dict.fromkeys(extra))
    for rule in rules:
        if rule.match.provider is not None and rule.match.provider not in out:
            out.append(rule.match.provider)
    return out


def _open_etw(rules: RuleSet, options: RunOptions, log: Callable[[str], None], queues: Any = None) -> _Live:
    """Windows: a real-time ETW session of dyntel's own (dyntel.sources.etw.live). `--events` names extra
    providers; `--callchain` asks ETW for stacks. Not exercised on a Windows host yet (docs/etw.md)."""
    from dyntel.sources.etw.live import EtwEnabler, EtwLiveSource, provider

    forwarded = [sel.provider for sel in options.forwarder.config.select if sel.provider] \
        if options.forwarder is not None else []
    names = etw_providers_for(rules.rules, [*options.events, *forwarded])
    if not names:
        raise SystemExit("dyntel run: the rules name no provider to listen to; give --events PROVIDER")
    source = EtwLiveSource([provider(n, stack=options.callchain) for n in names], session=options.etw_session,
                           queues=queues)
    opened = set(names)

    def open_for(current: Sequence[CompiledRule]) -> None:
        for name in etw_providers_for(current):
            if name not in opened:
                opened.add(name)
                source.add(provider(name, stack=options.callchain))

    return _Live(source, EtwEnabler(source, log=log), open_for, source.close)


def _count_perf_rings(queues: Any, source: Any) -> None:
    """The perf rings as a queue (dyntel.queues): records in (read, plus what the kernel lost), out (read),
    dropped (the kernel's LOST counts: a full ring), capacity in bytes over all CPUs. Copied from the source's
    own counters when read: the ring reader pays nothing for it."""
    from dyntel.queues import QueueCounts

    def refresh(counts: QueueCounts) -> None:
        st = source.stats
        counts.out = st.records - st.skipped.get("LOST", 0)  # a LOST record is the kernel's note, not an item
        counts.dropped[KERNEL_LOST] = st.lost
        counts.put = counts.out + st.lost
        if source.ring_pages and source.cpus:
            counts.capacity = source.ring_pages * os.sysconf("SC_PAGE_SIZE") * len(source.cpus)

    queues.add("perf rings", kind="perf", unit="records", size_unit="bytes", refresh=refresh)


KERNEL_LOST = "kernel: ring full"


def _observe(options: RunOptions, source: Any, engine: Engine, runtime: ActionRuntime, scheduler: Any,
             reloader: Any, queues: Any) -> Any:
    """The metrics and health endpoint, when asked for. Health counts the engine's events as progress, so the
    loop pays nothing per event for being watched: a busy loop is alive because its count moves, an idle one
    because on_idle beats."""
    if not options.metrics_listen and not options.metrics_otlp:
        return None
    from dyntel.service.http_server import Health
    from dyntel.service.metrics import Observed, registry_for

    observed = Observed(source_stats=source.stats, engine=engine, runtime=runtime, reloader=reloader,
                        queue_depth=scheduler.pending, queue_dropped=lambda: scheduler.dropped, queues=queues,
                        extra={"otlp_spool_depth": ("alerts waiting in the OTLP spools (all collectors)",
                                                    lambda: queues.size_of_kind("spool"))})
    health = Health(progress=lambda: engine.stats.events)
    health.reason_not_ready = "starting: opening the tracepoints"
    return _Observing(registry_for(observed), health, engine, options, queues)


class _Observing:
    """The metrics endpoint and the OTLP metrics pusher of one run, whichever were asked for."""

    def __init__(self, registry: Any, health: Any, engine: Engine, options: RunOptions, queues: Any) -> None:
        from dyntel.engine.status import rule_statuses
        from dyntel.service.http_server import ObserveServer
        from dyntel.service.metrics_otlp import OtlpMetricsPusher

        self.health = health
        self.server: ObserveServer | None = None
        self.pusher: OtlpMetricsPusher | None = None
        log = options.log or sys.stderr
        if options.metrics_listen:
            self.server = ObserveServer(options.metrics_listen, registry, health,
                                        status=lambda: [s.to_json() for s in rule_statuses(engine)],
                                        queues=queues.to_json)
            print(f"dyntel run: metrics and health on http://{self.server.address}/ (metrics, healthz, readyz, "
                  "status)", file=log)
            self.server.start()
        if options.metrics_otlp:
            self.pusher = OtlpMetricsPusher(registry, options.metrics_otlp, options.metrics_interval).start()
            print(f"dyntel run: own metrics pushed to {self.pusher.url} every {options.metrics_interval:g}s",
                  file=log)

    def close(self) -> None:
        if self.pusher is not None:
            self.pusher.close()
        if self.server is not None:
            self.server.close()
