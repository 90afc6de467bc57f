"""The alert sender: one thread per (endpoint, protocol) that batches log records and never loses one it took.

`submit` only queues: the action that calls it returns at once. The sender thread takes up to `max_batch` records
(or what came within `max_delay`), sends them as one export request, and deletes them only once the collector said
yes. Two places hold waiting records:
- memory, while the collector answers: `submit` reports `queued`;
- the spool (dyntel.otel.spool), from the first failed export until the spool is empty again: `submit` writes the
  record there, durably, before it returns, and reports `spooled`. The records waiting in memory when an export
  fails are moved to the spool first, so the spool always holds the oldest records and order is kept.
With `always_spool`, every record goes through the spool (an alert survives a crash even while the collector is up,
at the cost of two fsyncs per alert).

Sequence numbers: every record gets `dyntel.alert.seq`, increasing, assigned at submit (under the same lock that
picks memory or spool, so the order records are sent in is the order of their numbers). The first number of a
process is above both the spool's last and the wall clock in microseconds, so numbers keep increasing across
restarts. Within one process the sender never resends a record whose export it saw succeed (it remembers the last
number delivered, even if deleting the spool file failed). A record is sent twice only when the collector took a
request whose answer never came back (a timeout), or when dyntel stopped between an export and the deletion of its
spool files; the repeat carries the same `dyntel.alert.seq`, by which a receiver drops it (docs/otlp.md).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dyntel.otel import otlp_wire
from dyntel.otel.otlp_proto import SCOPE_NAME, default_resource
from dyntel.otel.otlp_transport import LOGS, ExportError, Transport, make_transport
from dyntel.otel.spool import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES, Spool

SEQ_ATTRIBUTE = "dyntel.alert.seq"
QUEUED = "queued"
SPOOLED = "spooled"


@dataclass(frozen=True, slots=True)
class ExporterSettings:
    max_batch: int = 512
    max_delay: float = 0.2  # seconds a record may wait for others to fill its batch
    timeout: float = 10.0  # one export request
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    memory_limit: int = 10_000  # records waiting in memory; beyond, they go to the spool
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    spool_max_files: int = DEFAULT_MAX_FILES
    always_spool: bool = False
    sync: bool = True  # fsync each spooled record (tests of ordering may turn it off for speed)


@dataclass(slots=True)
class ExporterStats:
    submitted: int = 0
    exported: int = 0
    requests: int = 0
    failures: int = 0  # failed export attempts (each retried)
    refused: int = 0  # records the collector refused for good (HTTP 400, INVALID_ARGUMENT, partial rejections)
    last_error: str = ""


@dataclass(slots=True)
class Submitted:
    status: str  # QUEUED | SPOOLED
    seq: int
    dropped: int = 0  # spooled records dropped to make room for this one


RecordBuilder = Callable[[int], bytes]


class AlertExporter:
    """Records for one collector. Thread-safe; `submit` from any thread, `close` once."""

    def __init__(self, transport: Transport, spool_dir: str | Path, settings: ExporterSettings | None = None,
                 resource: Mapping[str, Any] | None = None, log: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.settings = s = settings or ExporterSettings()
        self.stats = ExporterStats()
        self._log = log or (lambda line: None)
        self.spool = Spool(spool_dir, s.spool_max_bytes, s.spool_max_files, sync=s.sync)
        self._prefix = otlp_wire.resource(resource if resource is not None else default_resource())
        self._scope = otlp_wire.scope(SCOPE_NAME)
        self._cond = threading.Condition()
        self._memory: collections.deque[tuple[int, bytes, float]] = collections.deque()
        last = self.spool.last_seq() or 0
        self._next_seq = max(last + 1, time.time_ns() // 1000)
        self._delivered = 0  # highest seq this process saw exported
        self._spooling = s.always_spool or len(self.spool) > 0
        self._closing = False
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"dyntel-otlp {transport.endpoint}", daemon=True)
        self._thread.start()

    # --- the action's side ----------------------------------------------------------------------------------------

    def submit(self, build: RecordBuilder) -> Submitted:
        """Queue one record; `build(seq)` returns its LogRecord bytes carrying that sequence number."""
        with self._cond:
            if self._closing:
                raise RuntimeError(f"the OTLP exporter for {self.transport.endpoint} is closed")
            seq = self._next_seq
            self._next_seq += 1
            record = build(seq)
            self.stats.submitted += 1
            if not self._spooling and len(self._memory) >= self.settings.memory_limit:
                self._to_spool_locked(f"more than {self.settings.memory_limit} alerts waiting")
            if self._spooling:
                # Under the lock, so a record numbered later never reaches the spool before one numbered earlier.
                dropped = self.spool.append(seq, record)
                self._note_dropped(dropped)
                self._cond.notify()
                return Submitted(SPOOLED, seq, dropped)
            self._memory.append((seq, record, time.monotonic()))
            if len(self._memory) >= self.settings.max_batch:
                self._cond.notify()
            elif len(self._memory) == 1:
                self._cond.notify()  # the sender starts its max_delay clock
            return Submitted(QUEUED, seq)

    def _note_dropped(self, dropped: int) -> None:
        if dropped:
            self._log(f"otlp: spool {self.spool.directory} full: dropped the {dropped} oldest alert(s) "
                      f"({self.spool.stats.dropped} in all)")

    def _to_spool_locked(self, why: str) -> None:
        """Move what waits in memory to the spool (oldest first) and send from the spool from now on."""
        moved = 0
        while self._memory:
            seq, record, _ = self._memory[0]
            self._note_dropped(self.spool.append(seq, record))
            self._memory.popleft()
            moved += 1
        if not self._spooling:
            self._log(f"otlp: {why}; alerts for {self.transport.endpoint} go to the spool {self.spool.directory}"
                      + (f" ({moved} moved there)" if moved else ""))
        self._spooling = True

    # --- the sender thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.settings.backoff_initial
        while True:
            batch, from_spool = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            try:
                result = self.transport.export(LOGS, self._request([r for _, r in batch]), self.settings.timeout)
            except ExportError as e:
                self.stats.failures += 1
                self.stats.last_error = str(e)
                if e.retriable:
                    with self._cond:
                        if not from_spool:
                            self._to_spool_locked(f"export failed ({e})")
                        wait = max(backoff, e.retry_after or 0.0)
                        backoff = min(backoff * 2, self.settings.backoff_max)
                        if not self._closing or self._before_deadline():
                            self._cond.wait(self._wait_time(wait))
                    continue
                self._log(f"otlp: {e}: {len(batch)} alert(s) dropped (the collector refuses them; resending "
                          "cannot help)")
                self.stats.refused += len(batch)
                result = None
            except Exception as e:  # a bug must not kill the only thread sending alerts
                self.stats.failures += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                self._log(f"otlp: unexpected error sending to {self.transport.endpoint}: {self.stats.last_error}")
                with self._cond:
                    self._cond.wait(self._wait_time(backoff))
                backoff = min(backoff * 2, self.settings.backoff_max)
                continue
            backoff = self.settings.backoff_initial
            if result is not None:
                self.stats.requests += 1
                self.stats.exported += len(batch)
                if result.rejected:
                    self.stats.refused += result.rejected
                    self._log(f"otlp: {self.transport.endpoint} rejected {result.rejected} of {len(batch)} "
                              f"alert(s): {result.message}")
            self._delivered_batch(batch, from_spool)

    def _request(self, records: list[bytes]) -> bytes:
        return otlp_wire.request({self._prefix: {self._scope: records}})

    def _before_deadline(self) -> bool:
        return self._deadline is None or time.monotonic() < self._deadline

    def _wait_time(self, wanted: float) -> float:
        if self._closing and self._deadline is not None:
            return max(0.0, min(wanted, self._deadline - time.monotonic()))
        return wanted

    def _next_batch(self) -> tuple[list[tuple[int, bytes]] | None, bool]:
        """The next records to send, oldest first, and whether they come from the spool; None when done."""
        s = self.settings
        with self._cond:
            while True:
                pending = self._memory or (self.spool.last_seq() or 0) > self._delivered
                if self._closing and (not self._before_deadline() or not pending):
                    return None, False
                if self._spooling:
                    if (self.spool.last_seq() or 0) > self._delivered:
                        break
                    if not s.always_spool:
                        self._spooling = False  # drained: the collector answers again; memory is faster
                        self._log(f"otlp: spool for {self.transport.endpoint} delivered; sending directly again")
                    self._cond.wait(self._wait_time(1.0))
                    continue
                if self._memory:
                    age = time.monotonic() - self._memory[0][2]
                    if len(self._memory) >= s.max_batch or age >= s.max_delay or self._closing:
                        return [(q, r) for q, r, _ in itertools.islice(self._memory, s.max_batch)], False
                    self._cond.wait(self._wait_time(s.max_delay - age))
                else:
                    self._cond.wait(self._wait_time(1.0))
        return self.spool.oldest(s.max_batch, after=self._delivered or None), True

    def _delivered_batch(self, batch: list[tuple[int, bytes]], from_spool: bool) -> None:
        last = batch[-1][0]
        with self._cond:
            self._delivered = max(self._delivered, last)
            # A memory batch may have been moved to the spool meanwhile (memory_limit): delete it there too.
            if from_spool or self._spooling:
                try:
                    self.spool.remove([q for q, _ in batch])
                except OSError as e:  # remembered in _delivered: not sent again by this process
                    self._log(f"otlp: cannot delete delivered alerts from {self.spool.directory}: {e}")
            while self._memory and self._memory[0][0] <= last:
                self._memory.popleft()

    # --- shutdown -------------------------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> dict[str, int]:
        """Send what waits, for up to `timeout` seconds; what is left stays in the spool for the next start."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + self.settings.timeout + 1.0)
        with self._cond:
            left = len(self._memory)
            if self._memory:
                with contextlib.suppress(Exception):
                    self._to_spool_locked("closing with alerts not yet sent")
        self.transport.close()
        pending = len(self.spool)
        self.spool.close()
        return {"exported": self.stats.exported, "pending": pending, "moved_to_spool": left,
                "dropped": self.spool.stats.dropped}


