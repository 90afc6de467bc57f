"""Hot reload: a changed file or SIGHUP loads the rules off the loop, `pending()` swaps them in between events,
window state of unchanged rules survives, and a broken file leaves the running set alone."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dyntel.engine.reload import RuleReloader, describe_change, watch_available
from dyntel.event import Encoding, Event, FieldInfo, Format, Schema
from dyntel.rules.model import CompiledRule, Match, RuleSet

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_768_046_400 * 1_000_000_000
# Seconds a test waits for the watcher, generous for a loaded CI machine. Every wait here is bounded, so a broken
# reloader fails a test instead of hanging it.
WAIT = 15.0


# -- the mechanics, with a stand-in loader and engine ---------------------------------------------------------------


class LoadFailed(Exception):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def fake_loader(paths: Sequence[str]) -> RuleSet:
    """One rule a line, named by the line; a line "BROKEN" is an error at that line."""
    rules: list[CompiledRule] = []
    errors: list[str] = []
    for p in paths:
        for i, line in enumerate(Path(p).read_text().splitlines(), 1):
            if line == "BROKEN":
                errors.append(f"{p}:{i}:1: expected a rule name")
            elif line:
                rules.append(CompiledRule(name=line, match=Match(), predicate=lambda e: True, condition_text="",
                                          fingerprint=line))
    if errors:
        raise LoadFailed(errors)
    return RuleSet(rules, tuple(paths))


class FakeEngine:
    def __init__(self) -> None:
        self.sets: list[RuleSet] = []
        self.thread: threading.Thread | None = None

    def replace_rules(self, new_ruleset: RuleSet) -> None:
        self.thread = threading.current_thread()
        self.sets.append(new_ruleset)


def names(rs: RuleSet) -> list[str]:
    return [r.name for r in rs.rules]


def wait_pending(r: RuleReloader, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if r.pending():
            return True
        time.sleep(0.02)
    return False


def rewrite(path: Path, text: str) -> None:
    """Replace the file as editors do (write a new file, rename it over the old), with a new mtime for pollers."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text("a\nb\n")
    return p


def test_pending_swaps_only_when_a_set_is_ready(rules_file: Path) -> None:
    engine = FakeEngine()
    r = RuleReloader([str(rules_file)], engine, fake_loader([str(rules_file)]), loader=fake_loader, watch=False,
                     sighup=False)
    with r:
        assert not r.pending()
        rules_file.write_text("a\nb\nc\n")
        r.request("test")
        assert r.wait_for_attempts(1, WAIT)
        assert not engine.sets, "loading must not touch the engine: only pending() does, between events"
        assert wait_pending(r)
        assert engine.thread is threading.current_thread()
    assert [names(s) for s in engine.sets] == [["a", "b", "c"]]
    assert r.stats.reloads == 1 and r.stats.failures == 0 and r.stats.attempts == 1
    assert r.current is engine.sets[-1]


@pytest.mark.parametrize("how", ["watchfiles", "polling"])
def test_a_changed_file_is_reloaded(rules_file: Path, how: str) -> None:
    if how == "watchfiles" and not watch_available():
        pytest.skip("watchfiles is not installed")
    engine = FakeEngine()
    r = RuleReloader([str(rules_file)], engine, fake_loader([str(rules_file)]), loader=fake_loader,
                     use_watchfiles=how == "watchfiles", poll_interval=0.05, debounce_ms=50, sighup=False)
    with r:
        time.sleep(0.3)  # let the watcher take its first look before the change
        rewrite(rules_file, "a\nb\nnew\n")
        assert wait_pending(r), f"no reload after the file changed ({r.watching})"
        assert r.watching == how
    assert names(engine.sets[-1]) == ["a", "b", "new"]
    assert "rules.yaml" in r.stats.last_reason


