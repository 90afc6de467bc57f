"""`dyntel run` on real user_events: a rule naming an EventHeader provider makes dyntel enable the producer's
tracepoint (its bit 0 before, 1 while, 0 after) and fire on every one of its events, with the fields right.

The bit turns 1 when dyntel opens the tracepoint, a moment before its perf events are enabled (the kernel sets it at
perf_event_open, and dyntel opens them disabled): events written in between are lost, as with `perf record`. So
the producer sends `Ping` events, which a second rule fires on, until one comes back, and only then the N `Tick`s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from producer import EVENT_ID, EVENT_NAME, EVENT_TAG, EVENT_VERSION, expected_fields
from vmhelpers import DyntelRun, Producer, tracepoint_exists, wait_for

N = 1000
RULES = """\
version: 1
rules:
  - name: every-tick
    match: {provider: PROVIDER, event: EVENT}
    actions:
      - log: {message: "tick {fields.seq}"}
  - name: ping
    match: {provider: PROVIDER, event: Ping}
    actions:
      - log: {message: ping}
"""




def _fired(run: DyntelRun, rule: str, within: float = 1.0) -> bool:
    try:
        wait_for(f"{rule} fired", lambda: bool(run.of(rule)), timeout=within)
    except AssertionError:
        return False
    return True


def test_dyntel_run_enables_the_producer_and_fires_on_every_event(producers: Callable[[str], Producer],
                                                                  tmp_path: Path) -> None:
    provider = f"DyntelRun{os.getpid()}"
    producer = producers(f"{provider}_L5K1")
    assert not producer.enabled
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("PROVIDER", provider).replace("EVENT", EVENT_NAME))
    run = DyntelRun(rules, "--dry-run")
    seen = ""
    try:
        wait_for("enabled by dyntel run", lambda: producer.enabled)
        wait_for("a ping fired", lambda: producer.ping() == 1 and _fired(run, "ping"))
        assert producer.write(N) == N
        wait_for(f"{N} firings", lambda: len(run.of("every-tick")) >= N)
    except AssertionError as e:
        seen = f"{e}: {len(run.firings)} seen"
    finally:
        status, err = run.stop()
    assert not seen and status == 0, f"{seen}\n{err}"
    wait_for("disabled once dyntel run exited", lambda: not producer.enabled)

    ticks = run.of("every-tick")
    assert len(ticks) == N, err
    pid = producer.proc.pid
    for seq, firing in enumerate(ticks):
        assert firing["rule"] == "every-tick"
        event = firing["event"]
        assert event["n"] == f"{provider}:{EVENT_NAME}"
        want = expected_fields(seq)
        assert {k: event[k] for k in want} == want
        meta = event["meta"]
        assert (meta["pid"], meta["tid"], meta["level"], meta["id"], meta["version"]) == (pid, pid, 5, EVENT_ID,
                                                                                         EVENT_VERSION)
        assert meta["tag"] == f"0x{EVENT_TAG:X}" and meta["keyword"] == "0x1"


def test_dyntel_run_pre_registers_so_a_producer_starts_enabled(producers: Callable[[str], Producer],
                                                             tmp_path: Path) -> None:
    """`--register NAME`: dyntel registers and enables the name before any producer exists, so a producer that
    starts later finds its bit already 1 and its very first events are seen (no ping needed)."""
    provider = f"DyntelPre{os.getpid()}"
    name = f"{provider}_L5K1"
    assert not tracepoint_exists(name)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("PROVIDER", provider).replace("EVENT", EVENT_NAME))
    run = DyntelRun(rules, "--dry-run", "--register", name)
    seen = ""
    try:
        wait_for("dyntel registered the name", lambda: tracepoint_exists(name))
        # dyntel's own registration word flips when its perf events have it on; give them a moment to be enabled.
        import time

        time.sleep(1.0)
        producer = producers(name)
        assert producer.enabled, "the producer's bit was not already on"
        assert producer.write(N) == N
        wait_for(f"{N} firings", lambda: len(run.of("every-tick")) >= N)
    except AssertionError as e:
        seen = f"{e}: {len(run.firings)} seen"
    finally:
        status, err = run.stop()
    assert not seen and status == 0, f"{seen}\n{err}"
    assert len(run.of("every-tick")) == N
