"""Window state machines: one per window kind, each keeping its state per group.

Time is the engine's clock: the latest event time seen (see `Engine`), never the wall clock, so a replay gives the
same firings however fast it runs. The clock never goes back, so within one window the groups of the LRU map are
also in order of their last event; purging expired groups and running absence timers only ever look at the front.

Choices, each tested in tests/test_engine_windows.py:

- "Within DURATION" is inclusive: events at t and t + within are inside one window.
- count: each group keeps the times of its matching events inside the window (at most `count` of them). When
  `count` are inside, the window fires and the group's times are cleared: 10 events with count 5 fire twice, not
  six times. A firing held back by cooldown or limit clears them too (the window did fire; the firing was dropped).
- threshold: the aggregate of `value` over the group's values inside the window, compared with `op` and `limit`.
  It fires when the comparison turns true, and not again until an event finds it false (or the group's window has
  emptied): one firing per excursion, not one per event above the line. Events whose value is missing or not a
  number are ignored. Memory per group is bounded by `values_cap` (default 1024):
  p50/p90/p99 are taken (nearest rank) over the newest `values_cap` values inside the window; sum/avg/min/max are
  exact while a group holds at most `values_cap` values, and past that new values join the newest stored entry, so
  a value can count for longer than `within` (by at most that entry's span) until the rate drops.
- absence: a group that has matched is armed; when it has been silent for `within` (deadline = last match +
  within, reached when the clock is >= the deadline) it fires once, with the deadline as the firing time and its
  last event, and is forgotten: its next match arms it again. A match at exactly the deadline comes too late,
  since the engine advances the clock before it evaluates an event.
- sequence: the steps in order, for one `by` key, with the last step at most `within` after the first. Each key
  keeps, for each step, the latest start time among the partial runs waiting for that step, so overlapping runs
  are tracked in O(steps) memory and a run is found whenever one exists (the latest start leaves the most time).
  An event can advance several runs by one step each, but no run by two steps. Events that match no step are
  ignored (they do not break a run). After a firing the key starts over: events before the firing are not reused.
- Groups are the tuple of the `group_by` values; a missing value is None, and None is a group of its own. Each
  window holds at most `max_groups` groups (default 10,000); past that, expired groups are dropped first and then
  the least recently matched group is evicted and counted in `RuleStats.groups_evicted`.
"""

from __future__ import annotations

import bisect
import json
import math
import operator
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dyntel.engine.stats import RuleStats
from dyntel.event import Event
from dyntel.rules.model import AbsenceWindow, CountWindow, GroupKeys, SequenceWindow, ThresholdWindow, Window

DEFAULT_MAX_GROUPS = 10_000
DEFAULT_VALUES_CAP = 1024

GroupKey = tuple[Any, ...]

_SCALARS = (int, str, float, bool, bytes, type(None))
_SCALAR_CLASSES = frozenset(_SCALARS)  # an exact-class test first: a set lookup, cheaper than isinstance of six


@dataclass(slots=True)
class Hit:
    """A window deciding to fire for one group."""

    key: GroupKey
    group: dict[str, Any]  # {key name as written: value}, JSON-ready
    time: int
    event: Event | None
    note: str = ""


def _hashable(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    return repr(value)


def json_value(value: Any) -> Any:
    """A group value as the firing's JSON shows it: GUIDs (activity) as UUID text, other bytes as hex."""
    if isinstance(value, bytes):
        if len(value) == 16:
            h = value.hex()
            return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        return value.hex()
    return value


Keyer = Callable[[Event], tuple[GroupKey, tuple[Any, ...]]]


def _no_group(event: Event) -> tuple[GroupKey, tuple[Any, ...]]:
    return (), ()


def make_keyer(keys: GroupKeys) -> Keyer:
    """A function giving the hashable key of an event's group and the raw values it was built from; one or no key
    (the usual group_by) skips the generic loop."""
    getters = keys.getters
    if not getters:
        return _no_group
    if len(getters) == 1:
        get = getters[0]

        def one(event: Event) -> tuple[GroupKey, tuple[Any, ...]]:
            v = get(event)
            raw = (v,)
            return (raw if isinstance(v, _SCALARS) else (_hashable(v),)), raw

        return one

    def several(event: Event) -> tuple[GroupKey, tuple[Any, ...]]:
        raw = tuple([g(event) for g in getters])
        return tuple([v if isinstance(v, _SCALARS) else _hashable(v) for v in raw]), raw

    return several


def group_dict(keys: GroupKeys, raw: tuple[Any, ...]) -> dict[str, Any]:
    return {name: json_value(v) for name, v in zip(keys.names, raw, strict=True)}


def format_group(group: dict[str, Any]) -> str:
    """`{pid: 42, fields.path: "/x"}`: as ops wrote the keys, values as JSON."""
    return "{" + ", ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in group.items()) + "}"


