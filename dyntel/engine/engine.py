"""The rule engine: each event through the index, the candidates' conditions, their windows, cooldowns and limits,
to firings handed to the scheduler.

Per event the engine does one index lookup (provider, event name, level) and then works only on the rules the
index returns; a rule with no window fires on its condition alone. Time is event time throughout: the engine's
clock is the latest event time seen (an event with an earlier time, or none, is handled at the clock's time), so
a replay gives the same firings at any speed and nothing reads the wall clock. Absence timers run when the clock
reaches them (on an event, on `advance(now_ns)` from a live loop's timer, or on `finish(end_ns)` at the end of a
replay).

Cooldown (`cooldown:`) is per (rule, group): after a firing, the same group does not fire again until the
cooldown has passed. The limit (`limit: {actions: N, per: D}`) is per rule over a sliding D: at most N firings in
any D, whatever the group. A firing held back by either is counted in the stats and shown by explain; it does not
start a cooldown or use up the limit. Cooldowns are kept for at most `max_groups` groups per rule, like windows.

A rule whose compiled code raises on an event skips that event; the error is counted in its stats (`errors`,
`last_error`) and the other rules still see the event.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from dyntel.actions.recorder import FlightRecorder, keep_for
from dyntel.actions.spec import ActionSpec
from dyntel.engine.explain import CONDITION, COOLDOWN, ERROR, FIRED, LIMIT, WINDOW, ExplainRecord
from dyntel.engine.groups import GroupKey
from dyntel.engine.stats import EngineStats, RuleStats
from dyntel.engine.windows import (
    DEFAULT_MAX_GROUPS,
    DEFAULT_VALUES_CAP,
    NEVER,
    AbsenceState,
    Hit,
    WindowState,
    new_window_state,
)
from dyntel.event import Event
from dyntel.firing import Firing
from dyntel.formatting import format_duration, format_time
from dyntel.rules.index import RuleIndex
from dyntel.rules.model import CompiledRule, Limit, RuleSet
from dyntel.rules.requirements import for_explain


class ActionScheduler(Protocol):
    """Where the engine hands its firings: the action runtime (dyntel.runtime) implements it, and the engine
    knows nothing more of it, so the engine does not import the layer above it."""

    def submit(self, firing: Firing, actions: Sequence[ActionSpec]) -> None: ...

    def close(self) -> None: ...


class CandidateIndex(Protocol):
    def candidates(self, provider: str, event: str, level: int | None) -> Sequence[CompiledRule]: ...


IndexFactory = Callable[[Sequence[CompiledRule]], CandidateIndex]

# Expired groups and cooldowns are swept this often (event time); the group cap bounds memory in between.
HOUSEKEEPING_NS = 60 * 1_000_000_000

_NO_GROUP: dict[str, Any] = {}
_NO_FIRINGS: list[Firing] = []  # what process() returns when nothing fired; callers must not append to it


def default_index(rules: Sequence[CompiledRule]) -> CandidateIndex:
    """The rules' candidate index: each rule under what its compiled rule requires (dyntel.rules.index)."""
    return RuleIndex(list(rules))


class _RuleState:
    """One rule's live state: its window, cooldowns and recent firing times. Survives a reload that leaves the
    rule's fingerprint unchanged."""

    __slots__ = ("cooldowns", "explain", "fire_times", "rule", "stats", "timed", "window")

    def __init__(self, rule: CompiledRule, stats: RuleStats, max_groups: int, values_cap: int) -> None:
        self.rule = rule
        self.stats = stats
        self.window: WindowState | None = (
            new_window_state(rule.window, max_groups, stats, values_cap) if rule.window is not None else None)
        self.timed = isinstance(self.window, AbsenceState)
        self.cooldowns: OrderedDict[GroupKey, int] = OrderedDict()  # group -> end of its cooldown
        self.fire_times: deque[int] = deque()  # firings inside the limit's `per`
        self.explain = False