# --- the registry: one exporter per collector, shared by every rule's otlp actions ----------------------------------

_registry: dict[tuple[str, str], AlertExporter] = {}
_registry_lock = threading.Lock()
_default_settings = ExporterSettings()
_SAFE = re.compile(r"[^A-Za-z0-9.-]+")


def configure(settings: ExporterSettings) -> None:
    """Settings for exporters made from now on (the integrator's config; tests)."""
    global _default_settings
    _default_settings = settings


def spool_dir_for(root: str | Path, endpoint: str, protocol: str) -> Path:
    """A spool per collector, named so a person sees which (and distinct even when names clean up alike)."""
    digest = hashlib.sha256(f"{protocol} {endpoint}".encode()).hexdigest()[:8]
    readable = _SAFE.sub("_", endpoint.split("://")[-1]).strip("_")[:60]
    return Path(root) / f"{'grpc' if protocol == 'grpc' else 'http'}-{readable}-{digest}"


def exporter_for(endpoint: str, protocol: str, spool_root: str | Path,
                 log: Callable[[str], None] | None = None, settings: ExporterSettings | None = None) -> AlertExporter:
    key = (endpoint, protocol)
    with _registry_lock:
        found = _registry.get(key)
        if found is None:
            found = AlertExporter(make_transport(endpoint, protocol), spool_dir_for(spool_root, endpoint, protocol),
                                  settings or _default_settings, log=log)
            _registry[key] = found
        return found