def format_time(ns: int) -> str:
    """An event time for people: ISO-8601 UTC when it looks like wall time, else the raw clock in seconds."""
    if ns < 10**17:  # before 1973: a recording's raw clock, not the epoch
        return f"{ns / 1e9:.9f}"
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def format_duration(ns: int) -> str:
    """Back to the rule format's units: 30s, 500ms, 5m, 1h, 1m30s."""
    if ns <= 0:
        return "0s"
    if ns % 1_000_000_000:
        if ns % 1_000_000 == 0:
            return f"{ns // 1_000_000}ms"
        if ns % 1_000 == 0:
            return f"{ns // 1_000}us"
        return f"{ns}ns"
    s = ns // 1_000_000_000
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out


class _Groups:
    """The LRU map of groups every window kind shares, with the cap."""

    __slots__ = ("groups", "key_of", "max_groups", "stats", "within")

    def __init__(self, within: int, max_groups: int, stats: RuleStats, keys: GroupKeys) -> None:
        self.groups: OrderedDict[GroupKey, Any] = OrderedDict()
        self.key_of = make_keyer(keys)
        self.within = within
        self.max_groups = max_groups
        self.stats = stats

    def _dead(self, g: Any, now: int) -> bool:
        return bool(g.last < now - self.within)

    def rebind(self, spec: Window) -> None:
        """Carry the state over to an equivalent window of a reloaded rule (same fingerprint), so the old rule's
        compiled code can go."""
        raise NotImplementedError

    def purge(self, now: int) -> None:
        """Drop groups whose every event has left the window (they would behave as new ones)."""
        groups = self.groups
        while groups:
            key = next(iter(groups))
            if not self._dead(groups[key], now):
                break
            del groups[key]

    def _insert(self, key: GroupKey, g: Any, now: int) -> None:
        groups = self.groups
        if len(groups) >= self.max_groups:
            self.purge(now)
            while len(groups) >= self.max_groups:
                groups.popitem(last=False)
                self.stats.groups_evicted += 1
        groups[key] = g

    def __len__(self) -> int:
        return len(self.groups)


class _CountGroup:
    __slots__ = ("group", "last", "times")

    def __init__(self, group: dict[str, Any], count: int) -> None:
        self.group = group
        self.times: deque[int] = deque(maxlen=count)
        self.last = 0


class CountState(_Groups):
    __slots__ = ("count", "get1", "spec")

    def __init__(self, spec: CountWindow, max_groups: int, stats: RuleStats) -> None:
        super().__init__(spec.within_ns, max_groups, stats, spec.group_by)
        self.rebind(spec)

    def rebind(self, spec: Window) -> None:
        assert isinstance(spec, CountWindow)
        self.spec = spec
        self.count = spec.count
        self.within = spec.within_ns
        self.key_of = make_keyer(spec.group_by)
        # One group_by key (the usual `group_by: [pid]`): read here, without the keyer's call and its pair tuple.
        getters = spec.group_by.getters
        self.get1 = getters[0] if len(getters) == 1 else None

    def observe(self, event: Event, t: int) -> Hit | None:
        # Run for every event a count rule matches: the steps of make_keyer's `one` are inlined (see get1).
        get1 = self.get1
        if get1 is not None:
            v = get1(event)
            key = raw = (v,)
            if v.__class__ not in _SCALAR_CLASSES and not isinstance(v, _SCALARS):
                key = (_hashable(v),)
        else:
            key, raw = self.key_of(event)
        groups = self.groups
        g: _CountGroup | None = groups.get(key)
        if g is None:
            g = _CountGroup(group_dict(self.spec.group_by, raw), self.count)
            self._insert(key, g, t)
        else:
            groups.move_to_end(key)
        g.last = t
        times = g.times
        times.append(t)
        lo = t - self.within
        while times[0] < lo:
            times.popleft()
        if len(times) >= self.count:
            times.clear()
            return Hit(key, g.group, t, event)
        return None

    def describe(self, event: Event, t: int) -> str:
        spec = self.spec
        key, raw = self.key_of(event)
        g: _CountGroup | None = self.groups.get(key)
        n = len(g.times) if g is not None else 0
        return (f"count {n} of {spec.count} within {format_duration(spec.within_ns)} "
                f"for group {format_group(group_dict(spec.group_by, raw))}")


