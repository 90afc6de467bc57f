"""The engine around the windows: the pre-filter, cooldown, limit, reload, stats, errors, explain."""

from __future__ import annotations

import pytest
from test_engine_support import T0, S, engine, ev, field_is, fire_times, keys, rule

from dyntel.engine.explain import CONDITION, COOLDOWN, FIRED, LIMIT, WINDOW
from dyntel.engine.explain_run import explain_rule
from dyntel.rules.model import AbsenceWindow, CountWindow, Limit, Match, RuleSet, SequenceWindow, ThresholdWindow


def test_rule_without_window_fires_on_the_condition():
    e = engine(rule(when=field_is("status", 500)))
    events = [ev(0, status=200), ev(S, status=500), ev(2 * S, name="Other", status=500)]
    assert fire_times(e, events) == [("r", 1)]
    st = e.stats
    assert (st.events, st.candidates, st.matched, st.fired) == (3, 2, {"r": 1}, {"r": 1})
    f = e.process(ev(3 * S, status=500))[0]
    assert f.group == {} and f.event is not None and f.time == T0 + 3 * S


def test_match_prefilter_provider_event_and_level():
    r = rule(provider="A", event=None)
    lvl = rule("lvl", provider=None, event="E")
    lvl.match = Match(None, "E", level=3)
    e = engine(r, lvl)
    fired = []
    for x in [ev(0, provider="A", name="x"), ev(0, provider="B", name="E"), ev(0, provider="A", name="E")]:
        fired += [f.rule for f in e.process(x)]
    verbose = ev(0, provider="B", name="E")
    verbose.level = 5
    fired += [f.rule for f in e.process(verbose)]
    assert fired == ["r", "lvl", "r", "lvl"]