def close_all(timeout: float = 5.0) -> dict[tuple[str, str], dict[str, int]]:
    """Flush and stop every exporter (dyntel's shutdown); `timeout` is shared by all of them."""
    with _registry_lock:
        exporters = dict(_registry)
        _registry.clear()
    deadline = time.monotonic() + timeout
    summary = {}
    for key, exporter in exporters.items():
        summary[key] = exporter.close(max(0.0, deadline - time.monotonic()))
    return summary


def with_settings(**changes: Any) -> ExporterSettings:
    return replace(_default_settings, **changes)




# --- the forwarding sender: many records, best effort, never in the event path's way ---------------------------------


@dataclass(slots=True)
class SenderStats:
    offered: int = 0
    sent: int = 0  # items in requests the collector took
    dropped: int = 0  # items dropped: the queue was full, or a batch failed all its tries
    refused: int = 0  # items the collector refused (partial success or a non-retriable status)
    requests: int = 0
    failures: int = 0
    last_error: str = ""


Encoder = Callable[[list[Any]], Mapping[str, bytes]]


class BatchSender:
    """Items appended by `offer` (cheap: one lock and a list append) are cut into batches of `max_batch` (or what
    came within `max_delay`), encoded by `encode` on the sender thread into one request per signal, and sent.
    A batch that keeps failing is dropped after `retries` tries; when `max_queued` items wait, the oldest batch
    is dropped: forwarding keeps up with the present rather than falling behind it. Both are counted."""

    def __init__(self, transport: Transport, encode: Encoder, *, max_batch: int = 512, max_delay: float = 0.2,
                 max_queued: int = 65_536, timeout: float = 10.0, retries: int = 5, backoff_initial: float = 0.1,
                 backoff_max: float = 5.0, log: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.stats = SenderStats()
        self._encode = encode
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_batches = max(1, max_queued // max_batch)
        self._timeout = timeout
        self._retries = retries
        self._backoff = (backoff_initial, backoff_max)
        self._log = log or (lambda line: None)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._current: list[Any] = []
        self._started = 0.0  # monotonic time the current batch got its first item
        self._full: collections.deque[list[Any]] = collections.deque()
        self._closing = False
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._run, name=f"dyntel-forward {transport.endpoint}", daemon=True)
        self._thread.start()

    def offer(self, item: Any) -> None:
        with self._lock:
            self.stats.offered += 1
            current = self._current
            current.append(item)
            if len(current) == 1:
                self._started = time.monotonic()
                self._wake.notify()
            elif len(current) >= self._max_batch:
                self._push_locked()

    def _push_locked(self) -> None:
        self._full.append(self._current)
        self._current = []
        if len(self._full) > self._max_batches:
            lost = self._full.popleft()
            self.stats.dropped += len(lost)
        self._wake.notify()

    def _take(self) -> list[Any] | None:
        with self._lock:
            while True:
                if self._closing and time.monotonic() >= self._deadline:
                    left = sum(len(b) for b in self._full) + len(self._current)
                    if left:
                        self.stats.dropped += left
                        self._log(f"forward: {left} event(s) not sent by the close deadline")
                    self._full.clear()
                    self._current = []
                    return None
                if self._full:
                    return self._full.popleft()
                if self._current:
                    wait = self._started + self._max_delay - time.monotonic()
                    if wait <= 0 or self._closing:
                        self._push_locked()
                        continue
                elif self._closing:
                    return None
                else:
                    wait = 1.0
                self._wake.wait(wait)

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                requests = self._encode(batch)
            except Exception as e:  # one odd event must not stop forwarding
                self.stats.dropped += len(batch)
                self.stats.last_error = f"encoding: {type(e).__name__}: {e}"
                self._log(f"forward: {len(batch)} event(s) dropped: {self.stats.last_error}")
                continue
            if self._send(requests, len(batch)):
                self.stats.sent += len(batch)
            else:
                self.stats.dropped += len(batch)

    def _send(self, requests: Mapping[str, bytes], count: int) -> bool:
        backoff, backoff_max = self._backoff
        pending = dict(requests)
        for attempt in range(self._retries + 1):
            for signal, payload in list(pending.items()):
                try:
                    result = self.transport.export(signal, payload, self._timeout)
                except ExportError as e:
                    self.stats.failures += 1
                    self.stats.last_error = str(e)
                    if not e.retriable:
                        self._log(f"forward: {e}: {count} event(s) refused")
                        self.stats.refused += count
                        pending.pop(signal)
                    continue
                self.stats.requests += 1
                self.stats.refused += result.rejected
                pending.pop(signal)
            if not pending:
                return True
            if attempt == self._retries or (self._closing and time.monotonic() >= self._deadline):
                break
            with self._lock:
                limit = self._deadline - time.monotonic() if self._closing else backoff
                self._wake.wait(max(0.0, min(backoff, limit)))
            backoff = min(backoff * 2, backoff_max)
        self._log(f"forward: {count} event(s) dropped after {attempt + 1} tries: {self.stats.last_error}")
        return False

    def close(self, timeout: float = 5.0) -> SenderStats:
        """Send what waits, for up to `timeout` seconds, then stop."""
        with self._lock:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._wake.notify_all()
        self._thread.join(timeout + self._timeout + 1.0)
        self.transport.close()
        return self.stats
