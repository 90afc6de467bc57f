"""Engine throughput as the rule count grows: events/s through `Engine.process` with 1, 10, 100 and 1000 rules,
where each event can match only one rule (one (provider, event) pair per rule, as a rule pack mostly is).

    .venv/bin/python -m benchmarks.engine_scaling [--events N] [--rules 1,10,100,1000] [--repeat 3] [--yaml]

Rules are built directly (a hand-written stand-in for the compiled `fields.status >= 500`) or, with --yaml, written
as a rule file and loaded by dyntel.rules.loader, so the conditions are the real compiled ones. Half the events meet
their rule's condition. Three shapes: no window, a count window grouped by pid, and events that no rule's `match`
takes (the cost of the lookup alone). No scheduler: firings are made but no action runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

from dyntel.engine.engine import Engine, default_index
from dyntel.event import Encoding, Event, FieldInfo, Schema
from dyntel.rules.model import CompiledRule, CountWindow, GroupKeys, Match, RuleSet, Window

S = 1_000_000_000
SCHEMA = Schema((FieldInfo("status", Encoding.VALUE32), FieldInfo("path", Encoding.ZSTRING_CHAR8)))


def is_5xx(e: Event) -> bool:
    status = e.fields.get("status")
    return isinstance(status, int) and status >= 500


def make_rules(n: int, window: Callable[[], Window | None]) -> RuleSet:
    return RuleSet([CompiledRule(name=f"r{i}", match=Match("Svc", f"E{i}"), predicate=is_5xx,
                                 condition_text="fields.status >= 500", window=window(), fingerprint=str(i))
                    for i in range(n)])


def load_yaml_rules(n: int, window: Window | None) -> RuleSet:
    from dyntel.rules.loader import load_rules

    lines = ["version: 1", "rules:"]
    for i in range(n):
        lines += [f"  - name: r{i}", f"    match: {{provider: Svc, event: E{i}}}",
                  "    condition: fields.status >= 500"]
        if isinstance(window, CountWindow):
            lines.append(f"    window: {{count: {window.count}, within: {window.within_ns // S}s, group_by: [pid]}}")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "rules.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return load_rules([path])


def make_events(count: int, n_rules: int, miss: bool = False) -> list[Event]:
    return [Event("Svc" if not miss else "Other", f"E{i % n_rules}", SCHEMA, (503 if i % 2 else 200, "/api"),
                  time=1_700_000_000 * S + i * 1000, pid=1000 + i % 64, tid=1, cpu=0) for i in range(count)]


def run(n_rules: int, n_events: int, window: Callable[[], Window | None], miss: bool = False,
        yaml: bool = False) -> tuple[float, int]:
    rules = load_yaml_rules(n_rules, window()) if yaml else make_rules(n_rules, window)
    engine = Engine(rules, None)
    events = make_events(n_events, n_rules, miss)
    process = engine.process
    start = time.perf_counter()
    fired = 0
    for e in events:
        fired += len(process(e))
    elapsed = time.perf_counter() - start
    return n_events / elapsed, fired


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rules", default="1,10,100,1000")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is shown")
    ap.add_argument("--yaml", action="store_true", help="load the rules from YAML (real compiled conditions)")
    args = ap.parse_args()
    pid = GroupKeys(("pid",), (lambda e: e.pid,))
    shapes: list[tuple[str, Callable[[], Window | None], bool]] = [
        ("no window", lambda: None, False),
        ("count 5/30s by pid", lambda: CountWindow(5, 30 * S, pid), False),
        ("no candidate", lambda: None, True),
    ]
    index = type(default_index([])).__module__ + "." + type(default_index([])).__name__
    how = "loaded from YAML" if args.yaml else "built in Python"
    print(f"{args.events} events a run, rules {how}, index {index}")
    print(f"{'rules':>6}  " + "  ".join(f"{name:>20}" for name, _, _ in shapes))
    for n in (int(x) for x in args.rules.split(",")):
        figures = [max(run(n, args.events, window, miss, args.yaml)[0] for _ in range(args.repeat))
                   for _, window, miss in shapes]
        print(f"{n:>6}  " + "  ".join(f"{f:>14,.0f} ev/s" for f in figures))


if __name__ == "__main__":
    main()
