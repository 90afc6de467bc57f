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

import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dyntel.engine.aggregates import Agg, ExtremeAgg, new_agg, number
from dyntel.engine.groups import GroupKey, Groups, group_dict, make_keyer
from dyntel.engine.stats import RuleStats
from dyntel.event import Event
from dyntel.formatting import format_duration, format_group, format_time
from dyntel.rules.model import AbsenceWindow, CountWindow, SequenceWindow, ThresholdWindow, Window

DEFAULT_MAX_GROUPS = 10_000
DEFAULT_VALUES_CAP = 1024


@dataclass(slots=True)
class Hit:
    """A window deciding to fire for one group."""

    key: GroupKey
    group: dict[str, Any]  # {key name as written: value}, JSON-ready
    time: int
    event: Event | None
    note: str = ""


class _CountGroup:
    __slots__ = ("group", "last", "times")

    def __init__(self, group: dict[str, Any], count: int) -> None:
        self.group = group
        self.times: deque[int] = deque(maxlen=count)
        self.last = 0


class CountState(Groups):
    __slots__ = ("spec",)

    def __init__(self, spec: CountWindow, max_groups: int, stats: RuleStats) -> None:
        super().__init__(spec.within_ns, max_groups, stats, spec.group_by)
        self.spec = spec

    def rebind(self, spec: Window) -> None:
        assert isinstance(spec, CountWindow)
        self.spec = spec
        self.key_of = make_keyer(spec.group_by)

    def observe(self, event: Event, t: int) -> Hit | None:
        spec = self.spec
        key, raw = self.key_of(event)
        g: _CountGroup | None = self.groups.get(key)
        if g is None:
            g = _CountGroup(group_dict(spec.group_by, raw), spec.count)
            self._insert(key, g, t)
        else:
            self.groups.move_to_end(key)
        g.last = t
        times = g.times
        times.append(t)
        lo = t - spec.within_ns
        while times[0] < lo:
            times.popleft()
        if len(times) >= spec.count:
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


class _ThresholdGroup:
    __slots__ = ("agg", "armed", "group", "last")

    def __init__(self, group: dict[str, Any], agg: Agg) -> None:
        self.group = group
        self.agg = agg
        self.armed = True
        self.last = 0


class ThresholdState(Groups):
    __slots__ = ("cmp", "spec", "values_cap")

    def __init__(self, spec: ThresholdWindow, max_groups: int, stats: RuleStats,
                 values_cap: int = DEFAULT_VALUES_CAP) -> None:
        super().__init__(spec.within_ns, max_groups, stats, spec.group_by)
        self.spec = spec
        self.values_cap = values_cap
        self.cmp = _OPS[spec.op]
        new_agg(spec.agg, 1)  # an unknown aggregate fails when the rule is installed, not at its first event

    def rebind(self, spec: Window) -> None:
        assert isinstance(spec, ThresholdWindow)
        self.spec = spec
        self.key_of = make_keyer(spec.group_by)

    def observe(self, event: Event, t: int) -> Hit | None:
        spec = self.spec
        v = number(spec.value(event))
        if v is None:
            return None
        key, raw = self.key_of(event)
        g: _ThresholdGroup | None = self.groups.get(key)
        if g is None:
            g = _ThresholdGroup(group_dict(spec.group_by, raw), new_agg(spec.agg, self.values_cap))
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
        if number(spec.value(event)) is None:
            return f"threshold value `{spec.value_text}` is missing or not a number"
        key, raw = self.key_of(event)
        g: _ThresholdGroup | None = self.groups.get(key)
        where = f"within {format_duration(spec.within_ns)} for group {format_group(group_dict(spec.group_by, raw))}"
        if g is None:
            return f"threshold: no values {where}"
        current = g.agg.value()
        # A min/max deque holds only the values that can still be the extreme: its length is no count of values.
        over = "" if isinstance(g.agg, ExtremeAgg) else f" over {g.agg.size()} values"
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


class AbsenceState(Groups):
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


class SequenceState(Groups):
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
