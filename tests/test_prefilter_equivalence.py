"""Replay with the index and the pre-filters derived from the compiled rules gives exactly what replay with no
pre-filter and an index on `match` alone gives: the same firings, and every rule sees the same events match. A
requirement that said no where a condition says yes would show here as a missing firing.

The rules are written for each recording from what it holds, without `match:` (so the index keys come from the
conditions alone): each event type by provider and name, its integer fields against values that occur (==, !=,
<, <=, >, >=, in, not in, negative numbers, chains), alternatives over two types, levels; and the bundled pack.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, corpus_file

from dyntel.event import Event
from dyntel.firing import Firing
from dyntel.replay import ReplayOptions, ReplayResult, replay
from dyntel.rules.loader import load, load_rules
from dyntel.rules.model import RuleSet
from dyntel.sources import Source
from dyntel.sources.recordings import open_recording

DEMO = ROOT / "dyntel" / "data" / "demo.perf.data"
MAX_TYPES = 24  # event types a recording's rules are written for (the most frequent, then by name)


def recordings() -> list[Path]:
    return [DEMO, corpus_file("linuxtracepoints/perf.data"),
            corpus_file("linuxtracepoints/EventHeaderInterceptorLE64.dat"),
            corpus_file("linuxtracepoints/perf.data.linux.json"),
            *sorted((ROOT / "rules" / "tests").glob("*/events.jsonl"))]


def _rule(name: str, condition: str) -> dict[str, Any]:
    return {"name": name, "condition": condition}


def rules_for(events: list[Event], mode: str) -> list[dict[str, Any]]:
    """`mode`: "everywhere" with rules that name no provider or event (every event reaches them, nothing is
    dropped); "named" without them; "tested" one rule per type, which tests one field for equality (so that the
    native field filter has samples to drop)."""
    counts = Counter((e.provider, e.name) for e in events)
    types = sorted(counts, key=lambda k: (-counts[k], k))[:MAX_TYPES]
    rules: list[dict[str, Any]] = []
    for i, (p, n) in enumerate(types):
        of_type = [e for e in events if (e.provider, e.name) == (p, n)]
        pe = f"provider == {json.dumps(p)} and event == {json.dumps(n)}"
        if mode != "tested":
            rules.append(_rule(f"t{i}", pe))
        other_p, other_n = types[(i + 1) % len(types)]
        if mode != "tested":
            rules.append(_rule(f"t{i}-or", f"({pe}) or (event == {json.dumps(other_n)} and "
                                            f"provider in [{json.dumps(other_p)}, \"nobody\"])"))
        ints = sorted({k for e in of_type for k, v in e.fields.items() if type(v) is int})
        values = {f: sorted({e.fields[f] for e in of_type if type(e.fields.get(f)) is int}) for f in ints}
        if mode == "tested":  # the field with the most values, tested against one of them
            ints = sorted(ints, key=lambda f: -len(values[f]))[:1]
        for j, f in enumerate(ints[:4]):
            seen = values[f]
            lo, mid, hi = seen[0], seen[len(seen) // 2], seen[-1]
            field = f"fields.{f}" if f.isidentifier() else f"fields[{json.dumps(f)}]"
            for k, cond in enumerate([
                f"event == {json.dumps(n)} and {field} == {mid}",
                f"provider == {json.dumps(p)} and {field} != {lo}",
                f"{field} < {mid} and event == {json.dumps(n)}",
                f"{mid} <= {field} and {pe}",
                f"event == {json.dumps(n)} and {lo - 1} < {field} <= {hi}",
                f"event == {json.dumps(n)} and {field} in [{lo}, {hi}, -1, 12345]",
                f"event == {json.dumps(n)} and {field} not in [{mid}]",
                f"event == {json.dumps(n)} and ({field} == {hi} or {field} == {lo})",
                f"event == {json.dumps(n)} and not {field} == {mid}",
                f"{field} == {mid}",  # no provider or event: evaluated for every event
            ]):
                if k == 0 or (k < 9 and mode != "tested") or mode == "everywhere":
                    rules.append(_rule(f"t{i}-f{j}-{k}", cond))
    for k, cond in enumerate(["level <= 4", "level >= 5", "level == 1", "level in [1, 4]", "level != 5",
                              "level < 3 or event == \"sched_switch\"", "level > 0 and level < 5"]):
        if mode != "tested" or "event" not in cond:
            rules.append(_rule(f"level-{k}", cond))
    return rules


def run(rules: RuleSet, path: Path, *, filter: bool, native: bool) -> tuple[list[tuple[Any, ...]], ReplayResult]:
    fired: list[tuple[Any, ...]] = []

    def on_firing(f: Firing, source: Source) -> None:
        e = f.event
        fired.append((f.rule, f.time, json.dumps(f.group, sort_keys=True, default=str),
                      None if e is None else (e.provider, e.name, e.time, e.cpu, e.pid, e.tid)))

    result = replay(rules, str(path), on_firing, ReplayOptions(dry_run=True, filter=filter, native=native))
    return fired, result


@pytest.mark.parametrize("mode", ["tested", "named", "everywhere"])
@pytest.mark.parametrize("path", recordings(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_derived_filters_lose_nothing(path: Path, mode: str, tmp_path: Path) -> None:
    events = list(open_recording(str(path)).events())
    f = tmp_path / "generated.yaml"
    f.write_text(json.dumps({"version": 1, "rules": rules_for(events, mode)}))  # JSON is YAML
    loaded = load([str(f), str(ROOT / "rules")])
    assert not loaded.errors, [str(e) for e in loaded.errors]
    rules = loaded.ruleset
    assert any(r.requires and r.requires[0].tests for r in rules.rules)
    # The reference: no pre-filter, and an index on `match` alone (nothing derived): every event reaches every rule.
    plain = RuleSet([dataclasses.replace(r, requires=None) for r in rules.rules], rules.files)
    unfiltered, base = run(plain, path, filter=False, native=False)
    assert unfiltered, "the rules fire on the recording"
    for native in (True, False):
        fired, result = run(rules, path, filter=True, native=native)
        assert fired == unfiltered
        assert {n: s.matched for n, s in result.engine.rules.items()} == \
               {n: s.matched for n, s in base.engine.rules.items()}
        # ... while the index offered the rules fewer events, and the filters dropped some before decoding them.
        assert result.engine.candidates < base.engine.candidates
        if mode == "tested" and native and path.suffix == ".data":
            assert result.filtered > 0


def test_the_demo_pack_is_not_a_candidate_for_every_event() -> None:
    # Before the requirements were derived, error-log-burst (match: {level: 2}) was a candidate for every one of the
    # demo recording's tracepoint events, which have no level; its condition compares the level, so none can match.
    rules = load_rules([str(ROOT / "rules")])
    _, result = run(rules, DEMO, filter=True, native=True)
    assert result.engine.rules["error-log-burst"].candidates == 0


@pytest.mark.parametrize("path", [DEMO, corpus_file("linuxtracepoints/perf.data")], ids=lambda p: p.name)
def test_each_rule_alone_loses_nothing(path: Path, tmp_path: Path) -> None:
    # Alone, a rule's field tests decide what the native scan drops (with others, any rule that keeps an event keeps
    # it): each form of condition, by itself, on the most frequent types, against the same rule with nothing derived.
    events = list(open_recording(str(path)).events())
    dropped = 0
    for i, spec in enumerate(r for r in rules_for(events, "named") if r["name"].split("-")[0] in ("t0", "t1")):
        f = tmp_path / f"r{i}.yaml"
        f.write_text(json.dumps({"version": 1, "rules": [spec]}))
        rules = load_rules([str(f)])
        plain = RuleSet([dataclasses.replace(r, requires=None) for r in rules.rules], rules.files)
        expected, _ = run(plain, path, filter=False, native=False)
        fired, result = run(rules, path, filter=True, native=True)
        assert fired == expected, spec
        dropped += result.filtered
    assert dropped > 0