def test_cooldown_per_group():
    e = engine(rule(window=CountWindow(1, S, keys("pid")), cooldown=10 * S))
    events = [ev(0, pid=1), ev(1 * S, pid=2), ev(5 * S, pid=1), ev(10 * S, pid=1), ev(11 * S, pid=2)]
    fs = [f for x in events for f in e.process(x)]
    assert [((f.time - T0) // S, f.group["pid"]) for f in fs] == [(0, 1), (1, 2), (10, 1), (11, 2)]
    assert e.stats.suppressed_cooldown == 1


def test_cooldown_suppressed_firing_still_resets_the_window():
    e = engine(rule(window=CountWindow(2, 100 * S, keys()), cooldown=10 * S))
    # fires at 1; the window fires again at 3 (held back, cleared), so 4 alone does not fire; 5 does.
    assert fire_times(e, [ev(i * S) for i in range(6)]) == [("r", 1)]
    assert fire_times(e, [ev(11 * S), ev(12 * S)]) == [("r", 12)]
    assert e.stats.rules["r"].suppressed_cooldown == 2


def test_limit_is_per_rule_and_sliding():
    e = engine(rule(window=CountWindow(1, S, keys("pid")), limit=Limit(2, 10 * S)))
    events = [ev(0, pid=1), ev(1 * S, pid=2), ev(2 * S, pid=3), ev(10 * S, pid=4), ev(11 * S, pid=5),
              ev(12 * S, pid=6)]
    # 0 and 1 fire; 2 is the third within 10 s; at 10 the firing at 0 has left (per is a sliding 10 s: (0, 10]).
    assert fire_times(e, events) == [("r", 0), ("r", 1), ("r", 10), ("r", 11)]
    assert e.stats.suppressed_limit == 2


def test_limit_suppressed_firing_does_not_start_a_cooldown():
    e = engine(rule(limit=Limit(1, 10 * S), cooldown=5 * S))
    assert fire_times(e, [ev(0), ev(3 * S), ev(6 * S), ev(10 * S)]) == [("r", 0), ("r", 10)]
    s = e.stats.rules["r"]
    assert (s.suppressed_cooldown, s.suppressed_limit) == (1, 1)


def test_event_time_drives_the_clock_not_the_wall_clock():
    e = engine(rule(window=CountWindow(2, 10 * S, keys())))
    # An event with no time, or an earlier one, is handled at the clock's time.
    fs = e.process(ev(100 * S)) + e.process(ev(None)) + e.process(ev(50 * S)) + e.process(ev(105 * S))
    assert [(f.time - T0) // S for f in fs] == [100, 105]


def test_a_rule_that_raises_skips_the_event_and_others_still_see_it():
    def boom(e):
        raise ZeroDivisionError("x")

    e = engine(rule("bad", when=boom), rule("good"))
    assert [f.rule for f in e.process(ev(0))] == ["good"]
    assert e.stats.rules["bad"].errors == 1
    assert "ZeroDivisionError" in e.stats.rules["bad"].last_error


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError):
        engine(rule("x"), rule("x"))


def test_stats_json():
    e = engine(rule(window=CountWindow(1, S, keys())))
    e.process(ev(0))
    j = e.stats.to_json()
    assert j["events"] == 1 and j["rules"]["r"]["fired"] == 1 and j["groups_evicted"] == 0


# ---- replace_rules ---------------------------------------------------------------------------------------------------


def test_replace_rules_keeps_state_of_unchanged_rules_and_drops_changed():
    def count3(name, fp):
        return rule(name, window=CountWindow(3, 100 * S, keys()), fingerprint=fp)

    e = engine(count3("same", "1"), count3("changed", "1"), count3("removed", "1"))
    for i in range(2):
        e.process(ev(i * S))
    e.replace_rules(RuleSet([count3("same", "1"), count3("changed", "2"), count3("added", "1")]))
    # "same" has 2 of 3: the third event fires it; "changed" and "added" start from 0.
    assert [f.rule for f in e.process(ev(2 * S))] == ["same"]
    assert [f.rule for f in e.process(ev(3 * S))] == []
    assert sorted(f.rule for f in e.process(ev(4 * S))) == ["added", "changed"]
    # Stats stay by name across reloads.
    assert e.stats.matched == {"same": 5, "changed": 5, "removed": 2, "added": 3}


def test_replace_rules_keeps_cooldown_and_limit_of_unchanged_rules():
    def r(fp):
        return rule(cooldown=100 * S, fingerprint=fp)

    e = engine(r("a"))
    assert len(e.process(ev(0))) == 1
    e.replace_rules(RuleSet([r("a")]))
    assert e.process(ev(S)) == []  # still cooling down
    e.replace_rules(RuleSet([r("b")]))
    assert len(e.process(ev(2 * S))) == 1  # changed rule: cooldown forgotten


def test_replace_rules_keeps_absence_timers():
    e = engine(rule(window=AbsenceWindow(10 * S, keys("pid")), fingerprint="a"))
    e.process(ev(0, pid=1))
    e.replace_rules(RuleSet([rule(window=AbsenceWindow(10 * S, keys("pid")), fingerprint="a")]))
    assert [f.group for f in e.advance(T0 + 10 * S)] == [{"pid": 1}]


@pytest.mark.parametrize("window", [
    CountWindow(2, 100 * S, keys("pid")),
    ThresholdWindow(lambda e: e.fields.get("ms"), "fields.ms", "sum", ">=", 2, 100 * S, keys("pid")),
    SequenceWindow((field_is("ms", 1), field_is("ms", 1)), ("a", "b"), 100 * S, keys("pid")),
])
def test_replace_rules_carries_every_window_kind_over(window):
    e = engine(rule(window=window, fingerprint="x"))
    assert e.process(ev(0, ms=1)) == []
    e.replace_rules(RuleSet([rule(window=window, fingerprint="x")]))
    assert [f.group for f in e.process(ev(S, ms=1))] == [{"pid": 1}]


def test_replace_rules_updates_the_index():
    e = engine(rule("a", event="A"))
    e.replace_rules(RuleSet([rule("a", event="B")]))
    assert e.process(ev(0, name="A")) == []
    assert len(e.process(ev(0, name="B"))) == 1


def test_empty_fingerprint_never_keeps_state():
    def r():
        return rule(window=CountWindow(2, 100 * S, keys()), fingerprint="")

    e = engine(r())
    e.process(ev(0))
    e.replace_rules(RuleSet([r()]))
    assert e.process(ev(S)) == []


# ---- explain -------------------------------------------------------------------------------------------------------


def explained_rule(**kw):
    def is_5xx(e):
        return (e.fields.get("status") or 0) >= 500

    def not_health(e):
        return e.fields.get("path") != "/health"

    return rule("burst", when=lambda e: is_5xx(e) and not_health(e),
                text='fields.status >= 500 and fields.path != "/health"',
                parts=(("fields.status >= 500", is_5xx), ('fields.path != "/health"', not_health)), **kw)


def test_explain_says_what_stopped_each_event():
    r = explained_rule(window=CountWindow(2, 30 * S, keys("pid")), cooldown=60 * S)
    events = [
        ev(0, pid=42, status=200, path="/x"),  # condition: status
        ev(1 * S, pid=42, status=503, path="/health"),  # condition: path
        ev(2 * S, pid=42, status=503, path="/x"),  # window: 1 of 2
        ev(3 * S, pid=42, status=503, path="/x"),  # fired
        ev(4 * S, pid=42, status=503, path="/x"),  # window: 1 of 2
        ev(5 * S, pid=42, status=503, path="/x"),  # cooldown
        ev(6 * S, name="Other"),  # not a candidate: no record
    ]
    records = explain_rule(RuleSet([r, rule("other", event="Other")]), events, "burst")
    assert [x.outcome for x in records] == [CONDITION, CONDITION, WINDOW, FIRED, WINDOW, COOLDOWN]
    assert records[0].false_parts == ("fields.status >= 500",)
    assert records[1].false_parts == ('fields.path != "/health"',)
    assert records[2].detail == "count 1 of 2 within 30s for group {pid: 42}"
    assert records[3].group == {"pid": 42}
    assert records[5].detail == "cooldown until 2023-11-14T22:14:23.000000000Z"
    lines = [x.line() for x in records]
    assert lines[0] == ("2023-11-14T22:13:20.000000000Z burst Svc:Req pid 42: condition false: "
                        "`fields.status >= 500`")
    assert lines[3].endswith("fired group {pid: 42}")
    assert lines[5].endswith("held back by cooldown until 2023-11-14T22:14:23.000000000Z group {pid: 42}")
    j = records[2].to_json()
    assert j["outcome"] == "window" and j["event"]["n"] == "Svc:Req" and j["line"] == lines[2]


def test_explain_limit_and_absence_timer():
    r = explained_rule(limit=Limit(1, 60 * S))
    records = explain_rule(RuleSet([r]), [ev(0, status=500), ev(S, status=500)], "burst")
    assert [x.outcome for x in records] == [FIRED, LIMIT]
    assert records[1].detail == "limit: 1 firings per 1m reached, until 2023-11-14T22:14:20.000000000Z"

    a = explained_rule(window=AbsenceWindow(30 * S, keys("pid")))
    records = explain_rule(RuleSet([a]), [ev(0, pid=7, status=500)], "burst", end_ns=T0 + 60 * S)
    assert [x.outcome for x in records] == [WINDOW, FIRED]
    assert "absence armed for group {pid: 7}" in records[0].detail
    assert records[1].time == T0 + 30 * S and records[1].detail == "silent for 30s"


def test_explain_sequence_progress():
    seq = SequenceWindow((field_is("step", "a"), field_is("step", "b")), ("fields.step == 'a'", "fields.step == 'b'"),
                         10 * S, keys("pid"))
    r = rule("s", window=seq)
    records = explain_rule(RuleSet([r]), [ev(0, step="x"), ev(S, step="a"), ev(2 * S, step="b")], "s")
    assert [x.outcome for x in records] == [WINDOW, WINDOW, FIRED]
    assert "a run starts with `fields.step == 'a'`" in records[0].detail
    assert "1 of 2 steps done, next `fields.step == 'b'`" in records[1].detail


def test_explain_unknown_rule():
    with pytest.raises(KeyError):
        explain_rule(RuleSet([rule()]), [], "nope")


def test_explain_does_not_change_what_fires():
    r = explained_rule(window=CountWindow(2, 30 * S, keys("pid")))
    events = [ev(i * S, pid=i % 2, status=500, path="/") for i in range(8)]
    plain = fire_times(engine(r), events)
    e = engine(explained_rule(window=CountWindow(2, 30 * S, keys("pid"))), explain="burst")
    assert fire_times(e, events) == plain
    assert len(e.take_explanations()) == 8 and e.explanations == []


def test_explain_threshold():
    r = rule("t", window=ThresholdWindow(lambda e: e.fields.get("ms"), "fields.ms", "avg", ">", 100, 60 * S, keys()))
    records = explain_rule(RuleSet([r]), [ev(0, ms=50), ev(S), ev(2 * S, ms=250), ev(3 * S, ms=200)], "t")
    assert [x.outcome for x in records] == [WINDOW, WINDOW, FIRED, WINDOW]
    assert records[0].detail == "threshold avg of `fields.ms` = 50.0 over 1 values within 1m for group {}: not > 100"
    assert records[1].detail == "threshold value `fields.ms` is missing or not a number"
    assert records[3].detail.endswith("> 100 holds but already fired; fires again once it has been false")
