"""Engine throughput as the rule count grows: events/s through `Engine.process` with 1, 10, 100 and 1000 rules,
where each event can match only one rule (one (provider, event) pair per rule, as a rule pack mostly is).

    .venv/bin/python -m benchmarks.engine_scaling [--events N] [--rules 1,10,100,1000]

Rules are built directly (a compiled-condition stand-in: `fields.status >= 500`), not loaded from YAML, so the
figures are the engine's and the index's; half the events meet their rule's condition. Three shapes: no window,
a count window grouped by pid, and a rule with no candidate event at all (the cost of the lookup alone). No
scheduler: firings are made but no action runs.
"""

from __future__ import annotations

import argparse
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


def make_events(count: int, n_rules: int, miss: bool = False) -> list[Event]:
    return [Event("Svc" if not miss else "Other", f"E{i % n_rules}", SCHEMA, (503 if i % 2 else 200, "/api"),
                  time=1_700_000_000 * S + i * 1000, pid=1000 + i % 64, tid=1, cpu=0) for i in range(count)]


def run(n_rules: int, n_events: int, window: Callable[[], Window | None], miss: bool = False) -> tuple[float, int]:
    engine = Engine(make_rules(n_rules, window), None)
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
    args = ap.parse_args()
    pid = GroupKeys(("pid",), (lambda e: e.pid,))
    shapes: list[tuple[str, Callable[[], Window | None], bool]] = [
        ("no window", lambda: None, False),
        ("count 5/30s by pid", lambda: CountWindow(5, 30 * S, pid), False),
        ("no candidate", lambda: None, True),
    ]
    index = type(default_index([])).__module__ + "." + type(default_index([])).__name__
    print(f"{args.events} events a run, index {index}")
    print(f"{'rules':>6}  " + "  ".join(f"{name:>20}" for name, _, _ in shapes))
    for n in (int(x) for x in args.rules.split(",")):
        figures = [run(n, args.events, window, miss)[0] for _, window, miss in shapes]
        print(f"{n:>6}  " + "  ".join(f"{f:>14,.0f} ev/s" for f in figures))


if __name__ == "__main__":
    main()
