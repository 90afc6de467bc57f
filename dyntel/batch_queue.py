"""A bounded batching queue with one sender thread, in the shape of the OpenTelemetry SDK's BatchProcessor: what
both the forwarder (dyntel.forwarding) and the alert exporter (dyntel.otel.exporter) send through.

    q = BatchQueue("forward", export, max_batch=512, max_delay=0.2, capacity=65536, counts=counts)
    q.put(item)              # any thread; cheap: a lock, a deque append
    q.force_flush(5.0)       # wait until what is queued now has been exported (True) or the timeout passed
    q.shutdown(5.0)          # stop taking items, export what waits for up to 5 s, then stop

The sender thread takes up to `max_batch` items, once that many wait or the oldest has waited `max_delay` (at
once while flushing or shutting down), and calls `export(batch)`. Items stay in the queue until `export` returns
(so a `spill` during an export takes them along, see below); `export` returns None when the whole batch was
delivered, or `{reason: n}` for the items of it that were dropped (the rest count as delivered). An exception
from `export` drops the batch with its message as the reason: one odd item must not stop the thread.

The drop policy, by whether the queue has a `spill` target (a place that takes items on, such as the alert
spool on disk):
- queue full (`capacity` items waiting): without spill, the oldest item not in the export under way is dropped
  (`queue full`): a queue of telemetry keeps up with the present rather than falling behind it; with spill,
  everything waiting goes to it.
- `put` after `shutdown`: dropped (`shutdown`), and `put` returns False.
- what still waits when the shutdown deadline passes: without spill, dropped (`not sent by the shutdown
  deadline`); with spill, spilled.
- a spill that fails (a full disk): its items are dropped with the error as the reason.
Every drop is counted in `counts` (dyntel.queues: in, out, dropped by reason, size and capacity) and a spill counts
as out. The export function owns retries: it may wait between tries with `sleep`, which returns False once the
shutdown deadline has passed (stop trying) and returns early when shutdown begins (try once more at once).

`backlog`, when given, is more work for the sender thread, run when no batch is ready: the alert exporter drains
its spool there, so that one thread sends everything in sequence order. It returns the seconds until it wants to
run again (0: at once), or None when it has nothing to do until `wake_backlog()` is called or items are spilled
(a spill makes the backlog due at once: it is what drains the spill target).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from dyntel.queues import QUEUE_FULL, SHUTDOWN, QueueCounts

T = TypeVar("T")
NOT_SENT_AT_SHUTDOWN = "not sent by the shutdown deadline"

Export = Callable[[list[T]], Mapping[str, int] | None]


class BatchQueue(Generic[T]):
    def __init__(self, name: str, export: Export[T], *, max_batch: int = 512, max_delay: float = 0.2,
                 capacity: int = 65_536, spill: Callable[[list[T], str], None] | None = None,
                 backlog: Callable[[], float | None] | None = None, counts: QueueCounts | None = None,
                 export_grace: float = 11.0, log: Callable[[str], None] | None = None) -> None:
        if max_batch < 1 or capacity < 1:
            raise ValueError(f"{name}: max_batch and capacity must be at least 1")
        self.name = name
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.capacity = capacity
        self.counts = counts if counts is not None else QueueCounts(name, capacity=capacity)
        if self.counts.size_of is None:
            self.counts.size_of = self.pending
        if self.counts.capacity is None:
            self.counts.capacity = capacity
        self._export = export
        self._spill = spill
        self._backlog = backlog
        self._export_grace = export_grace  # how long past the deadline an export in flight may take (its timeout)
        self._log = log or (lambda line: None)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._items: collections.deque[T] = collections.deque()
        self._oldest_at = 0.0  # when the oldest waiting item started its max_delay clock
        self._epoch = 0  # bumped by every spill: an export in flight then no longer owns its items
        self._busy = False  # an export or backlog run is in flight
        self._inflight = 0  # items at the head that the export under way holds
        self._backlog_at: float | None = 0.0 if backlog is not None else None  # when backlog wants to run
        self._flushing = 0
        self._closing = False
        self._closed = False
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._run, name=f"dyntel-{name}", daemon=True)
        self._thread.start()

    # --- producers' side --------------------------------------------------------------------------------------------

    def put(self, item: T) -> bool:
        """Queue `item`; False when the queue is shut down (the item is dropped and counted)."""
        counts = self.counts
        with self._lock:
            counts.put += 1
            if self._closing:
                counts.drop(SHUTDOWN)
                return False
            items = self._items
            if len(items) >= self.capacity:
                if self._spill is not None:
                    self._spill_locked(f"more than {self.capacity} waiting")
                elif self._inflight < len(items):
                    del items[self._inflight]  # the oldest not being exported right now
                    counts.drop(QUEUE_FULL)
                else:  # all that waits is in the export under way: this item is the one to go
                    counts.drop(QUEUE_FULL)
                    return True
            items.append(item)
            n = len(items)
            if n == 1:
                self._oldest_at = time.monotonic()
                self._cond.notify_all()  # the sender starts its max_delay clock
            elif n == self.max_batch:
                self._cond.notify_all()
        return True

    def pending(self) -> int:
        return len(self._items)

    def spill(self, reason: str) -> int:
        """Hand everything waiting (an export in flight included) to the spill target; how many items went."""
        with self._lock:
            return self._spill_locked(reason)

    def _spill_locked(self, reason: str) -> int:
        if self._spill is None or not self._items:
            return 0
        items = list(self._items)
        self._items.clear()
        self._inflight = 0
        self._epoch += 1
        try:
            self._spill(items, reason)
        except Exception as e:
            self.counts.drop(f"spill failed: {type(e).__name__}: {e}", len(items))
            self._log(f"{self.name}: {len(items)} item(s) lost: moving them on failed: {e}")
            return 0
        self.counts.out += len(items)
        if self._backlog is not None:
            self._backlog_at = time.monotonic()  # the backlog drains what was spilled
            self._cond.notify_all()
        return len(items)

    def wake_backlog(self) -> None:
        """The backlog has work (the alert exporter spooled a record): run it soon."""
        with self._lock:
            self._backlog_at = time.monotonic()
            self._cond.notify_all()

    # --- the export function's side -------------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing

    def past_deadline(self) -> bool:
        return self._closing and time.monotonic() >= self._deadline

    def sleep(self, seconds: float) -> bool:
        """Wait `seconds` between tries; when shutdown begins, stop waiting (one more try at once). False when the
        shutdown deadline has passed: stop trying."""
        end = time.monotonic() + seconds
        with self._lock:
            was_closing = self._closing
            while True:
                now = time.monotonic()
                if self._closing and now >= self._deadline:
                    return False
                if now >= end or (self._closing and not was_closing):
                    return True
                # New items notify too: wait again for what is left, so they do not shorten the backoff.
                self._cond.wait(min(end, self._deadline) - now if self._closing else end - now)

    # --- the sender thread ------------------------------------------------------------------------------------------

    def _next(self) -> tuple[list[T] | None, int]:
        """The next batch and the epoch it was taken in; [] to run the backlog; None when done."""
        with self._lock:
            while True:
                now = time.monotonic()
                if self._closing and now >= self._deadline:
                    return None, self._epoch
                n = len(self._items)
                hurry = self._closing or self._flushing > 0
                if self._backlog_at is not None and now >= self._backlog_at:
                    self._busy = True
                    return [], self._epoch
                if n and (n >= self.max_batch or hurry or now - self._oldest_at >= self.max_delay):
                    self._busy = True
                    self._inflight = min(n, self.max_batch)
                    return list(itertools.islice(self._items, self.max_batch)), self._epoch
                if self._closing and not n and self._backlog_at is None:
                    return None, self._epoch
                waits = [1.0]
                if n:
                    waits.append(self._oldest_at + self.max_delay - now)
                if self._backlog_at is not None:
                    waits.append(self._backlog_at - now)
                if self._closing:
                    waits.append(self._deadline - now)
                self._cond.wait(max(0.0, min(waits)))

    def _run(self) -> None:
        while True:
            batch, epoch = self._next()
            if batch is None:
                break
            if not batch:
                assert self._backlog is not None
                try:
                    again = self._backlog()
                except Exception as e:  # a bug must not kill the only sender
                    self._log(f"{self.name}: {type(e).__name__}: {e}")
                    again = 1.0
                with self._lock:
                    self._busy = False
                    self._backlog_at = None if again is None else time.monotonic() + again
                    self._cond.notify_all()
                continue
            try:
                result = self._export(batch)
            except Exception as e:  # one odd item must not stop the sender
                reason = f"export error: {type(e).__name__}: {e}"
                self._log(f"{self.name}: {len(batch)} item(s) dropped: {reason}")
                result = {reason: len(batch)}
            with self._lock:
                self._busy = False
                if epoch == self._epoch:  # not spilled meanwhile: the batch is still at the head
                    for _ in range(self._inflight):
                        self._items.popleft()
                    self._inflight = 0
                    dropped = 0
                    for reason, k in (result or {}).items():
                        self.counts.drop(reason, k)
                        dropped += k
                    self.counts.out += len(batch) - dropped
                    if self._items:
                        self._oldest_at = time.monotonic()
                self._cond.notify_all()
        with self._lock:
            self._busy = False
            self._cond.notify_all()

    # --- flush and shutdown ------------------------------------------------------------------------------------------

    def _idle_locked(self) -> bool:
        return not self._items and not self._busy and self._backlog_at is None

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export what waits now, without waiting for max_delay; True when nothing waits any more."""
        end = time.monotonic() + timeout
        with self._lock:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while not self._idle_locked():
                    left = end - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        break
                    self._cond.wait(left)
                return self._idle_locked()
            finally:
                self._flushing -= 1

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop taking items; export what waits for up to `timeout` seconds; then spill or drop the rest (counted).
        Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + self._export_grace)
        with self._lock:
            self._closed = True
            left = len(self._items)
            if left:
                if self._spill is not None:
                    self._spill_locked("shutting down with items not yet sent")
                else:
                    self._items.clear()
                    self._inflight = 0
                    self._epoch += 1
                    self.counts.drop(NOT_SENT_AT_SHUTDOWN, left)
                    self._log(f"{self.name}: {left} item(s) not sent by the shutdown deadline")
