"""The alert sender: one thread per (endpoint, protocol) that batches log records and delivers them at least once,
in order, each carrying `dyntel.alert.seq` to deduplicate by; the spool that holds them while the collector is down
is bounded, and what it drops to stay so is counted.

`submit` only queues: the action that calls it returns at once. Records go through a `BatchQueue`
(dyntel.batch_queue): the sender thread takes up to `max_batch` records (or what came within `max_delay`), sends
them as one export request, and deletes them only once the collector said yes. Two places hold waiting records:
- memory, while the collector answers: `submit` reports `queued`; a crash loses these;
- the spool (dyntel.otel.spool), from the first failed export until the spool is empty again: `submit` writes the
  record there, durably, before it returns, and reports `spooled`. The records waiting in memory when an export
  fails (or when more than `memory_limit` wait, or at shutdown) are moved to the spool first, so the spool always
  holds the oldest records and order is kept. A full spool deletes its oldest records (counted: `dropped`).
With `always_spool`, every record goes through the spool (an alert survives a crash even while the collector is up,
at the cost of two fsyncs per alert). A batch the collector refuses for good (HTTP 400, INVALID_ARGUMENT) is dropped
and counted (`refused`).

Sequence numbers: every record gets `dyntel.alert.seq`, increasing, assigned at submit (under the same lock that
picks memory or spool, so the order records are sent in is the order of their numbers). The first number of a
process is above both the spool's last and the wall clock in microseconds, so numbers keep increasing across
restarts. Within one process the sender never resends a record whose export it saw succeed (it remembers the last
number delivered, even if deleting the spool file failed). A record is sent twice only when the collector took a
request whose answer never came back (a timeout), or when dyntel stopped between an export and the deletion of its
spool files; the repeat carries the same `dyntel.alert.seq`, by which a receiver drops it (docs/otlp.md).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dyntel.batch_queue import BatchQueue
from dyntel.otel import otlp_wire
from dyntel.otel.otlp_proto import SCOPE_NAME, default_resource
from dyntel.otel.otlp_transport import LOGS, ExportError, Transport, make_transport
from dyntel.otel.spool import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES, Spool
from dyntel.queues import QueueCounts, QueueRegistry

SEQ_ATTRIBUTE = "dyntel.alert.seq"
QUEUED = "queued"
SPOOLED = "spooled"
REFUSED = "refused by the collector"


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
    """Records for one collector. Thread-safe; `submit` from any thread, `close` once.

    Memory is a `BatchQueue` (dyntel.batch_queue) whose spill target is the spool: a full memory queue, a failed
    export and a shutdown with records not yet sent all move the waiting records to the spool instead of dropping
    them. The queue's one sender thread also drains the spool (its backlog), so every record goes out on one thread,
    in sequence order. Both are registered as queues (`otlp alerts ENDPOINT`, `otlp spool ENDPOINT`) with `queues`."""

    def __init__(self, transport: Transport, spool_dir: str | Path, settings: ExporterSettings | None = None,
                 resource: Mapping[str, Any] | None = None, log: Callable[[str], None] | None = None,
                 queues: QueueRegistry | None = None) -> None:
        self.transport = transport
        self.settings = s = settings or ExporterSettings()
        self.stats = ExporterStats()
        self._log = log or (lambda line: None)
        self.spool = Spool(spool_dir, s.spool_max_bytes, s.spool_max_files, sync=s.sync)
        self._prefix = otlp_wire.resource(resource if resource is not None else default_resource())
        self._scope = otlp_wire.scope(SCOPE_NAME)
        self._lock = threading.Lock()  # taken before the queue's lock, never after it
        last = self.spool.last_seq() or 0
        self._next_seq = max(last + 1, time.time_ns() // 1000)
        self._delivered = 0  # highest seq this process saw exported
        self._spooling = s.always_spool or len(self.spool) > 0
        self._closing = False
        self._backoff = s.backoff_initial
        self._retry_at = 0.0  # monotonic time before which the spool is not tried again
        self._moved_at_close = 0
        endpoint = transport.endpoint
        self.spool_counts = QueueCounts(f"otlp spool {endpoint}", kind="spool", unit="alerts",
                                        capacity=s.spool_max_files, size_of=self.spool.__len__,
                                        refresh=self._refresh_spool_counts)
        self.memory_counts = QueueCounts(f"otlp alerts {endpoint}", kind="alerts", unit="alerts",
                                         capacity=s.memory_limit)
        if queues is not None:
            queues.register(self.memory_counts)
            queues.register(self.spool_counts)
        self._queue: BatchQueue[tuple[int, bytes]] = BatchQueue(
            f"otlp {endpoint}", self._export_memory, max_batch=s.max_batch, max_delay=s.max_delay,
            capacity=s.memory_limit, spill=self._to_spool, backlog=self._drain_spool, counts=self.memory_counts,
            export_grace=s.timeout + 1.0, log=self._log)

    def _refresh_spool_counts(self, counts: QueueCounts) -> None:
        counts.dropped["spool full: oldest deleted"] = self.spool.stats.dropped
        counts.dropped["unreadable (cut short by a crash)"] = self.spool.stats.corrupt

    # --- the action's side ----------------------------------------------------------------------------------------

    def submit(self, build: RecordBuilder) -> Submitted:
        """Queue one record; `build(seq)` returns its LogRecord bytes carrying that sequence number."""
        with self._lock:
            if self._closing:
                raise RuntimeError(f"the OTLP exporter for {self.transport.endpoint} is closed")
            seq = self._next_seq
            self._next_seq += 1
            record = build(seq)
            self.stats.submitted += 1
            if not self._spooling:
                before = self.spool.stats.dropped
                self._queue.put((seq, record))
                if not self._spooling:
                    return Submitted(QUEUED, seq)
                # The put found memory full and moved it to the spool: this record follows the others there.
                self._queue.spill(f"more than {self.settings.memory_limit} alerts waiting")
                return Submitted(SPOOLED, seq, self.spool.stats.dropped - before)
            # Under the lock, so a record numbered later never reaches the spool before one numbered earlier.
            dropped = self.spool.append(seq, record)
            self.spool_counts.put += 1
            self._note_dropped(dropped)
            self._queue.wake_backlog()
            return Submitted(SPOOLED, seq, dropped)

    def _note_dropped(self, dropped: int) -> None:
        if dropped:
            self._log(f"otlp: spool {self.spool.directory} full: dropped the {dropped} oldest alert(s) "
                      f"({self.spool.stats.dropped} in all)")

    def _to_spool(self, items: list[tuple[int, bytes]], why: str) -> None:
        """The memory queue's spill target: what waits in memory goes to the spool (oldest first), and alerts are
        sent from the spool from now on (until it is empty again)."""
        for seq, record in items:
            self._note_dropped(self.spool.append(seq, record))
            self.spool_counts.put += 1
        if why.startswith("shutting down"):
            self._moved_at_close += len(items)
        if not self._spooling:
            self._log(f"otlp: {why}; alerts for {self.transport.endpoint} go to the spool {self.spool.directory}"
                      + (f" ({len(items)} moved there)" if items else ""))
        self._spooling = True

    # --- the sender thread ----------------------------------------------------------------------------------------

    def _request(self, records: list[bytes]) -> bytes:
        return otlp_wire.request({self._prefix: {self._scope: records}})

    def _failed(self, e: Exception) -> None:
        """A try that failed and is worth repeating: back off (a Retry-After is honoured)."""
        self.stats.failures += 1
        self.stats.last_error = str(e) if isinstance(e, ExportError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, ExportError):  # a bug must not kill the only thread sending alerts
            self._log(f"otlp: unexpected error sending to {self.transport.endpoint}: {self.stats.last_error}")
        retry_after = e.retry_after if isinstance(e, ExportError) else None
        self._retry_at = time.monotonic() + max(self._backoff, retry_after or 0.0)
        self._backoff = min(self._backoff * 2, self.settings.backoff_max)

    def _send(self, batch: list[tuple[int, bytes]]) -> int | None:
        """Export one batch: how many records the collector rejected (0: all taken), or None when the try failed
        and the batch must be tried again. A batch the collector refuses for good counts as all rejected."""
        try:
            result = self.transport.export(LOGS, self._request([r for _, r in batch]), self.settings.timeout)
        except ExportError as e:
            if e.retriable:
                self._failed(e)
                return None
            self.stats.failures += 1
            self.stats.last_error = str(e)
            self._log(f"otlp: {e}: {len(batch)} alert(s) dropped (the collector refuses them; resending "
                      "cannot help)")
            self.stats.refused += len(batch)
            return len(batch)
        except Exception as e:
            self._failed(e)
            return None
        self._backoff = self.settings.backoff_initial
        self.stats.requests += 1
        self.stats.exported += len(batch)
        if result.rejected:
            self.stats.refused += result.rejected
            self._log(f"otlp: {self.transport.endpoint} rejected {result.rejected} of {len(batch)} "
                      f"alert(s): {result.message}")
        return result.rejected

    def _export_memory(self, batch: list[tuple[int, bytes]]) -> dict[str, int] | None:
        """The memory queue's export: on a failure worth retrying, the batch and all that waits go to the spool,
        which the backlog then sends with backoff."""
        rejected = self._send(batch)
        if rejected is None:
            with self._lock:
                self._queue.spill(f"export failed ({self.stats.last_error})")
            return None
        self._delivered_batch(batch)
        return {REFUSED: rejected} if rejected else None

    def _drain_spool(self) -> float | None:
        """The backlog: send the spool's oldest batch. Seconds until the next try, or None when it is empty."""
        s = self.settings
        with self._lock:
            if (self.spool.last_seq() or 0) <= self._delivered:
                if self._spooling and not s.always_spool:
                    self._spooling = False  # drained: the collector answers again; memory is faster
                    self._log(f"otlp: spool for {self.transport.endpoint} delivered; sending directly again")
                return None
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            return wait
        batch = self.spool.oldest(s.max_batch, after=self._delivered or None)
        if not batch:
            if self.spool.closed:
                return None  # close() gave up waiting for this thread: the rest waits on disk for the next start
            return 0.0  # unreadable records were deleted: look again
        rejected = self._send(batch)
        if rejected is None:
            return max(0.0, self._retry_at - time.monotonic())
        self.spool_counts.out += len(batch) - rejected
        self.spool_counts.drop(REFUSED, rejected)
        self._delivered_batch(batch, from_spool=True)
        return 0.0

    def _delivered_batch(self, batch: list[tuple[int, bytes]], from_spool: bool = False) -> None:
        last = batch[-1][0]
        with self._lock:
            self._delivered = max(self._delivered, last)
            if not (from_spool or self._spooling):
                return  # memory only: nothing on disk to delete
            # A memory batch may have been moved to the spool meanwhile (memory_limit): delete it there too.
            try:
                self.spool.remove([q for q, _ in batch])
            except OSError as e:  # remembered in _delivered: not sent again by this process
                self._log(f"otlp: cannot delete delivered alerts from {self.spool.directory}: {e}")

    # --- flush and shutdown ---------------------------------------------------------------------------------------

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Send what waits in memory and in the spool now; True when nothing is left within `timeout`."""
        return self._queue.force_flush(timeout)

    def close(self, timeout: float = 5.0) -> dict[str, int]:
        """Send what waits, for up to `timeout` seconds; what is left stays in the spool for the next start."""
        with self._lock:
            self._closing = True
        self._queue.shutdown(timeout)
        self.transport.close()
        pending = len(self.spool)
        self.spool.close()
        return {"exported": self.stats.exported, "pending": pending, "moved_to_spool": self._moved_at_close,
                "dropped": self.spool.stats.dropped, "refused": self.stats.refused}


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
                 log: Callable[[str], None] | None = None, settings: ExporterSettings | None = None,
                 queues: QueueRegistry | None = None) -> AlertExporter:
    """The exporter of one collector, made on first use (its queues registered with `queues` then)."""
    key = (endpoint, protocol)
    with _registry_lock:
        found = _registry.get(key)
        if found is None:
            found = AlertExporter(make_transport(endpoint, protocol), spool_dir_for(spool_root, endpoint, protocol),
                                  settings or _default_settings, log=log, queues=queues)
            _registry[key] = found
        return found


def close_all(timeout: float = 5.0) -> dict[tuple[str, str], dict[str, int]]:
    """Flush and stop every exporter (dyntel's shutdown); `timeout` is shared by all of them. Returns, per
    (endpoint, protocol), what `AlertExporter.close` says: exported, pending (left in the spool for the next
    start), moved_to_spool, dropped (spool full), refused."""
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


def delivery_lines(summary: Mapping[tuple[str, str], Mapping[str, int]]) -> list[str]:
    """`close_all`'s summary for people: one line per collector."""
    out = []
    for (endpoint, protocol), got in summary.items():
        line = f"otlp alerts to {endpoint} ({protocol}): {got['exported']} exported"
        if got.get("refused"):
            line += f", {got['refused']} refused by the collector"
        if got.get("dropped"):
            line += f", {got['dropped']} dropped (spool full: the oldest deleted)"
        if got.get("pending"):
            line += f", {got['pending']} left in the spool for the next start"
        out.append(line)
    return out