# ---- threshold ---------------------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


def _number(value: Any) -> float | int | None:
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return None
        return value
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return None if math.isnan(f) else f
    return None


class _SumAgg:
    """sum and avg. Entries are [time of newest value, count, sum]; one per value until the cap."""

    __slots__ = ("avg", "cap", "entries", "n", "total")

    def __init__(self, cap: int, avg: bool) -> None:
        self.entries: deque[list[Any]] = deque()
        self.total: float | int = 0
        self.n = 0
        self.cap = cap
        self.avg = avg

    def add(self, t: int, v: float | int) -> None:
        e = self.entries
        if len(e) >= self.cap:
            last = e[-1]
            last[0] = t
            last[1] += 1
            last[2] += v
        else:
            e.append([t, 1, v])
        self.total += v
        self.n += 1

    def expire(self, lo: int) -> None:
        e = self.entries
        while e and e[0][0] < lo:
            _, c, s = e.popleft()
            self.n -= c
            self.total -= s
        if not e:
            self.total = 0  # float drift ends with the window
            self.n = 0

    def size(self) -> int:
        return self.n

    def value(self) -> float | int | None:
        if not self.n:
            return None
        return self.total / self.n if self.avg else self.total


class _ExtremeAgg:
    """min and max: a monotonic deque of [time, value], the sliding-window extreme in O(1) amortized."""

    __slots__ = ("cap", "entries", "is_min")

    def __init__(self, cap: int, is_min: bool) -> None:
        self.entries: deque[list[Any]] = deque()
        self.cap = cap
        self.is_min = is_min

    def add(self, t: int, v: float | int) -> None:
        e = self.entries
        if self.is_min:
            while e and e[-1][1] >= v:
                e.pop()
        else:
            while e and e[-1][1] <= v:
                e.pop()
        if len(e) >= self.cap:
            # The newest kept extreme is more extreme than v; letting it live as long as v keeps the deque bounded.
            e[-1][0] = t
        else:
            e.append([t, v])

    def expire(self, lo: int) -> None:
        e = self.entries
        while e and e[0][0] < lo:
            e.popleft()

    def size(self) -> int:
        return len(self.entries)

    def value(self) -> float | int | None:
        return self.entries[0][1] if self.entries else None


class _PercentileAgg:
    """p50/p90/p99 by nearest rank over the newest `cap` values inside the window."""

    __slots__ = ("cap", "fraction", "order", "sorted")

    def __init__(self, cap: int, fraction: float) -> None:
        self.order: deque[tuple[int, float | int]] = deque()
        self.sorted: list[float | int] = []
        self.cap = cap
        self.fraction = fraction

    def _drop_oldest(self) -> None:
        _, v = self.order.popleft()
        s = self.sorted
        del s[bisect.bisect_left(s, v)]

    def add(self, t: int, v: float | int) -> None:
        if len(self.order) >= self.cap:
            self._drop_oldest()
        self.order.append((t, v))
        bisect.insort(self.sorted, v)

    def expire(self, lo: int) -> None:
        o = self.order
        while o and o[0][0] < lo:
            self._drop_oldest()

    def size(self) -> int:
        return len(self.order)

    def value(self) -> float | int | None:
        s = self.sorted
        if not s:
            return None
        return s[max(0, math.ceil(self.fraction * len(s)) - 1)]


_Agg = _SumAgg | _ExtremeAgg | _PercentileAgg


def _new_agg(agg: str, cap: int) -> _Agg:
    if agg in ("sum", "avg"):
        return _SumAgg(cap, agg == "avg")
    if agg in ("min", "max"):
        return _ExtremeAgg(cap, agg == "min")
    if agg in ("p50", "p90", "p99"):
        return _PercentileAgg(cap, int(agg[1:]) / 100)
    raise ValueError(f"unknown threshold aggregate {agg!r}")


class _ThresholdGroup:
    __slots__ = ("agg", "armed", "group", "last")

    def __init__(self, group: dict[str, Any], agg: _Agg) -> None:
        self.group = group
        self.agg = agg
        self.armed = True
        self.last = 0