class _Active:
    """Everything `process` reads that a reload replaces, swapped in as one attribute."""

    __slots__ = ("by_name", "index", "plans", "states", "timed", "windowed")

    def __init__(self, index: CandidateIndex, states: dict[CompiledRule, _RuleState]) -> None:
        self.index = index
        self.states = states
        self.by_name = {st.rule.name: st for st in states.values()}
        self.timed = tuple(st for st in states.values() if st.timed)
        self.windowed = tuple(st for st in states.values() if st.window is not None or st.rule.cooldown_ns)
        # (provider, event, level) -> [the index's candidates, their steps (None when one of them is explained),
        # events since the candidates were last counted into the rules' stats]
        self.plans: dict[tuple[str, str, int | None], list[Any]] = {}

    def plan(self, key: tuple[str, str, int | None], lock: AbstractContextManager[Any]) -> list[Any]:
        cands = self.index.candidates(*key)
        sts = [self.states[rule] for rule in cands]
        steps = None if any(st.explain for st in sts) else tuple((st.rule.predicate, st, st.stats) for st in sts)
        if len(self.plans) >= _MAX_PLANS:
            self.fold(lock)
            self.plans.clear()
        entry = self.plans[key] = [cands, steps, 0]
        return entry

    def fold(self, lock: AbstractContextManager[Any]) -> None:
        """Add the plans' pending candidate counts to the rules' stats (the engine's thread; `lock` keeps a reader
        of the stats from seeing a count in both places or in neither)."""
        with lock:
            for entry in self.plans.values():
                if entry[1] is not None and entry[2]:
                    for _, _, stats in entry[1]:
                        stats.candidates += entry[2]
                    entry[2] = 0

    def pending(self) -> dict[str, int]:
        """Candidates counted in the plans and not yet in the rules' stats, by rule name (any thread, under the
        engine's stats lock)."""
        out: dict[str, int] = {}
        for entry in list(self.plans.values()):
            n = entry[2]
            if n and entry[1] is not None:
                for _, st, _ in entry[1]:
                    out[st.rule.name] = out.get(st.rule.name, 0) + n
        return out


_MAX_PLANS = 65536  # distinct (provider, event, level) remembered before starting over, as the index does


