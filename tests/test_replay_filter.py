"""The pre-decode filters replay gives sources: the C scan of perf.data agrees with the record loop, field tests
read fields exactly as the decoder does, rules' conditions become field tests only where that is safe, and
perf.data samples come out in perf's time order."""

from __future__ import annotations

import itertools
import operator
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from rule_helpers import compiled_rule
from support import ROOT, corpus_file, native_module

from dyntel.engine.prefilter import make_filters
from dyntel.event import ArrayKind, Event
from dyntel.event_json import format_event
from dyntel.replay import _by_rounds
from dyntel.rules.model import CompiledRule, Match
from dyntel.sources import FieldTest
from dyntel.sources.perf.data import PerfDataSource
from dyntel.sources.recordings import open_recording, open_recording_bytes

DEMO = ROOT / "dyntel" / "data" / "demo.perf.data"

native = native_module("dyntel._prefilter")

_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _holds(value: Any, op: str, values: tuple[int, ...]) -> bool:
    if op == "in":
        return value in values
    if op == "not in":
        return value not in values
    return _PY_OPS[op](value, values[0])


def read(path: Path, *, order: str = "round", want: Any = None, field_filter: Any = None,
         native_filter: bool = True) -> tuple[list[Event], PerfDataSource]:
    source = open_recording(str(path))
    assert isinstance(source, PerfDataSource)
    source.order = order
    source.want = want
    source.field_filter = field_filter
    source.native_filter = native_filter
    return list(source.events()), source


def recordings() -> list[Path]:
    return [DEMO, corpus_file("linuxtracepoints/perf.data")]


@pytest.mark.parametrize("order", ["round", "file"])
def test_native_scan_agrees_with_the_record_loop(order: str) -> None:
    rng = random.Random(7)
    for path in recordings():
        everything, _ = read(path, order=order)
        names = sorted({(e.provider, e.name) for e in everything})
        for _ in range(6):
            keep = {n for n in names if rng.random() < 0.5}

            def want(p: str, e: str, lvl: int | None, keep: set[tuple[str, str]] = keep) -> bool:
                return (p, e) in keep or p.startswith("Test")

            fast, fs = read(path, order=order, want=want)
            slow, ss = read(path, order=order, want=want, native_filter=False)
            assert [format_event(e) for e in fast] == [format_event(e) for e in slow]
            assert fs.stats.records == ss.stats.records
            assert fs.stats.skipped == ss.stats.skipped
            assert fs.stats.bad == ss.stats.bad == 0
            assert fs.rounds == ss.rounds
            assert fs.end_time == ss.end_time


def _integer_fields(source: PerfDataSource) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for attr in source.attrs:
        fmt = source.formats.get(attr.config & 0xFFFFFFFF)
        if fmt is None or fmt.kind != "tracefs":
            continue
        names = [f.name for f in fmt.user_fields if f.array == ArrayKind.NONE and f.dynamic is None
                 and f.show.name in ("SIGNED", "UNSIGNED", "HEX") and f.size >= f.element_size]
        out[source.event_name(attr)] = names
    return out