def test_a_new_rule_file_in_a_watched_directory_counts(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text("a\n")

    def dir_loader(paths: Sequence[str]) -> RuleSet:
        return fake_loader(sorted(str(p) for p in Path(paths[0]).glob("*.yaml")))

    engine = FakeEngine()
    r = RuleReloader([str(tmp_path)], engine, dir_loader([str(tmp_path)]), loader=dir_loader, use_watchfiles=False,
                     poll_interval=0.05, sighup=False)
    with r:
        time.sleep(0.2)
        (tmp_path / "notes.txt").write_text("not a rule file")
        (tmp_path / "two.yaml").write_text("b\n")
        assert wait_pending(r)
    assert names(engine.sets[-1]) == ["a", "b"]


def test_a_broken_file_keeps_the_running_set(rules_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine()
    first = fake_loader([str(rules_file)])
    r = RuleReloader([str(rules_file)], engine, first, loader=fake_loader, watch=False, sighup=False)
    caplog.set_level(logging.ERROR, logger="dyntel.reload")
    with r:
        rules_file.write_text("a\nBROKEN\n")
        r.request("test")
        assert r.wait_for_attempts(1, WAIT)
        assert not r.pending()
    assert engine.sets == [] and r.current is first
    assert r.stats.failures == 1 and r.stats.reloads == 0
    assert r.stats.last_error == [f"{rules_file}:2:1: expected a rule name"]
    assert f"{rules_file}:2:1: expected a rule name" in caplog.text
    assert "keeping the 2 rules running" in caplog.text

    # Fixed again: the next load goes through and clears the error.
    rules_file.write_text("a\nb\n")
    assert r.reload_now("fixed")
    assert r.stats.last_error == [] and r.stats.reloads == 1


def test_sighup_triggers_a_reload(rules_file: Path) -> None:
    engine = FakeEngine()
    r = RuleReloader([str(rules_file)], engine, fake_loader([str(rules_file)]), loader=fake_loader, watch=False)
    before = signal.getsignal(signal.SIGHUP)
    with r:
        assert signal.getsignal(signal.SIGHUP) != before
        rules_file.write_text("a\nb\nhup\n")
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_pending(r)
    assert signal.getsignal(signal.SIGHUP) == before, "stop() gives SIGHUP back"
    assert names(engine.sets[-1]) == ["a", "b", "hup"]
    assert r.stats.last_reason == "SIGHUP"


def test_describe_change() -> None:
    def rs(*pairs: tuple[str, str]) -> RuleSet:
        return RuleSet([CompiledRule(name=n, match=Match(), predicate=lambda e: True, condition_text="",
                                     fingerprint=f) for n, f in pairs])

    text = describe_change(rs(("a", "1"), ("b", "1"), ("c", "1")), rs(("a", "1"), ("b", "2"), ("d", "1")))
    assert text == "3 rules: 1 added (d), 1 removed (c), 1 changed (b), 1 unchanged"


# -- with the real loader and engine ---------------------------------------------------------------------------------

SCHEMA = Schema((FieldInfo("status", Encoding.VALUE32, Format.SIGNED_INT),
                 FieldInfo("path", Encoding.ZSTRING_CHAR8, Format.STRING_UTF)))

BURST = """\
  - name: burst
    description: five 5xx from one pid within 30s
    match: {provider: MyService, event: RequestDone}
    condition: fields.status >= 500
    window: {count: 5, within: 30s, group_by: [pid]}
    actions: [{log: {message: "burst in {pid}"}}]
"""
TEAPOT = """\
  - name: teapot
    description: any 418
    match: {provider: MyService, event: RequestDone}
    condition: fields.status == 418
    actions: [{log: {message: "teapot"}}]
"""
ALWAYS_404 = """\
  - name: not-found
    description: any 404
    match: {provider: MyService, event: RequestDone}
    condition: fields.status == 404
    actions: [{log: {message: "404"}}]
"""


def request(sec: float, status: int, pid: int = 42) -> Event:
    return Event("MyService", "RequestDone", SCHEMA, [status, "/x"], time=T0 + round(sec * 1e9), pid=pid, tid=pid,
                 cpu=0, level=4)


def make_engine(ruleset: RuleSet) -> Any:
    from dyntel.engine.engine import Engine
    from dyntel.runtime.scheduler import Scheduler

    return Engine(ruleset, Scheduler(dry_run=True))


def load(paths: Sequence[str]) -> RuleSet:
    from dyntel.rules.loader import load_rules

    return load_rules(paths)


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    p = tmp_path / "live.yaml"
    p.write_text("version: 1\nrules:\n" + BURST + ALWAYS_404)
    return p


@pytest.mark.parametrize("how", ["watchfiles", "polling"])
def test_reload_mid_stream_keeps_window_state(pack: Path, how: str) -> None:
    """3 of 5 before the reload and 2 after fire once; a new rule applies from the next event on; a removed one
    stops."""
    if how == "watchfiles" and not watch_available():
        pytest.skip("watchfiles is not installed")
    ruleset = load([str(pack)])
    engine = make_engine(ruleset)
    r = RuleReloader([str(pack)], engine, ruleset, use_watchfiles=how == "watchfiles", poll_interval=0.05,
                     debounce_ms=50, sighup=False)
    fired: list[str] = []
    with r:
        time.sleep(0.3)
        for i in range(3):
            r.pending()
            fired += [f.rule for f in engine.process(request(i, 503))]
        fired += [f.rule for f in engine.process(request(3, 418))]
        assert fired == []
        rewrite(pack, "version: 1\nrules:\n" + BURST + TEAPOT)
        assert wait_pending(r), f"no reload ({r.watching}); last error: {r.stats.last_error}"
        fired += [f.rule for f in engine.process(request(4, 418))]
        assert fired == ["teapot"], "the new rule applies from the first event after the swap"
        fired += [f.rule for f in engine.process(request(5, 404))]
        assert fired == ["teapot"], "the removed rule no longer fires"
        for i in range(2):
            r.pending()
            fired += [f.rule for f in engine.process(request(6 + i, 503))]
    assert fired == ["teapot", "burst"]
    assert r.stats.reloads == 1


def test_broken_file_leaves_the_running_rules(pack: Path, caplog: pytest.LogCaptureFixture) -> None:
    ruleset = load([str(pack)])
    engine = make_engine(ruleset)
    r = RuleReloader([str(pack)], engine, ruleset, watch=False, sighup=False)
    caplog.set_level(logging.ERROR, logger="dyntel.reload")
    for i in range(3):
        engine.process(request(i, 503))
    pack.write_text("version: 1\nrules:\n" + BURST.replace("fields.status >= 500", "fields.status >= = 500"))
    assert not r.reload_now("test")
    assert r.stats.failures == 1
    assert any(line.startswith(f"{pack}:6:33: ") for line in r.stats.last_error), r.stats.last_error
    assert f"{pack}:6:33: " in caplog.text
    fired = [f.rule for i in range(2) for f in engine.process(request(3 + i, 503))]
    assert fired == ["burst"], "the old set, with its window state, still runs"
    assert [f.rule for f in engine.process(request(6, 404))] == ["not-found"]


def test_events_from_a_thread_none_lost(pack: Path) -> None:
    """A producer thread feeds events while the file changes; the loop swaps between events and counts them all."""
    import queue

    ruleset = load([str(pack)])
    engine = make_engine(ruleset)
    r = RuleReloader([str(pack)], engine, ruleset, use_watchfiles=False, poll_interval=0.02, sighup=False)
    q: queue.Queue[Event | None] = queue.Queue(maxsize=16)
    total = 400

    def produce() -> Iterator[Event]:
        for i in range(total):
            yield request(i * 0.01, 404 if i % 2 else 200)

    def producer() -> None:
        for e in produce():
            q.put(e)
        q.put(None)

    t = threading.Thread(target=producer)
    not_found = 0
    swapped_at: int | None = None
    with r:
        t.start()
        seen = 0
        while (event := q.get(timeout=WAIT)) is not None:
            if r.pending():
                swapped_at = seen
            not_found += sum(f.rule == "not-found" for f in engine.process(event))
            seen += 1
            if seen == 50:
                rewrite(pack, "version: 1\nrules:\n" + BURST + ALWAYS_404.replace("not-found", "missing"))
                r.wait_for_attempts(1, WAIT)
        t.join()
    assert seen == total
    assert swapped_at is not None and swapped_at >= 50
    assert not_found == len([i for i in range(swapped_at) if i % 2])


def test_an_engine_that_refuses_the_set_keeps_its_own(rules_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Refuses(FakeEngine):
        def replace_rules(self, new_ruleset: RuleSet) -> None:
            raise ValueError("two rules named 'a'")

    first = fake_loader([str(rules_file)])
    r = RuleReloader([str(rules_file)], Refuses(), first, loader=fake_loader, watch=False, sighup=False)
    caplog.set_level(logging.ERROR, logger="dyntel.reload")
    assert not r.reload_now("test")
    assert r.current is first
    assert r.stats.failures == 1 and r.stats.reloads == 0
    assert "the engine refused the new rules: ValueError: two rules named 'a'" in caplog.text


def test_without_watchfiles_it_polls(rules_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles now raises ImportError
    assert not watch_available()
    engine = FakeEngine()
    r = RuleReloader([str(rules_file)], engine, fake_loader([str(rules_file)]), loader=fake_loader,
                     poll_interval=0.05, sighup=False)
    with r:
        time.sleep(0.2)
        rewrite(rules_file, "polled\n")
        assert wait_pending(r)
        assert r.watching == "polling"
    assert names(engine.sets[-1]) == ["polled"]
