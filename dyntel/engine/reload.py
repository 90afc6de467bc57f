"""Hot reload of rule files: watch them (and SIGHUP), load the new set off the event loop, swap it in between events.

Loading (YAML, condition compilation) happens on a background thread so that a slow or broken file never stalls
events. The swap itself is done by the event loop, which calls `pending()` between two events: the engine is only
ever touched from the loop's thread, no event is processed half under one rule set and half under another, and
none is lost (events wait in the source while the swap runs, which is a dictionary rebuild, not a load).

A file that does not load leaves the running set in place; the errors are logged as `file:line:column: message`
and kept in `stats.last_error`. `ReloadStats` is the self-metrics view: reloads applied, failures, attempts.

Changes are seen through watchfiles (inotify) when it is installed, else by polling modification times. Parent
directories are watched rather than the files themselves, because editors and config managers replace a file by
renaming a new one over it, which ends an inotify watch on the old inode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from dyntel.rules.model import RuleSet

log = logging.getLogger("dyntel.reload")

RULE_SUFFIXES = (".yaml", ".yml")


class ReplacesRules(Protocol):
    def replace_rules(self, new_ruleset: RuleSet) -> Any: ...


Loader = Callable[[Sequence[str]], RuleSet]


@dataclass(slots=True)
class ReloadStats:
    attempts: int = 0  # loads tried, whatever their outcome
    reloads: int = 0  # rule sets handed to the engine
    failures: int = 0  # loads that failed; the running set stayed
    last_error: list[str] = field(default_factory=list)  # file:line:column: message, of the last failure
    last_reason: str = ""  # what asked for the last load: a changed file, SIGHUP, a call
    last_reload_time: float | None = None  # time.time() of the last swap

    def to_json(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "reloads": self.reloads, "failures": self.failures,
                "last_error": list(self.last_error), "last_reason": self.last_reason,
                "last_reload_time": self.last_reload_time}


def _default_loader(paths: Sequence[str]) -> RuleSet:
    from dyntel.rules.loader import load_rules

    return load_rules(paths)


def error_lines(e: BaseException) -> list[str]:
    """A load error as lines of `file:line:column: message`, whatever collection the exception keeps them in."""
    entries = getattr(e, "errors", None)
    if isinstance(entries, list | tuple) and entries:
        return [str(x) for x in entries]
    return [line for line in str(e).splitlines() if line.strip()] or [type(e).__name__]


_STOP = object()


class RuleReloader:
    """Reloads the rule files `paths` into `engine` when they change or on SIGHUP.

    Typical use in an event loop:

        reloader = RuleReloader(paths, engine, ruleset)
        reloader.start()                  # watcher, loader thread, SIGHUP handler (from the main thread)
        for event in source.events():
            reloader.pending()            # swaps a freshly loaded set in, between two events
            firings = engine.process(event)
        reloader.stop()

    A live loop that waits for events with a timeout should call `pending()` on its idle ticks too, so that a
    reload is not held back until traffic resumes.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        engine: ReplacesRules,
        ruleset: RuleSet | None = None,
        *,
        loader: Loader | None = None,
        watch: bool = True,
        use_watchfiles: bool | None = None,
        poll_interval: float = 1.0,
        debounce_ms: int = 400,
        sighup: bool = True,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.engine = engine
        self.current = ruleset
        self.stats = ReloadStats()
        self._loader: Loader = loader or _default_loader
        self._watch = watch
        self._use_watchfiles = use_watchfiles
        self._poll_interval = poll_interval
        self._debounce_ms = debounce_ms
        self._sighup = sighup
        # SimpleQueue.put is reentrant, so the SIGHUP handler may call it whatever the main thread was doing
        # (a Lock or Condition taken in a handler can deadlock against the interrupted code holding it).
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._ready: tuple[RuleSet, str] | None = None
        self._lock = threading.Lock()
        self._attempted = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._old_handler: Any = None
        self._handler_installed = False
        self.watching: str = "none"  # how changes are seen: watchfiles, polling or none

    # -- the event loop's side ------------------------------------------------------------------------------

    def pending(self) -> bool:
        """Call between two events. When a newly loaded rule set is waiting, hand it to the engine now and return
        True; otherwise return False at the cost of one attribute read."""
        if self._ready is None:
            return False
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is None:
            return False
        return self._apply(*ready)

    def reload_now(self, reason: str = "requested") -> bool:
        """Load and swap in synchronously, from the event loop's thread (between events). True when swapped."""
        ruleset = self._load(reason)
        if ruleset is None:
            return False
        with self._lock:
            self._ready = None  # this load is newer than anything the background thread had left
        return self._apply(ruleset, reason)

    def _apply(self, ruleset: RuleSet, reason: str) -> bool:
        old = self.current
        try:
            self.engine.replace_rules(ruleset)
        except Exception as e:  # the engine refused the set and kept its own; so do we
            self._failed(reason, [f"the engine refused the new rules: {type(e).__name__}: {e}"])
            return False
        self.current = ruleset
        self.stats.reloads += 1
        self.stats.last_reload_time = time.time()
        log.info("rules reloaded (%s): %s", reason, describe_change(old, ruleset))
        for warning in ruleset.warnings:
            log.warning("%s", warning)
        return True

    # -- requests (any thread, signal handlers) -------------------------------------------------------------

    def request(self, reason: str = "requested") -> None:
        """Ask the background thread for a load. Safe from any thread and from a signal handler."""
        self._requests.put(reason)

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        self._requests.put("SIGHUP")

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        loader = threading.Thread(target=self._load_loop, name="dyntel-rule-loader", daemon=True)
        loader.start()
        self._threads.append(loader)
        if self._watch:
            watcher = threading.Thread(target=self._watch_loop, name="dyntel-rule-watcher", daemon=True)
            watcher.start()
            self._threads.append(watcher)
        if self._sighup:
            self.install_sighup()

    def stop(self, timeout: float = 5.0) -> None:
        self.uninstall_sighup()
        self._stop.set()
        self._requests.put(_STOP)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def __enter__(self) -> RuleReloader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def install_sighup(self) -> bool:
        """Reload on SIGHUP. Python runs handlers in the main thread only, so elsewhere this does nothing."""
        if self._handler_installed or not hasattr(signal, "SIGHUP"):
            return self._handler_installed
        if threading.current_thread() is not threading.main_thread():
            log.warning("SIGHUP reload not installed: not on the main thread")
            return False
        self._old_handler = signal.signal(signal.SIGHUP, self._on_sighup)
        self._handler_installed = True
        return True

    def uninstall_sighup(self) -> None:
        if not self._handler_installed:
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._old_handler if self._old_handler is not None else signal.SIG_DFL)
        self._handler_installed = False

    def wait_for_attempts(self, n: int, timeout: float) -> bool:
        """Block until at least `n` loads were attempted, whatever their outcome (tests, and a loop that wants to
        apply a reload it asked for before its next event)."""
        with self._attempted:
            return self._attempted.wait_for(lambda: self.stats.attempts >= n, timeout)

    # -- loading --------------------------------------------------------------------------------------------

    def _load(self, reason: str) -> RuleSet | None:
        try:
            ruleset = self._loader(self.paths)
        except Exception as e:  # whatever a loader raises, the running set must survive it
            self._failed(reason, error_lines(e))
            with self._attempted:  # counted last, so a waiter on the count sees the failure's details
                self.stats.attempts += 1
                self._attempted.notify_all()
            return None
        with self._attempted:
            self.stats.attempts += 1
            self.stats.last_error = []
            self.stats.last_reason = reason
            self._attempted.notify_all()
        return ruleset

    def _failed(self, reason: str, lines: list[str]) -> None:
        self.stats.failures += 1
        self.stats.last_error = lines
        self.stats.last_reason = reason
        running = len(self.current.rules) if self.current is not None else 0
        log.error("rule reload failed (%s); keeping the %d rules running:\n  %s", reason, running, "\n  ".join(lines))

    def _load_loop(self) -> None:
        while True:
            item = self._requests.get()
            if item is _STOP:
                return
            reasons = [str(item)]
            # Coalesce a burst (an editor's save is often several events, a deploy touches every file).
            while True:
                try:
                    more = self._requests.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    return
                reasons.append(str(more))
            reason = ", ".join(dict.fromkeys(reasons))
            ruleset = self._load(reason)
            if ruleset is not None:
                with self._lock:
                    self._ready = (ruleset, reason)

    # -- watching -------------------------------------------------------------------------------------------

    def watched_files(self) -> set[str]:
        files = {os.path.abspath(p) for p in self.paths if not os.path.isdir(p)}
        if self.current is not None:
            files.update(os.path.abspath(f) for f in self.current.files)
        return files

    def watched_dirs(self) -> set[str]:
        """Directories given as paths: any rule file that appears, changes or goes away in them counts."""
        return {os.path.abspath(p) for p in self.paths if os.path.isdir(p)}

    def _relevant(self, path: str) -> bool:
        path = os.path.abspath(path)
        if path in self.watched_files():
            return True
        if not path.endswith(RULE_SUFFIXES):
            return False
        return any(path.startswith(d + os.sep) for d in self.watched_dirs())

    def _watch_loop(self) -> None:
        use = self._use_watchfiles
        if use is None or use:
            try:
                import watchfiles
            except ImportError:
                if use:
                    log.warning("watchfiles is not installed; watching rule files by polling")
            else:
                self.watching = "watchfiles"
                try:
                    self._watch_with_watchfiles(watchfiles)
                    return
                except Exception as e:  # inotify limits and the like: polling still works
                    log.warning("watching rule files with watchfiles failed (%s); polling instead", e)
        self.watching = "polling"
        self._watch_by_polling()

    def _watch_roots(self) -> list[str]:
        roots = set(self.watched_dirs())
        roots.update(os.path.dirname(f) for f in self.watched_files())
        return sorted(r for r in roots if os.path.isdir(r))

    def _watch_with_watchfiles(self, watchfiles: Any) -> None:
        def accept(change: Any, path: str) -> bool:
            return self._relevant(path)

        roots = self._watch_roots()
        if not roots:
            self._watch_by_polling()
            return
        for changes in watchfiles.watch(*roots, watch_filter=accept, debounce=self._debounce_ms, step=50,
                                        stop_event=self._stop, raise_interrupt=False, rust_timeout=1000):
            if self._stop.is_set():
                return
            names = sorted({os.path.relpath(p) for _, p in changes})
            self.request("changed: " + ", ".join(names))

    def _snapshot(self) -> dict[str, tuple[int, int, int]]:
        snap: dict[str, tuple[int, int, int]] = {}
        paths: set[str] = set(self.watched_files())
        for d in self.watched_dirs():
            for root, _dirs, names in os.walk(d):
                paths.update(os.path.join(root, n) for n in names if n.endswith(RULE_SUFFIXES))
        for p in paths:
            with contextlib.suppress(OSError):
                st = os.stat(p)
                snap[p] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return snap

    def _watch_by_polling(self) -> None:
        before = self._snapshot()
        while not self._stop.wait(self._poll_interval):
            now = self._snapshot()
            if now != before:
                changed = sorted(os.path.relpath(p) for p in set(now) | set(before) if now.get(p) != before.get(p))
                before = now
                self.request("changed: " + ", ".join(changed))


