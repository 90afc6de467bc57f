"""dyntel's own metrics, read at scrape time from the counters the loop already keeps.

Nothing here runs per event: sources, the engine, the action runtime and the reloader count as they go (plain ints),
and a scrape turns those counts into Prometheus families (prometheus-client's Collector interface, so the same
registry serves /metrics and the text a replay writes with `--metrics FILE`). A part that is not there (no reloader
in a replay, no spool without OTLP) simply yields no family.

Families (all prefixed `dyntel_`):
- events_read_total (records read by the source), events_decoded_total (events handed on),
  events_dropped_total{reason} (records not turned into events: filtered, malformed, unknown record kinds, ...),
  events_malformed_total{reason} (malformed records by a short fixed reason: "payload", "not EventHeader: flags",
  ...; also the user_events samples shown as plain fields because they were not EventHeader),
  events_lost_total (samples the kernel dropped for a full ring);
- engine_events_total, rule_candidates_total{rule}, rule_matches_total{rule}, rule_firings_total{rule},
  rule_suppressed_total{rule,reason=cooldown|limit}, rule_errors_total{rule}, rules_loaded;
- action_outcomes_total{type,status}, action_seconds_total{type}, action_queue_depth, action_queue_dropped_total;
- artifacts_bytes{dir}, artifacts_deleted_total{dir}, artifacts_skipped_quota_total{dir};
- reloads_total, reload_failures_total; and any gauge registered with `extra` (`otlp_spool_depth`: alerts
  waiting in the OTLP spools, which `dyntel run` registers);
- every queue and buffer of the run (dyntel.queues: the action pool, forwarding, the alert senders and spools,
  the flight recorder, the live ETW queue, the perf rings), labelled `queue` (its name) and `kind`:
  queue_in_total, queue_out_total, queue_dropped_total{reason}, queue_size and queue_capacity (with `unit`:
  bytes for the flight recorder and the perf rings, else the items they count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from dyntel.engine.engine import Engine
    from dyntel.engine.reload import RuleReloader
    from dyntel.engine.stats import EngineStats
    from dyntel.queues import QueueRegistry
    from dyntel.runtime.scheduler import ActionRuntime
    from dyntel.sources import SourceStats
@dataclass(slots=True)
class Observed:
    """What the metrics read; set the parts as the run creates them."""

    source_stats: SourceStats | None = None  # the source's counters (the object the source keeps updating)
    engine: Engine | None = None
    engine_stats: EngineStats | None = None  # when there is no engine left to ask (after a replay)
    runtime: ActionRuntime | None = None
    reloader: RuleReloader | None = None
    queue_depth: Callable[[], int] | None = None
    queue_dropped: Callable[[], int] | None = None
    # name -> (help, read): gauges other parts add (the spool's depth, a forwarder's backlog)
    extra: dict[str, tuple[str, Callable[[], float]]] = field(default_factory=dict)
    queues: QueueRegistry | None = None  # the run's queues and buffers (dyntel.queues)


def _counter(name: str, doc: str, value: float | None = None, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(f"dyntel_{name}", doc, value=value, labels=list(labels) or None)


def _source_families(st: SourceStats) -> Iterator[Metric]:
    yield _counter("events_read", "records read by the source", st.records)
    yield _counter("events_decoded", "events the source handed to the engine", st.events)
    dropped = _counter("events_dropped", "records not turned into events, by reason", labels=["reason"])
    for reason, n in sorted(st.skipped.items()):
        if reason != "LOST":  # a LOST record is the kernel's count of samples lost: events_lost_total
            dropped.add_metric([reason], n)
    dropped.add_metric(["malformed"], st.bad)
    yield dropped
    malformed = _counter("events_malformed", "malformed records by reason (also those shown as plain tracefs "
                         "fields because they were not EventHeader)", labels=["reason"])
    for reason, n in sorted(getattr(st, "bad_by_reason", {}).items()):
        malformed.add_metric([reason], n)
    yield malformed
    lost = getattr(st, "lost", None)
    if isinstance(lost, int):
        yield _counter("events_lost", "samples the kernel dropped for a full ring buffer", lost)


def _engine_families(stats: EngineStats, rules_loaded: int | None) -> Iterator[Metric]:
    yield _counter("engine_events", "events the engine evaluated", stats.events)
    families = {name: _counter(name, doc, labels=["rule"]) for name, doc in (
        ("rule_candidates", "events that met the rule's match pre-filter"),
        ("rule_matches", "events whose condition held"),
        ("rule_firings", "firings handed to the actions"),
        ("rule_errors", "events on which the rule's code raised"))}
    suppressed = _counter("rule_suppressed", "firings held back, by cooldown or limit", labels=["rule", "reason"])
    for rule, s in sorted(stats.rules.items()):
        families["rule_candidates"].add_metric([rule], s.candidates)
        families["rule_matches"].add_metric([rule], s.matched)
        families["rule_firings"].add_metric([rule], s.fired)
        families["rule_errors"].add_metric([rule], s.errors)
        suppressed.add_metric([rule, "cooldown"], s.suppressed_cooldown)
        suppressed.add_metric([rule, "limit"], s.suppressed_limit)
    yield from families.values()
    yield suppressed
    if rules_loaded is not None:
        yield GaugeMetricFamily("dyntel_rules_loaded", "rules in the running set", value=rules_loaded)


def _runtime_families(runtime: ActionRuntime) -> Iterator[Metric]:
    outcomes = _counter("action_outcomes", "actions by type and outcome", labels=["type", "status"])
    for (kind, status), n in sorted(dict(runtime.outcomes).items()):
        outcomes.add_metric([kind, status], n)
    yield outcomes
    seconds = _counter("action_seconds", "time spent running actions, by type", labels=["type"])
    for kind, s in sorted(dict(runtime.seconds).items()):
        seconds.add_metric([kind], s)
    yield seconds
    used = GaugeMetricFamily("dyntel_artifacts_bytes", "bytes of artifacts in a directory", labels=["dir"])
    deleted = _counter("artifacts_deleted", "artifacts deleted by retention", labels=["dir"])
    quota = _counter("artifacts_skipped_quota", "captures skipped for a full quota", labels=["dir"])
    for store in runtime.context.artifacts.all():
        d = str(store.directory)
        used.add_metric([d], store.used())
        deleted.add_metric([d], store.stats.deleted)
        quota.add_metric([d], store.stats.skipped_quota)
    yield from (used, deleted, quota)


def _queue_families(queues: QueueRegistry) -> Iterator[Metric]:
    put = _counter("queue_in", "items offered to a queue or buffer", labels=["queue", "kind"])
    out = _counter("queue_out", "items that left a queue for the next stage (sent, run, handed on, spooled)",
                   labels=["queue", "kind"])
    dropped = _counter("queue_dropped", "items a queue or buffer dropped, by reason",
                       labels=["queue", "kind", "reason"])
    size = GaugeMetricFamily("dyntel_queue_size", "what a queue or buffer holds now", labels=["queue", "kind", "unit"])
    capacity = GaugeMetricFamily("dyntel_queue_capacity", "the most a queue or buffer holds",
                                 labels=["queue", "kind", "unit"])
    for q in queues.to_json():
        labels = [q["name"], q["kind"]]
        put.add_metric(labels, q["in"])
        out.add_metric(labels, q["out"])
        for reason, n in q["dropped"].items():
            dropped.add_metric([*labels, reason], n)
        if q["size"] is not None:
            size.add_metric([*labels, q["size_unit"]], q["size"])
        if q["capacity"] is not None:
            capacity.add_metric([*labels, q["size_unit"]], q["capacity"])
    yield from (put, out, dropped, size, capacity)


class DyntelCollector(Collector):
    def __init__(self, observed: Observed) -> None:
        self.observed = observed

    def collect(self) -> Iterator[Metric]:
        o = self.observed
        if o.source_stats is not None:
            yield from _source_families(o.source_stats)
        if o.engine is not None:
            yield from _engine_families(o.engine.stats, len(o.engine.rules))
        elif o.engine_stats is not None:
            yield from _engine_families(o.engine_stats, None)
        if o.runtime is not None:
            yield from _runtime_families(o.runtime)
        if o.queue_depth is not None:
            yield GaugeMetricFamily("dyntel_action_queue_depth", "firings waiting for an action worker",
                                    value=o.queue_depth())
        if o.queue_dropped is not None:
            yield _counter("action_queue_dropped", "firings whose actions were skipped: queue full or shutdown",
                           o.queue_dropped())
        if o.reloader is not None:
            yield _counter("reloads", "rule sets swapped in by a reload", o.reloader.stats.reloads)
            yield _counter("reload_failures", "reloads that failed (the running rules stayed)",
                           o.reloader.stats.failures)
        if o.queues is not None:
            yield from _queue_families(o.queues)
        for name, (doc, read) in sorted(o.extra.items()):
            yield GaugeMetricFamily(f"dyntel_{name}", doc, value=read())


def registry_for(observed: Observed) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DyntelCollector(observed))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(registry)


def values(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}: for tests and the OTLP metrics export."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


