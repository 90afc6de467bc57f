"""Each window kind through the engine: when it fires, what resets, grouping, caps."""

from __future__ import annotations

import pytest
from test_engine_support import MS, T0, S, engine, ev, field_is, fire_times, keys, rule

from dyntel.formatting import format_duration
from dyntel.rules.model import AbsenceWindow, CountWindow, SequenceWindow, ThresholdWindow

# ---- count ---------------------------------------------------------------------------------------------------------


def test_count_fires_at_n_and_clears_the_group():
    e = engine(rule(window=CountWindow(5, 30 * S, keys())))
    # 10 events in 10 s: two firings (at the 5th and the 10th), not six.
    assert fire_times(e, [ev(i * S) for i in range(10)]) == [("r", 4), ("r", 9)]
    assert e.stats.rules["r"].matched == 10
    assert e.stats.fired == {"r": 2}


def test_count_window_slides():
    e = engine(rule(window=CountWindow(3, 10 * S, keys())))
    # 0, 6, 12: never 3 within 10 s; 13 makes 6, 12, 13.
    assert fire_times(e, [ev(0), ev(6 * S), ev(12 * S), ev(13 * S)]) == [("r", 13)]


def test_count_within_is_inclusive():
    e = engine(rule(window=CountWindow(2, 10 * S, keys())))
    assert fire_times(e, [ev(0), ev(10 * S)]) == [("r", 10)]
    e = engine(rule(window=CountWindow(2, 10 * S, keys())))
    assert fire_times(e, [ev(0), ev(10 * S + 1)]) == []