def describe_change(old: RuleSet | None, new: RuleSet) -> str:
    """"12 rules: 1 added (x), 1 changed (y), 10 unchanged", the line ops read to see what a reload did."""
    new_by_name = {r.name: r.fingerprint for r in new.rules}
    if old is None:
        return f"{len(new.rules)} rules"
    old_by_name = {r.name: r.fingerprint for r in old.rules}
    added = sorted(set(new_by_name) - set(old_by_name))
    removed = sorted(set(old_by_name) - set(new_by_name))
    changed = sorted(n for n in set(new_by_name) & set(old_by_name) if new_by_name[n] != old_by_name[n])
    unchanged = len(new_by_name) - len(added) - len(changed)
    parts: list[str] = []
    for label, names in (("added", added), ("removed", removed), ("changed", changed)):
        if names:
            parts.append(f"{len(names)} {label} ({', '.join(_abbrev(names))})")
    parts.append(f"{unchanged} unchanged")
    return f"{len(new.rules)} rules: " + ", ".join(parts)


def _abbrev(names: Iterable[str], most: int = 5) -> list[str]:
    names = list(names)
    return names if len(names) <= most else [*names[:most], f"... {len(names) - most} more"]


def watch_available() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["ReloadStats", "RuleReloader", "describe_change", "error_lines", "watch_available"]