class Engine:
    def __init__(self, rules: RuleSet, scheduler: ActionScheduler | None, *, max_groups: int = DEFAULT_MAX_GROUPS,
                 values_cap: int = DEFAULT_VALUES_CAP, explain: str | None = None,
                 index: IndexFactory | None = None, recorder: FlightRecorder | None = None) -> None:
        """`scheduler` None: firings are returned with no actions run (benchmarks, tests).
        `explain`: the name of a rule to explain; its records collect in `explanations`.
        `index`: builds the candidate index from the rules (default: dyntel.rules.index.RuleIndex).
        `recorder`: the flight recorder `record` actions read; fed only while a loaded rule has one."""
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        self._scheduler = scheduler
        self._max_groups = max_groups
        self._values_cap = values_cap
        self._index_factory = index or default_index
        self._explain_name = explain
        self.explanations: list[ExplainRecord] = []
        self._rule_stats: dict[str, RuleStats] = {}
        self._now = 0
        self._events = 0
        self._candidates = 0
        self._next_deadline = NEVER
        self._next_sweep = 0
        self._recorder = recorder
        self._tap: Callable[[Event], None] | None = None
        # Held while candidate counts move from the plans to the rules' stats, and while a reader adds them up.
        self._stats_lock = threading.Lock()
        self._active = self._build(rules, {})
        self._set_tap(rules.rules)
        if explain is not None and explain not in self._active.by_name:
            raise KeyError(f"no rule named {explain!r}")

    # -- rules ------------------------------------------------------------------------------------------------

    def _build(self, rules: RuleSet, previous: dict[str, _RuleState]) -> _Active:
        states: dict[CompiledRule, _RuleState] = {}
        seen: set[str] = set()
        for rule in rules.rules:
            if rule.name == self._explain_name:
                rule = for_explain(rule)  # a candidate for every event its `match` takes, so each can be explained
            if rule.name in seen:
                raise ValueError(f"two rules named {rule.name!r}")
            seen.add(rule.name)
            stats = self._rule_stats.setdefault(rule.name, RuleStats())
            old = previous.get(rule.name)
            st = _RuleState(rule, stats, self._max_groups, self._values_cap)
            # An empty fingerprint says nothing about the rule, so its state is never carried over.
            if old is not None and rule.fingerprint and old.rule.fingerprint == rule.fingerprint:
                if old.window is not None and rule.window is not None:
                    old.window.rebind(rule.window)
                    st.window = old.window
                st.cooldowns = old.cooldowns
                st.fire_times = old.fire_times
            st.explain = rule.name == self._explain_name
            states[rule] = st
        return _Active(self._index_factory(list(states)), states)

    def replace_rules(self, new: RuleSet) -> None:
        """Swap in a new rule set between two events. Rules whose name and fingerprint are unchanged keep their
        window, cooldown and limit state; changed and new rules start empty; removed rules' state is dropped.
        Stats are kept by rule name. Raises (and keeps the running set) when the new set is unusable."""
        active = self._build(new, self._active.by_name)
        with self._stats_lock:
            self._active.fold(nullcontext())
            self._active = active
        self._set_tap(new.rules)
        self._next_deadline = min((st.window.next_deadline() for st in active.timed
                                   if isinstance(st.window, AbsenceState)), default=NEVER)

    def _set_tap(self, rules: Sequence[CompiledRule]) -> None:
        """Feed the flight recorder only while some rule has a `record` action, for as long as the longest asks."""
        keep = keep_for(rules) if self._recorder is not None else None
        if self._recorder is None or keep is None:
            self._tap = None
            return
        self._recorder.keep_ns = keep
        self._tap = self._recorder.append

    @property
    def rules(self) -> list[CompiledRule]:
        return [st.rule for st in self._active.states.values()]

    # -- events -----------------------------------------------------------------------------------------------

    def process(self, event: Event) -> list[Firing]:
        active = self._active
        self._events += 1
        t = event.time
        if t is None or t < self._now:
            t = self._now
        else:
            self._now = t
        # The flight recorder's hook: one deque append per event, and only while a loaded rule has `record`.
        tap = self._tap
        if tap is not None:
            tap(event)
        # Most events fire nothing: they all get the one empty list, never appended to (a list is made for the
        # first firing), instead of a new one each.
        out: list[Firing] = _NO_FIRINGS
        if t >= self._next_deadline:
            out = []
            self._run_timers(active, t, out)
        if t >= self._next_sweep:
            self._sweep(active, t)
        # The candidates' (predicate, state, stats) for this (provider, event, level), made once from the index's
        # answer (which depends on nothing else): per event this saves the index's call, and per candidate a
        # dict lookup, two attribute reads and a test.
        key = (event.provider, event.name, event.level)
        plan = active.plans.get(key)
        if plan is None:
            plan = active.plan(key, self._stats_lock)
        cands, steps, _ = plan
        if not cands:
            return out
        self._candidates += len(cands)
        if steps is None:  # a rule being explained is among them
            return self._process_explained(active, cands, event, t, out)
        # Each of these rules had one more candidate: counted once for them all here, and added to each rule's
        # RuleStats.candidates when the stats are read (Engine.stats) or the plan goes (_Active.fold).
        plan[2] += 1
        for predicate, st, stats in steps:
            # _evaluate's steps, inline: this loop runs for every candidate of every event.
            try:
                if not predicate(event):
                    continue
                stats.matched += 1
                w = st.window
                if w is None:
                    if self._admit(st, (), t) is None:
                        if out is _NO_FIRINGS:
                            out = []
                        self._emit(st, _NO_GROUP, t, event, out)
                    continue
                hit = w.observe(event, t)
                if st.timed:
                    self._note_deadline(t + w.within)
                if hit is not None and self._admit(st, hit.key, t) is None:
                    if out is _NO_FIRINGS:
                        out = []
                    self._emit(st, hit.group, t, event, out)
            except Exception as e:
                stats.errors += 1
                stats.last_error = f"{type(e).__name__}: {e}"
        return out

    def _process_explained(self, active: _Active, cands: Sequence[CompiledRule], event: Event, t: int,
                           out: list[Firing]) -> list[Firing]:
        """`process` for candidates among which a rule is being explained (off the fast path)."""
        states = active.states
        for rule in cands:
            st = states[rule]
            stats = st.stats
            stats.candidates += 1
            if st.explain:
                if out is _NO_FIRINGS:
                    out = []
                self._explain_event(st, event, t, out)
                continue
            out = self._evaluate(rule.predicate, st, stats, event, t, out)
        return out

    def _evaluate(self, predicate: Callable[[Event], bool], st: _RuleState, stats: RuleStats, event: Event, t: int,
                  out: list[Firing]) -> list[Firing]:
        """One candidate: its condition, its window, its cooldown and limit; a firing appended to `out`. The fast
        loop in `process` runs these same steps inline (a call per candidate per event costs more than they do)."""
        try:
            if not predicate(event):
                return out
            stats.matched += 1
            w = st.window
            if w is None:
                if self._admit(st, (), t) is None:
                    if out is _NO_FIRINGS:
                        out = []
                    self._emit(st, _NO_GROUP, t, event, out)
                return out
            hit = w.observe(event, t)
            if st.timed:
                self._note_deadline(t + w.within)
            if hit is not None and self._admit(st, hit.key, t) is None:
                if out is _NO_FIRINGS:
                    out = []
                self._emit(st, hit.group, t, event, out)
        except Exception as e:
            stats.errors += 1
            stats.last_error = f"{type(e).__name__}: {e}"
        return out

    def advance(self, now_ns: int) -> list[Firing]:
        """Move the clock to `now_ns` (if later) and fire the absence timers that have run out by then."""
        if now_ns > self._now:
            self._now = now_ns
        out: list[Firing] = []
        active = self._active
        if self._now >= self._next_deadline:
            self._run_timers(active, self._now, out)
        if self._now >= self._next_sweep:
            self._sweep(active, self._now)
        return out

    def finish(self, end_ns: int) -> list[Firing]:
        """The end of a replay: fire the absences whose time has come by `end_ns`. Partial windows and sequences
        are left as they are (nothing more will complete them)."""
        return self.advance(end_ns)

    # -- the pieces -------------------------------------------------------------------------------------------

    def _note_deadline(self, deadline: int) -> None:
        if deadline < self._next_deadline:
            self._next_deadline = deadline

    def _admit(self, st: _RuleState, key: GroupKey, t: int) -> str | None:
        """None when a firing of `key` at `t` may go ahead (and then books it); else COOLDOWN or LIMIT."""
        rule = st.rule
        cooldown = rule.cooldown_ns
        if cooldown:
            until = st.cooldowns.get(key)
            if until is not None and t < until:
                st.stats.suppressed_cooldown += 1
                return COOLDOWN
        limit = rule.limit
        if limit is not None:
            times = st.fire_times
            lo = t - limit.per_ns
            while times and times[0] <= lo:
                times.popleft()
            if len(times) >= limit.actions:
                st.stats.suppressed_limit += 1
                return LIMIT
            times.append(t)
        if cooldown:
            cds = st.cooldowns
            if key in cds:
                del cds[key]  # re-inserted at the end, so the map stays in order of expiry
            elif len(cds) >= self._max_groups:
                _sweep_cooldowns(cds, t)
                while len(cds) >= self._max_groups:
                    cds.popitem(last=False)
                    st.stats.groups_evicted += 1
            cds[key] = t + cooldown
        return None

    def _emit(self, st: _RuleState, group: dict[str, Any], t: int, event: Event | None,
              out: list[Firing]) -> Firing:
        firing = Firing(st.rule.name, t, dict(group), event)
        st.stats.fired += 1
        if self._scheduler is not None:
            self._scheduler.submit(firing, st.rule.actions)
        out.append(firing)
        return firing

    def _run_timers(self, active: _Active, now: int, out: list[Firing]) -> None:
        start = len(out)
        nd = NEVER
        for st in active.timed:
            w = st.window
            assert isinstance(w, AbsenceState)
            for hit in w.expire(now):
                self._timer_fired(st, hit, out)
            d = w.next_deadline()
            if d < nd:
                nd = d
        self._next_deadline = nd
        if len(out) - start > 1:
            out[start:] = sorted(out[start:], key=lambda f: f.time)

    def _timer_fired(self, st: _RuleState, hit: Hit, out: list[Firing]) -> None:
        reason = self._admit(st, hit.key, hit.time)
        if reason is None:
            self._emit(st, hit.group, hit.time, hit.event, out)
        if st.explain:
            detail = hit.note if reason is None else self._held_detail(st, reason, hit.key)
            self._record(st, hit.time, hit.event, reason or FIRED, detail, group=hit.group)

    def _sweep(self, active: _Active, now: int) -> None:
        self._next_sweep = now + HOUSEKEEPING_NS
        for st in active.windowed:
            if st.window is not None:
                st.window.purge(now)
            if st.cooldowns:
                _sweep_cooldowns(st.cooldowns, now)

    # -- explain ----------------------------------------------------------------------------------------------

    def _record(self, st: _RuleState, t: int, event: Event | None, outcome: str, detail: str,
                parts: tuple[str, ...] = (), group: dict[str, Any] | None = None) -> None:
        self.explanations.append(ExplainRecord(st.rule.name, t, event, outcome, detail, parts, group))

    def _held_detail(self, st: _RuleState, reason: str, key: GroupKey) -> str:
        if reason == COOLDOWN:
            return f"cooldown until {format_time(st.cooldowns[key])}"
        limit: Limit | None = st.rule.limit
        assert limit is not None
        until = st.fire_times[0] + limit.per_ns if st.fire_times else 0
        return (f"limit: {limit.actions} firings per {format_duration(limit.per_ns)} reached, "
                f"until {format_time(until)}")

    def _explain_event(self, st: _RuleState, event: Event, t: int, out: list[Firing]) -> None:
        """The same steps as `process`, recording what stopped the event."""
        rule = st.rule
        try:
            if not rule.predicate(event):
                parts = tuple(text for text, part in rule.explain_parts if not _holds(part, event))
                if not parts:
                    parts = (rule.condition_text,)
                self._record(st, t, event, CONDITION, "; ".join(f"`{p}`" for p in parts), parts)
                return
            st.stats.matched += 1
            w = st.window
            if w is None:
                key: GroupKey = ()
                group = _NO_GROUP
            else:
                hit = w.observe(event, t)
                if st.timed:
                    self._note_deadline(t + w.within)
                if hit is None:
                    self._record(st, t, event, WINDOW, w.describe(event, t))
                    return
                key, group = hit.key, hit.group
            reason = self._admit(st, key, t)
            if reason is not None:
                self._record(st, t, event, reason, self._held_detail(st, reason, key), group=group)
                return
            self._emit(st, group, t, event, out)
            self._record(st, t, event, FIRED, "", group=group)
        except Exception as e:
            st.stats.errors += 1
            st.stats.last_error = f"{type(e).__name__}: {e}"
            self._record(st, t, event, ERROR, st.stats.last_error)

    def take_explanations(self) -> list[ExplainRecord]:
        """The explain records so far, handed over and forgotten (for streaming them out)."""
        out, self.explanations = self.explanations, []
        return out

    # -- stats ------------------------------------------------------------------------------------------------

    @property
    def stats(self) -> EngineStats:
        """A snapshot: the events seen, the index's candidates, and per rule (every rule ever loaded, by name)."""
        with self._stats_lock:
            rules = {name: s.copy() for name, s in self._rule_stats.items()}
            for name, n in self._active.pending().items():
                rules[name].candidates += n
        return EngineStats(self._events, self._candidates, rules)

    @property
    def now(self) -> int:
        return self._now


def _holds(part: Callable[[Event], bool], event: Event) -> bool:
    try:
        return bool(part(event))
    except Exception:
        return False


def _sweep_cooldowns(cds: OrderedDict[GroupKey, int], now: int) -> None:
    while cds:
        key = next(iter(cds))
        if cds[key] > now:
            return
        del cds[key]