class ThresholdState(_Groups):
    __slots__ = ("cmp", "spec", "values_cap")

    def __init__(self, spec: ThresholdWindow, max_groups: int, stats: RuleStats,
                 values_cap: int = DEFAULT_VALUES_CAP) -> None:
        super().__init__(spec.within_ns, max_groups, stats, spec.group_by)
        self.spec = spec
        self.values_cap = values_cap
        self.cmp = _OPS[spec.op]
        _new_agg(spec.agg, 1)  # an unknown aggregate fails when the rule is installed, not at its first event

    def rebind(self, spec: Window) -> None:
        assert isinstance(spec, ThresholdWindow)
        self.spec = spec
        self.key_of = make_keyer(spec.group_by)

    def observe(self, event: Event, t: int) -> Hit | None:
        spec = self.spec
        v = _number(spec.value(event))
        if v is None:
            return None
        key, raw = self.key_of(event)
        g: _ThresholdGroup | None = self.groups.get(key)
        if g is None:
            g = _ThresholdGroup(group_dict(spec.group_by, raw), _new_agg(spec.agg, self.values_cap))
            self._insert(key, g, t)
        else:
            self.groups.move_to_end(key)
        g.last = t
        agg = g.agg
        agg.expire(t - spec.within_ns)
        if not agg.size():
            g.armed = True
        agg.add(t, v)
        current = agg.value()
        if self.cmp(current, spec.limit):
            if g.armed:
                g.armed = False
                note = f"{spec.agg} of {spec.value_text} = {current} {spec.op} {spec.limit}"
                return Hit(key, g.group, t, event, note)
        else:
            g.armed = True
        return None

    def describe(self, event: Event, t: int) -> str:
        spec = self.spec
        if _number(spec.value(event)) is None:
            return f"threshold value `{spec.value_text}` is missing or not a number"
        key, raw = self.key_of(event)
        g: _ThresholdGroup | None = self.groups.get(key)
        where = f"within {format_duration(spec.within_ns)} for group {format_group(group_dict(spec.group_by, raw))}"
        if g is None:
            return f"threshold: no values {where}"
        current = g.agg.value()
        # A min/max deque holds only the values that can still be the extreme: its length is no count of values.
        over = "" if isinstance(g.agg, _ExtremeAgg) else f" over {g.agg.size()} values"
        text = f"threshold {spec.agg} of `{spec.value_text}` = {current}{over} {where}"
        if current is not None and self.cmp(current, spec.limit):
            return text + f": {spec.op} {spec.limit} holds but already fired; fires again once it has been false"
        return text + f": not {spec.op} {spec.limit}"


# ---- absence -----------------------------------------------------------------------------------------------------


class _AbsenceGroup:
    __slots__ = ("event", "group", "last")

    def __init__(self, group: dict[str, Any], event: Event, last: int) -> None:
        self.group = group
        self.event = event
        self.last = last


NEVER = 1 << 127  # a deadline no clock reaches


class AbsenceState(_Groups):
    __slots__ = ("spec",)

    def __init__(self, spec: AbsenceWindow, max_groups: int, stats: RuleStats) -> None:
        super().__init__(spec.within_ns, max_groups, stats, spec.group_by)
        self.spec = spec

    def rebind(self, spec: Window) -> None:
        assert isinstance(spec, AbsenceWindow)
        self.spec = spec
        self.key_of = make_keyer(spec.group_by)

    def observe(self, event: Event, t: int) -> Hit | None:
        spec = self.spec
        key, raw = self.key_of(event)
        g: _AbsenceGroup | None = self.groups.get(key)
        if g is None:
            self._insert(key, _AbsenceGroup(group_dict(spec.group_by, raw), event, t), t)
        else:
            self.groups.move_to_end(key)
            g.last = t
            g.event = event
        return None

    def purge(self, now: int) -> None:
        """Absence groups leave only by firing (`expire`) or by eviction."""

    def next_deadline(self) -> int:
        groups = self.groups
        if not groups:
            return NEVER
        g: _AbsenceGroup = groups[next(iter(groups))]
        return g.last + self.spec.within_ns

    def expire(self, now: int) -> list[Hit]:
        """Fire every group whose silence has reached `within` by `now`, in deadline order, and forget it."""
        hits: list[Hit] = []
        groups = self.groups
        within = self.spec.within_ns
        note = f"silent for {format_duration(within)}"
        while groups:
            key = next(iter(groups))
            g: _AbsenceGroup = groups[key]
            if g.last + within > now:
                break
            del groups[key]
            hits.append(Hit(key, g.group, g.last + within, g.event, note))
        return hits

    def describe(self, event: Event, t: int) -> str:
        spec = self.spec
        key, raw = self.key_of(event)
        g: _AbsenceGroup | None = self.groups.get(key)
        when = f" at {format_time(g.last + spec.within_ns)}" if g is not None else ""
        return (f"absence armed for group {format_group(group_dict(spec.group_by, raw))}: fires{when} "
                f"if silent for {format_duration(spec.within_ns)}")