def test_field_tests_read_fields_as_the_decoder_does() -> None:
    rng = random.Random(11)
    for path in recordings():
        everything, source = read(path)
        fields = _integer_fields(source)
        assert fields
        for (provider, name), field_names in fields.items():
            of_type = [e for e in everything if (e.provider, e.name) == (provider, name)]
            for field in field_names:
                seen = sorted({e.fields[field] for e in of_type})
                pivots = [seen[0], seen[len(seen) // 2], seen[-1], seen[-1] + 1, -1, 0, 2**64 - 1, -(2**63)]
                for op, pivot in itertools.product(["==", "!=", "<", "<=", ">", ">="], pivots):
                    tests: tuple[FieldTest, ...] = ((field, op, (pivot,)),)
                    check(path, provider, name, tests, everything)
                members = (*rng.sample(seen, min(3, len(seen))), 12345)
                check(path, provider, name, ((field, "in", members),), everything)
                check(path, provider, name, ((field, "not in", members),), everything)


def check(path: Path, provider: str, name: str, tests: tuple[FieldTest, ...], everything: list[Event]) -> None:
    def field_filter(p: str, e: str) -> Sequence[Sequence[FieldTest]] | None:
        return [tests] if (p, e) == (provider, name) else None

    kept, source = read(path, want=lambda p, e, lvl: (p, e) == (provider, name), field_filter=field_filter)
    expect = [e for e in everything if (e.provider, e.name) == (provider, name)
              and all(_holds(e.fields[f], op, v) for f, op, v in tests)]
    assert [format_event(e) for e in kept] == [format_event(e) for e in expect], tests
    assert source.stats.skipped.get("filtered", 0) == len(everything) - len(expect)


def test_alternatives_keep_what_any_rule_may_want() -> None:
    everything, _ = read(DEMO)
    opens = [e for e in everything if e.name == "sys_enter_openat"]
    flags = sorted({e.fields["flags"] for e in opens})
    alternatives = [[("flags", "==", (flags[0],))], [("flags", "==", (flags[-1],)), ("dfd", "<", (0,))]]
    kept, _ = read(DEMO, want=lambda p, e, lvl: e == "sys_enter_openat",
                   field_filter=lambda p, e: alternatives if e == "sys_enter_openat" else None)
    expect = [e for e in opens if e.fields["flags"] == flags[0]
              or (e.fields["flags"] == flags[-1] and e.fields["dfd"] < 0)]
    assert kept and [format_event(e) for e in kept] == [format_event(e) for e in expect]


def test_unknown_fields_and_strings_keep_everything() -> None:
    everything, _ = read(DEMO)
    execs = [e for e in everything if e.name == "sched_process_exec"]
    for tests in ([("nope", "==", (1,))], [("filename", "==", (1,))]):
        kept, _ = read(DEMO, want=lambda p, e, lvl: e == "sched_process_exec",
                       field_filter=lambda p, e, t=tests: [t])
        assert len(kept) == len(execs)


def test_a_damaged_recording_falls_back_to_the_record_loop() -> None:
    data = bytearray(DEMO.read_bytes())
    source = open_recording_bytes(bytes(data), "demo")
    assert isinstance(source, PerfDataSource)
    list(source.events())
    start = (source.data_range or (0, 0))[0]
    # A record header in the middle of the data with a size under 8: the C scan declines, the loop reports it.
    pos = start
    for _ in range(200):
        pos += int.from_bytes(data[pos + 6 : pos + 8], "little")
    data[pos + 6 : pos + 8] = (3).to_bytes(2, "little")
    results = []
    for native_filter in (True, False):
        s = open_recording_bytes(bytes(data), "demo")
        assert isinstance(s, PerfDataSource)
        s.want = lambda p, e, lvl: e == "sched_process_exec"
        s.native_filter = native_filter
        results.append(([format_event(e) for e in s.events()], s.stats.bad, dict(s.stats.skipped)))
    assert results[0] == results[1]
    assert results[0][1] >= 1


# -- rules to field tests -----------------------------------------------------------------------------------------
# (the derivation itself: tests/test_rules_requirements.py)

def rule(condition: str, name: str = "r", provider: str = "raw_syscalls", event: str = "sys_enter") -> CompiledRule:
    return compiled_rule(condition, name, Match(provider, event))


def test_filters_from_rules() -> None:
    rules = [rule("fields.id == 59 and pid > 1", "a"), rule("fields.id in [0, 1]", "b"),
             rule("fields.prev_prio < 10", "c", "sched", "sched_switch"),
             rule("process.name == 'x'", "d", "sched", "sched_wakeup")]
    want, field_filter = make_filters(rules)
    assert want("raw_syscalls", "sys_enter", None) and not want("raw_syscalls", "sys_exit", None)
    assert field_filter("raw_syscalls", "sys_enter") == ((("id", "==", (59,)),), (("id", "in", (0, 1)),))
    assert field_filter("sched", "sched_switch") == ((("prev_prio", "<", (10,)),),)
    assert field_filter("sched", "sched_wakeup") is None  # rule d may want any wakeup
    # The explained rule sees every event of its type.
    _, explaining = make_filters(rules, explain="a")
    assert explaining("raw_syscalls", "sys_enter") is None


def test_filters_from_conditions_without_match() -> None:
    rules = [compiled_rule('provider == "raw_syscalls" and event == "sys_enter" and fields.id == 59', "a", Match()),
             compiled_rule('event in ["sched_switch", "sched_wakeup"] and fields.prev_prio < 10', "b", Match())]
    want, field_filter = make_filters(rules)
    assert want("raw_syscalls", "sys_enter", None) and not want("raw_syscalls", "sys_exit", None)
    assert want("sched", "sched_wakeup", None) and not want("sched", "sched_waking", None)
    assert field_filter("raw_syscalls", "sys_enter") == ((("id", "==", (59,)),),)
    assert field_filter("sched", "sched_wakeup") == ((("prev_prio", "<", (10,)),),)
    # Explained, rule a is taken by its match alone (here: none), as the docs say of --explain.
    want, field_filter = make_filters(rules, explain="a")
    assert want("raw_syscalls", "sys_exit", None) and field_filter("raw_syscalls", "sys_enter") is None
    # A rule that compares the level takes only events that have one, of any type; tracefs events, which the field
    # filter is for, have none: such a rule does not keep them.
    levelled = compiled_rule("level <= 2", "c", Match())
    want, field_filter = make_filters([*rules, levelled])
    assert want("MyService", "Error", 2) and not want("MyService", "Info", 4) and not want("x", "y", None)
    assert field_filter("raw_syscalls", "sys_enter") == ((("id", "==", (59,)),),)
    # A level ceiling in `match` is passed by an event without a level: that rule keeps every event of its types.
    ceiling = compiled_rule("True", "d", Match(level=2))
    assert make_filters([*rules, ceiling])[1]("raw_syscalls", "sys_enter") is None


# -- time order by rounds ----------------------------------------------------------------------------------------

def test_rounds_are_merged_as_perf_does() -> None:
    # Round 1 holds times 1..5 and 20; round 2 holds 6..8, older than 20: sorting each round alone would hand 20
    # on before 6. perf's rule holds 20 until the round after next has started.
    batches = [(1, [1, 2, 3, 4, 5, 20]), (2, [6, 7, 8, 21]), (3, [22, 9]), (3, [30])]
    counter = [0]
    stream: list[tuple[int, Event]] = [(r, Event("p", "e", time=t)) for r, ts in batches for t in ts]

    def events() -> Any:
        for r, e in stream:
            counter[0] = r
            yield e

    late = [0]
    out = [e.time for e in _by_rounds(events(), lambda: counter[0], late)]
    # When round 3 starts, round 2 is closed: everything up to round 1's maximum (20) goes. Round 3's 9 is then
    # too late (perf would warn about it too): handed on, and counted.
    assert out == [1, 2, 3, 4, 5, 6, 7, 8, 20, 9, 21, 22, 30]
    assert late == [1]


def test_recorded_file_replays_in_time_order(tmp_path: Path) -> None:
    # The demo recording through the native scan and the rounds merge: non-decreasing times.
    from dyntel.replay import time_ordered

    source = open_recording(str(DEMO))
    assert isinstance(source, PerfDataSource)
    source.order = "round"
    source.want = lambda p, e, lvl: True
    late = [0]
    times = [e.time for e in time_ordered(source.events(), 4096, late, lambda: source.rounds)]
    assert times == sorted(times) and late == [0] and len(times) == 5657
