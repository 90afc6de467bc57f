"""dyntel's live perf source (dyntel.sources.perf.live) on real user_events: it turns producers' enable bits on and
off, sees every event with its fields, picks up a producer that registers later, listens to pre-registered names,
and counts malformed events without stopping. Run in the VM by tests/test_vm_harness.py."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest
from producer import EVENT_ID, EVENT_NAME, EVENT_TAG, EVENT_VERSION, MALFORMED_KINDS, expected_fields
from vmhelpers import WAIT, Producer, tracepoint_exists, wait_for

from dyntel.event import Event
from dyntel.sources.perf import user_events as ue
from dyntel.sources.perf.live import PerfLiveSource

N = 1000
Producers = Callable[[str], Producer]


def _unique(stem: str) -> str:
    return f"DyntelLive{stem}{os.getpid()}_L5K1"


class Listener:
    """A PerfLiveSource read on a thread of its own, as `dyntel run` reads it, collecting what it yields."""

    def __init__(self, *patterns: str, watch_interval: float = 1.0) -> None:
        self.source = PerfLiveSource(patterns, watch_interval=watch_interval)
        self.source.open()
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self.source.events():
                self.events.append(event)
        except BaseException as e:  # reported by close(), in the test's thread
            self.error = e

    def of(self, provider: str) -> list[Event]:
        return [e for e in self.events if e.provider == provider and e.name == EVENT_NAME]

    def close(self) -> None:
        self.source.stop()
        self._thread.join(timeout=WAIT)
        self.source.close()
        assert not self._thread.is_alive(), "the live source did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def listeners() -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(*patterns: str, watch_interval: float = 1.0) -> Listener:
        listener = Listener(*patterns, watch_interval=watch_interval)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        if listener._thread.is_alive():
            listener.source.stop()
            listener._thread.join(timeout=WAIT)
        listener.source.close()


def _check_ticks(events: list[Event], first_seq: int, pid: int) -> None:
    assert [e.fields["seq"] for e in events] == list(range(first_seq, first_seq + len(events)))
    times = [e.time or 0 for e in events]
    assert times == sorted(times)
    for event in events:
        want = expected_fields(int(event.fields["seq"]))
        assert {k: event.fields[k] for k in want} == want
        assert (event.pid, event.tid) == (pid, pid)
        assert (event.level, event.keyword, event.id, event.version, event.tag) == (5, 1, EVENT_ID, EVENT_VERSION,
                                                                                   EVENT_TAG)
        assert event.source == "user_events" and event.time_is_wall


def test_live_source_flips_the_bit_and_sees_every_event(producers: Producers,
                                                        listeners: Callable[..., Listener]) -> None:
    name = _unique("Ticks")
    provider = name.rsplit("_", 1)[0]
    producer = producers(name)
    assert not producer.enabled
    listener = listeners(f"user_events:{name}")
    assert listener.source.enabled == [f"user_events:{name}"]
    # The source enables its perf events before open() returns, so nothing written from now on is lost.
    assert producer.enabled
    assert producer.write(N) == N
    wait_for(f"{N} events seen", lambda: len(listener.of(provider)) >= N)
    listener.close()
    assert not producer.enabled
    assert producer.write(3) == 0
    _check_ticks(listener.of(provider), 0, producer.proc.pid)
    assert len(listener.of(provider)) == N
    assert listener.source.stats.lost == 0 and listener.source.stats.bad == 0


def test_live_add_and_remove_flip_every_producers_bit(producers: Producers,
                                                      listeners: Callable[..., Listener]) -> None:
    name = _unique("Toggle")
    first, second = producers(name), producers(name)
    listener = listeners()
    for _ in range(2):
        assert listener.source.add(f"user_events:{name}") == [f"user_events:{name}"]
        assert first.enabled and second.enabled
        assert listener.source.remove(f"user_events:{name}") == [f"user_events:{name}"]
        wait_for("disabled in both", lambda: not first.enabled and not second.enabled)
    listener.close()


def test_live_source_picks_up_a_producer_that_registers_later(producers: Producers,
                                                              listeners: Callable[..., Listener]) -> None:
    name = _unique("Late")
    provider = name.rsplit("_", 1)[0]
    listener = listeners(f"user_events:{provider}_*", watch_interval=0.2)
    assert listener.source.enabled == []
    producer = producers(name)
    wait_for("enabled by the watching source", lambda: producer.enabled)
    assert producer.write(N) == N
    wait_for(f"{N} events seen", lambda: len(listener.of(provider)) >= N)
    listener.close()
    wait_for("disabled once the source closed", lambda: not producer.enabled)
    _check_ticks(listener.of(provider), 0, producer.proc.pid)


def test_live_source_on_a_preregistered_name(producers: Producers, listeners: Callable[..., Listener]) -> None:
    name = _unique("Early")
    provider = name.rsplit("_", 1)[0]
    with ue.Registration([name]) as registration:
        listener = listeners(f"user_events:{name}")
        assert listener.source.enabled == [f"user_events:{name}"]
        assert registration.is_enabled(name)
        producer = producers(name)
        assert producer.enabled_at_start
        assert producer.write(N) == N
        wait_for(f"{N} events seen", lambda: len(listener.of(provider)) >= N)
        listener.close()
        assert not registration.is_enabled(name) and not producer.enabled
        producer.quit()
    wait_for("deleted once released", lambda: not tracepoint_exists(name))
    _check_ticks(listener.of(provider), 0, producer.proc.pid)


def test_live_source_counts_malformed_events_and_reads_on(producers: Producers,
                                                          listeners: Callable[..., Listener]) -> None:
    name = _unique("Bad")
    provider = name.rsplit("_", 1)[0]
    producer = producers(name)
    listener = listeners(f"user_events:{name}")
    assert producer.write(10) == 10
    for kind in MALFORMED_KINDS:
        assert producer.bad(kind) == 1
    assert producer.write(10) == 10
    wait_for("all good events seen", lambda: len(listener.of(provider)) >= 20)
    wait_for("the two non-EventHeader events seen", lambda: sum(e.name == name for e in listener.events) >= 2)
    listener.close()
    _check_ticks(listener.of(provider), 0, producer.proc.pid)
    stats = listener.source.stats
    assert stats.bad == 1, stats
    assert f"user_events:{name}" in str(stats.problems[0]), stats.problems
    plain = [e for e in listener.events if e.name == name]
    assert len(plain) == 2, [(e.provider, e.name) for e in listener.events if e.name != EVENT_NAME]