# ---- sequence ----------------------------------------------------------------------------------------------------


class _SequenceGroup:
    __slots__ = ("group", "last", "starts")

    def __init__(self, group: dict[str, Any], steps: int) -> None:
        self.group = group
        # starts[i]: the latest start time of a partial run that has matched steps 0..i-1 and waits for step i.
        self.starts: list[int | None] = [None] * steps
        self.last = 0


class SequenceState(_Groups):
    __slots__ = ("spec",)

    def __init__(self, spec: SequenceWindow, max_groups: int, stats: RuleStats) -> None:
        super().__init__(spec.within_ns, max_groups, stats, spec.by)
        self.spec = spec
        if not spec.steps:
            raise ValueError("a sequence needs at least one step")

    def _dead(self, g: Any, now: int) -> bool:
        lo = now - self.within
        return all(s is None or s < lo for s in g.starts)

    def rebind(self, spec: Window) -> None:
        assert isinstance(spec, SequenceWindow)
        self.spec = spec
        self.key_of = make_keyer(spec.by)

    def observe(self, event: Event, t: int) -> Hit | None:
        spec = self.spec
        steps = spec.steps
        n = len(steps)
        if n == 1:
            if not steps[0](event):
                return None
            key, raw = self.key_of(event)
            return Hit(key, group_dict(spec.by, raw), t, event)
        key, raw = self.key_of(event)
        groups = self.groups
        g: _SequenceGroup | None = groups.get(key)
        if g is not None:
            starts = g.starts
            lo = t - spec.within_ns
            live = False
            # From the last step down, so that this event moves each run by one step at most.
            for i in range(n - 1, 0, -1):
                s = starts[i]
                if s is None:
                    continue
                if s < lo:
                    starts[i] = None
                    continue
                if steps[i](event):
                    if i + 1 == n:
                        del groups[key]
                        return Hit(key, g.group, t, event, f"{n} steps within {format_duration(spec.within_ns)}")
                    nxt = starts[i + 1]
                    if nxt is None or s > nxt:
                        starts[i + 1] = s
                live = True
            if steps[0](event):
                starts[1] = t
                live = True
            if live:
                g.last = t
                groups.move_to_end(key)
            else:
                del groups[key]
            return None
        if not steps[0](event):
            return None
        g = _SequenceGroup(group_dict(spec.by, raw), n)
        g.starts[1] = t
        g.last = t
        self._insert(key, g, t)
        return None

    def describe(self, event: Event, t: int) -> str:
        spec = self.spec
        key, raw = self.key_of(event)
        g: _SequenceGroup | None = self.groups.get(key)
        who = f"for {format_group(group_dict(spec.by, raw))}"
        if g is None:
            return f"sequence {who}: no run in progress; a run starts with `{spec.step_texts[0]}`"
        lo = t - spec.within_ns
        for i in range(len(spec.steps) - 1, 0, -1):
            s = g.starts[i]
            if s is not None and s >= lo:
                return (f"sequence {who}: {i} of {len(spec.steps)} steps done, next `{spec.step_texts[i]}` "
                        f"by {format_time(s + spec.within_ns)}")
        return f"sequence {who}: no live run"


WindowState = CountState | ThresholdState | AbsenceState | SequenceState


def new_window_state(window: Window, max_groups: int, stats: RuleStats,
                     values_cap: int = DEFAULT_VALUES_CAP) -> WindowState:
    if isinstance(window, CountWindow):
        if window.count < 1:
            raise ValueError("a count window needs count >= 1")
        return CountState(window, max_groups, stats)
    if isinstance(window, ThresholdWindow):
        return ThresholdState(window, max_groups, stats, values_cap)
    if isinstance(window, AbsenceWindow):
        return AbsenceState(window, max_groups, stats)
    return SequenceState(window, max_groups, stats)