def test_count_groups_apart():
    e = engine(rule(window=CountWindow(2, 10 * S, keys("pid"))))
    firings = []
    for i, pid in enumerate([1, 2, 1, 3, 2]):
        firings += e.process(ev(i * S, pid=pid))
    assert [(f.time - T0) // S for f in firings] == [2, 4]
    assert [f.group for f in firings] == [{"pid": 1}, {"pid": 2}]


def test_group_by_several_keys_as_written():
    e = engine(rule(window=CountWindow(2, 10 * S, keys("pid", "fields.path"))))
    fs = []
    for i, path in enumerate(["/a", "/b", "/a"]):
        fs += e.process(ev(i * S, pid=7, path=path))
    assert [f.group for f in fs] == [{"pid": 7, "fields.path": "/a"}]


def test_missing_group_value_is_a_group_of_its_own():
    e = engine(rule(window=CountWindow(2, 10 * S, keys("fields.user"))))
    events = [ev(0, user="a"), ev(1 * S), ev(2 * S, other=1), ev(3 * S, user="a")]
    fs = [f for x in events for f in e.process(x)]
    assert [f.group for f in fs] == [{"fields.user": None}, {"fields.user": "a"}]


def test_unhashable_and_bytes_group_values():
    e = engine(rule(window=CountWindow(2, 10 * S, keys("activity"))))
    guid = bytes(range(16))
    a, b = ev(0), ev(S)
    a.activity = b.activity = guid
    fs = e.process(a) + e.process(b)
    assert fs[0].group == {"activity": "00010203-0405-0607-0809-0a0b0c0d0e0f"}


# ---- eviction --------------------------------------------------------------------------------------------------------


def test_group_cap_evicts_least_recently_matched_and_counts():
    e = engine(rule(window=CountWindow(3, 100 * S, keys("pid"))), max_groups=3)
    for i, pid in enumerate([1, 2, 3, 1, 4, 2]):  # 4 evicts 2 (1 was touched again); 2 evicts 3
        assert e.process(ev(i * S, pid=pid)) == []
    assert e.stats.groups_evicted == 2
    assert [f.group for f in e.process(ev(6 * S, pid=1))] == [{"pid": 1}]
    assert e.process(ev(7 * S, pid=2)) == []  # 2 started over when it came back: this is its second


def test_expired_groups_are_dropped_before_live_ones_are_evicted():
    e = engine(rule(window=CountWindow(2, 5 * S, keys("pid"))), max_groups=2)
    e.process(ev(0, pid=1))
    e.process(ev(1 * S, pid=2))
    e.process(ev(10 * S, pid=3))  # 1 and 2 have nothing left inside 5 s: no eviction
    assert e.stats.groups_evicted == 0


# ---- threshold -----------------------------------------------------------------------------------------------------


def threshold(agg: str, op: str, limit: float, within: int = 60 * S, by: tuple[str, ...] = ()) -> ThresholdWindow:
    return ThresholdWindow(lambda e: e.fields.get("ms"), "fields.ms", agg, op, limit, within, keys(*by))


@pytest.mark.parametrize(("agg", "values", "limit", "expect"), [
    ("avg", [100, 200, 600, 900], 400, [3]),  # avg 450 at the 4th
    ("sum", [100, 200, 600], 850, [2]),
    ("max", [1, 5, 3], 4, [1]),
    ("p50", [10, 20, 30, 40, 50], 25, [4]),  # nearest rank: 10, 10, 20, 20, 30
    ("p90", list(range(1, 11)), 8.5, [8]),  # p90 of 1..8 is 8, of 1..9 is 9
])
def test_threshold_aggregates(agg, values, limit, expect):
    e = engine(rule(window=threshold(agg, ">", limit)))
    got = fire_times(e, [ev(i * S, ms=v) for i, v in enumerate(values)])
    assert got == [("r", i) for i in expect]


def test_threshold_min_below():
    e = engine(rule(window=threshold("min", "<", 10)))
    assert fire_times(e, [ev(0, ms=50), ev(S, ms=12), ev(2 * S, ms=9)]) == [("r", 2)]


def test_threshold_values_leave_the_window():
    e = engine(rule(window=threshold("sum", ">=", 10, within=10 * S)))
    # 6 at 0 leaves before 15: 3 + 4 = 7 at 15, then 3 + 4 + 3 = 10 at 16.
    assert fire_times(e, [ev(0, ms=6), ev(8 * S, ms=3), ev(15 * S, ms=4), ev(16 * S, ms=3)]) == [("r", 16)]


def test_threshold_min_max_slide():
    e = engine(rule(window=threshold("max", ">", 100, within=10 * S)))
    # The max falls back after 200 leaves, so a second excursion can fire.
    events = [ev(0, ms=200), ev(5 * S, ms=50), ev(11 * S, ms=60), ev(12 * S, ms=150)]
    assert fire_times(e, events) == [("r", 0), ("r", 12)]


def test_threshold_fires_once_per_excursion():
    e = engine(rule(window=threshold("max", ">", 100, within=2 * S)))
    values = [150, 160, 170, 10, 10, 10, 200, 300]  # above, above, above, falls (window 2 s), above again
    assert fire_times(e, [ev(i * S, ms=v) for i, v in enumerate(values)]) == [("r", 0), ("r", 6)]


def test_threshold_ignores_missing_and_non_numeric_values():
    e = engine(rule(window=threshold("sum", ">", 5)))
    events = [ev(0, ms=3), ev(S, other=100), ev(2 * S, ms="abc"), ev(3 * S, ms="2.5")]
    assert fire_times(e, events) == [("r", 3)]
    assert e.stats.rules["r"].matched == 4


def test_threshold_per_group():
    e = engine(rule(window=threshold("avg", ">", 10, by=("pid",))))
    fs = []
    for i, (pid, v) in enumerate([(1, 5), (2, 20), (1, 6)]):
        fs += e.process(ev(i * S, pid=pid, ms=v))
    assert [f.group for f in fs] == [{"pid": 2}]


def test_threshold_percentile_keeps_the_newest_values_under_the_cap():
    e = engine(rule(window=threshold("p50", ">", 50)), values_cap=4)
    # Four 100s then four 1s: with a cap of 4 the median is of 1s only, so the second excursion can re-arm.
    values = [100] * 4 + [1] * 4 + [100] * 4
    assert fire_times(e, [ev(i * MS, ms=v) for i, v in enumerate(values)]) == [("r", 0), ("r", 0.01)]


def test_threshold_sum_over_the_cap_keeps_every_value():
    e = engine(rule(window=threshold("sum", ">=", 1000)), values_cap=8)
    assert fire_times(e, [ev(i * MS, ms=10) for i in range(100)]) == [("r", 0.099)]


# ---- absence -------------------------------------------------------------------------------------------------------


def absence_rule(within: int = 30 * S, by: tuple[str, ...] = ("pid",)):
    return rule(window=AbsenceWindow(within, keys(*by)))


def test_absence_fires_once_per_silence_and_rearms():
    e = engine(absence_rule())
    events = [ev(0, pid=1), ev(10 * S, pid=1), ev(50 * S, pid=2), ev(100 * S, pid=1)]
    fs = [f for x in events for f in e.process(x)]
    # pid 1 silent from 10 s: fires at 40 s (seen on the event at 50 s), with its last event and the deadline.
    # pid 2 silent from 50 s: fires at 80 s (seen at 100 s); pid 1 matched again at 100 s: armed anew.
    assert [((f.time - T0) // S, f.group) for f in fs] == [(40, {"pid": 1}), (80, {"pid": 2})]
    assert fs[0].event is events[1]
    assert [((f.time - T0) // S, f.group) for f in e.finish(T0 + 200 * S)] == [(130, {"pid": 1})]
    assert e.finish(T0 + 300 * S) == []


def test_absence_at_finish_only_when_its_time_has_come():
    e = engine(absence_rule())
    e.process(ev(0, pid=1))
    e.process(ev(20 * S, pid=2))
    assert [f.group for f in e.finish(T0 + 30 * S)] == [{"pid": 1}]  # a silence of exactly 30 s is enough
    assert [f.group for f in e.finish(T0 + 49 * S)] == []
    assert [f.group for f in e.finish(T0 + 50 * S)] == [{"pid": 2}]


def test_absence_advance_drives_timers_without_events():
    e = engine(absence_rule(), rule("other", event="Other"))
    e.process(ev(0, pid=1))
    assert e.advance(T0 + 29 * S) == []
    assert len(e.advance(T0 + 31 * S)) == 1


def test_absence_match_at_the_deadline_is_too_late():
    e = engine(absence_rule())
    e.process(ev(0, pid=1))
    assert [(f.time - T0) // S for f in e.process(ev(30 * S, pid=1))] == [30]


def test_absence_timers_of_several_rules_come_out_in_time_order():
    e = engine(rule("a", window=AbsenceWindow(20 * S, keys())), rule("b", window=AbsenceWindow(10 * S, keys())))
    e.process(ev(0))
    assert fire_times(e, [], end=100 * S) == [("b", 10), ("a", 20)]


# ---- sequence ------------------------------------------------------------------------------------------------------


def sequence(*names: str, within: int = 10 * S, by: str = "pid") -> SequenceWindow:
    return SequenceWindow(tuple(field_is("step", n) for n in names), tuple(f"fields.step == {n!r}" for n in names),
                          within, keys(by))


def steps(*items: tuple[int, str] | tuple[int, str, int]) -> list:
    return [ev(i[0] * S, pid=i[2] if len(i) > 2 else 1, step=i[1]) for i in items]


def test_sequence_in_order_fires():
    e = engine(rule(window=sequence("a", "b", "c")))
    assert fire_times(e, steps((0, "a"), (1, "x"), (2, "b"), (3, "c"))) == [("r", 3)]


def test_sequence_out_of_order_does_not_fire():
    e = engine(rule(window=sequence("a", "b", "c")))
    assert fire_times(e, steps((0, "a"), (1, "c"), (2, "b"))) == []


def test_sequence_times_out_from_the_first_step():
    e = engine(rule(window=sequence("a", "b", within=10 * S)))
    assert fire_times(e, steps((0, "a"), (11, "b"))) == []
    e = engine(rule(window=sequence("a", "b", within=10 * S)))
    assert fire_times(e, steps((0, "a"), (10, "b"))) == [("r", 10)]


def test_sequence_a_later_start_is_found():
    # a at 0 and at 8; b at 15 is 15 s after the first a but 7 s after the second.
    e = engine(rule(window=sequence("a", "b", within=10 * S)))
    assert fire_times(e, steps((0, "a"), (8, "a"), (15, "b"))) == [("r", 15)]


def test_sequence_overlapping_runs_keep_the_earlier_progress():
    # a b a c: the second a must not throw away the run a b that c completes.
    e = engine(rule(window=sequence("a", "b", "c")))
    assert fire_times(e, steps((0, "a"), (1, "b"), (2, "a"), (3, "c"))) == [("r", 3)]


def test_sequence_repeated_steps():
    e = engine(rule(window=sequence("a", "a", "b")))
    assert fire_times(e, steps((0, "a"), (1, "a"), (2, "a"), (3, "b"))) == [("r", 3)]
    e = engine(rule(window=sequence("a", "a", "b")))
    assert fire_times(e, steps((0, "a"), (3, "b"))) == []  # one a cannot be two steps


def test_sequence_by_key_and_reset_after_firing():
    e = engine(rule(window=sequence("a", "b")))
    events = steps((0, "a", 1), (1, "a", 2), (2, "b", 2), (3, "b", 1), (4, "b", 1))
    fs = [f for x in events for f in e.process(x)]
    assert [((f.time - T0) // S, f.group) for f in fs] == [(2, {"pid": 2}), (3, {"pid": 1})]


def test_sequence_single_step():
    e = engine(rule(window=sequence("a")))
    assert fire_times(e, steps((0, "a"), (1, "b"), (2, "a"))) == [("r", 0), ("r", 2)]


# ---- misc ----------------------------------------------------------------------------------------------------------


def test_format_duration():
    assert [format_duration(x) for x in (30 * S, 500 * MS, 300 * S, 3600 * S, 90 * S, 0, 1500)] == \
        ["30s", "500ms", "5m", "1h", "1m30s", "0s", "1500ns"]


def test_count_group_None_key_with_no_group_by():
    e = engine(rule(window=CountWindow(1, S, keys())))
    assert [f.group for f in e.process(ev(0))] == [{}]
