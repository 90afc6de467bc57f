"""`dyntel run` beside a hostile producer: one process writes malformed EventHeader events (tests/vm/
hostile_producer.py: truncated payloads, block lengths that lie, unknown flags, wrong levels, missing or broken
metadata, garbage; seeded, so a failure repeats) as fast as it can, while a well-behaved one writes Ticks.

The hostile provider is one a rule listens to (every event of it), so that dyntel decodes its payloads: an event no
rule wants is dropped by name before its payload is read, and a bad payload of such an event is never seen.

dyntel keeps running, counts every bad event under its reason (dyntel_events_malformed_total{reason} on /metrics),
reports no samples lost by the kernel, and fires on every one of the good producer's events, each once, with its
fields right.

Ring size: the default rings are 4 MiB a CPU here (2 CPUs). The whole burst (N_BAD malformed events of at most
~250 bytes as samples, N_GOOD Ticks) is under 4 MiB even if every event lands on one CPU and dyntel read nothing
until the end, so no loss is possible at any rate; the test checks the kernel's own count of lost samples anyway.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hostile_producer import KINDS
from producer import EVENT_NAME, expected_fields
from vmhelpers import HERE, WAIT, DyntelRun, Producer, wait_for

N_GOOD = 2000
N_BAD = 12000
SEED = 20261206
RULES = """\
version: 1
rules:
  - name: every-tick
    match: {provider: GOOD, event: EVENT}
    actions:
      - log: {message: "tick {fields.seq}"}
  - name: good-ping
    match: {provider: GOOD, event: Ping}
    actions:
      - log: {message: ping}
  - name: hostile-any
    match: {provider: HOSTILE}
    actions:
      - log: {message: "hostile {event}"}
"""


class Hostile(Producer):
    """tests/vm/hostile_producer.py in a process of its own (the Producer protocol, another script)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(HERE / "hostile_producer.py"), name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = self._line().split()
        assert ready[0] == "ready", ready
        self.write_index = int(ready[1])
        self.enabled_at_start = ready[2] == "1"

    def fuzz(self, n: int, seed: int) -> tuple[int, float, dict[str, int]]:
        words = self.ask(f"fuzz {n} {seed}").split()
        assert words[0] == "wrote", words
        counts = {k: int(v) for k, v in (w.split("=") for w in words[4].split(","))}
        return int(words[1]), float(words[3]), counts


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as r:
        return str(r.read().decode())


def _samples(text: str, name: str) -> dict[str, float]:
    """label value (or "" without labels) -> value, for one metric family's samples."""
    out = {}
    for m in re.finditer(rf'^{name}(?:{{reason="([^"]*)"}})? (\S+)$', text, re.M):
        out[m[1] or ""] = float(m[2])
    return out


def test_dyntel_run_counts_a_hostile_producers_events_and_loses_no_good_one(
        producers: Callable[[str], Producer], tmp_path: Path) -> None:
    good_provider, hostile_provider = f"DyntelGood{os.getpid()}", f"DyntelHostile{os.getpid()}"
    good = producers(f"{good_provider}_L5K1")
    hostile = Hostile(f"{hostile_provider}_L5K1")
    port = 20000 + os.getpid() % 20000
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("GOOD", good_provider).replace("HOSTILE", hostile_provider)
                     .replace("EVENT", EVENT_NAME))
    run = DyntelRun(rules, "--dry-run", "--metrics-listen", f"127.0.0.1:{port}")
    seen = ""
    results: dict[str, object] = {}
    try:
        # dyntel run starts slowly under TCG (imports from 9p, on a machine other jobs share)
        wait_for("both enabled by dyntel run", lambda: good.enabled and hostile.enabled, timeout=6 * WAIT)
        wait_for("a good ping fired", lambda: good.ping() == 1 and bool(run.of("good-ping")), timeout=2 * WAIT)
        wait_for("a hostile ping fired", lambda: hostile.ping() == 1 and bool(run.of("hostile-any")),
                 timeout=2 * WAIT)

        # Both at once, from two processes: the good Ticks interleave with the burst of malformed events.
        def burst() -> None:
            results["hostile"] = hostile.fuzz(N_BAD, SEED)

        thread = threading.Thread(target=burst)
        thread.start()
        results["good"] = good.write(N_GOOD)
        thread.join(timeout=10 * WAIT)
        assert not thread.is_alive(), "the hostile producer did not finish"
        assert results["good"] == N_GOOD, results
        wait_for(f"{N_GOOD} firings", lambda: len(run.of("every-tick")) >= N_GOOD, timeout=10 * WAIT)
        wait_for("every bad event counted",
                 lambda: sum(_samples(_metrics(port), "dyntel_events_malformed_total").values()) >= N_BAD,
                 timeout=10 * WAIT)
        assert run.proc.poll() is None, "dyntel run exited under the hostile producer"
        results["metrics"] = _metrics(port)
    except AssertionError as e:
        seen = f"{e}: {len(run.firings)} firings seen, {results}"
        try:
            text = _metrics(port)
            seen += f"\nmetrics: {[line for line in text.splitlines() if line.startswith('dyntel_events')]}"
        except OSError as e2:
            seen += f"\nno metrics: {e2}"
    finally:
        status, err = run.stop()
        hostile.kill()
    assert not seen and status == 0, f"{seen}\n{err}"

    written, seconds, kinds = results["hostile"]  # type: ignore[misc]
    assert written == N_BAD, kinds
    print(f"hostile producer: {written} malformed events in {seconds:.2f} s ({written / seconds:.0f}/s): {kinds}")

    metrics = str(results["metrics"])
    lost = _samples(metrics, "dyntel_events_lost_total")
    assert lost.get("", 0) == 0, f"the kernel lost samples: {lost} (rings too small for this rate)"
    expected: dict[str, int] = {}
    for kind, n in kinds.items():
        reason = KINDS[kind][1]
        expected[reason] = expected.get(reason, 0) + n
    counted = {r: int(v) for r, v in _samples(metrics, "dyntel_events_malformed_total").items()}
    assert counted == expected, f"counted {counted}, written {expected}"
    print(f"dyntel counted: {counted}")

    ticks = run.of("every-tick")
    by_seq = sorted(ticks, key=lambda f: f["event"]["seq"])
    assert [f["event"]["seq"] for f in by_seq] == list(range(N_GOOD)), "good events lost or repeated"
    for seq, firing in enumerate(by_seq):
        want = expected_fields(seq)
        assert {k: firing["event"][k] for k in want} == want
