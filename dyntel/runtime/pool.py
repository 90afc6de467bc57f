"""Actions off the event path: a bounded queue of firings and a fixed pool of worker threads.

The engine's thread only puts a firing on the queue; it never waits for an action. The pool's size is the global
cap on actions running at once; the per-type limits (one dump at a time, ...) are the runtime's gate. When the
queue is full the firing's actions are skipped at once ("queue full"), recorded and counted (the `actions` queue
of dyntel.queues): an incident that fires thousands of times must slow nothing down and must not pile up work that
would run long after the moment it was meant to capture. A firing's actions run in order on one worker, so
`{actions.dump.path}` chaining holds.

`on_done` is called with each firing once all its actions have an outcome, in the order the firings were
submitted (event order): that is when `dyntel run` prints it. A firing whose dump takes two seconds holds back the
report of the firings after it for those two seconds, never their actions.

Firings whose every action is one of INLINE_TYPES (`signal`, `log`: a system call or a line, tens of
microseconds) run them on the engine's thread as they are submitted: handing them to a worker costs a thread
wake-up and a GIL hand-over, milliseconds on a loaded machine, for an action that is over in microseconds. Their
report still goes through the queue, in order, so a slow standard output holds up no event.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

from dyntel.actions.spec import ActionSpec
from dyntel.firing import SKIPPED, ActionOutcome, Firing
from dyntel.queues import QUEUE_FULL, SHUTDOWN, QueueCounts
from dyntel.runtime.scheduler import ActionRuntime, run_actions

_STOP = None
NOT_STARTED = "shutdown: not started before the action pool's close timeout"
AFTER_CLOSE = "shutdown: dyntel is stopping"
INLINE_TYPES = frozenset({"signal", "log"})


class PooledScheduler:
    """Firings' actions on `workers` threads, at most `queue_size` firings waiting. Registered with the runtime's
    queue registry as `actions` (dyntel.queues): firings in, out (taken by a worker), dropped by reason: `queue
    full`, `shutdown` (submitted after close, or still queued when close's timeout ran out). A dropped firing's
    actions each get a `skipped` outcome with the reason, recorded like any other (the action log, the metrics),
    and the firing is still reported through on_done."""

    def __init__(self, runtime: ActionRuntime, *, workers: int = 2, queue_size: int = 64,
                 on_done: Callable[[Firing], None] | None = None) -> None:
        if workers < 1:
            raise ValueError("the action pool needs at least one worker")
        self.runtime = runtime
        self.on_done = on_done
        self.queue_size = queue_size
        # Unbounded underneath: the bound is checked in submit (the engine's one thread), so that close's stop
        # markers never wait for room behind firings a stuck worker will not take.
        self._queue: queue.Queue[tuple[int, Firing, Sequence[ActionSpec]] | None] = queue.Queue()
        self.counts = runtime.context.queues.register(QueueCounts(
            "actions", kind="actions", unit="firings", capacity=queue_size, size_of=self.pending))
        self._order = threading.Lock()
        self._counting = threading.Lock()  # workers and the engine's thread both count: no update may be lost
        self._submitted = 0  # sequence number of the next firing
        self._reported = 0  # sequence number of the next firing to hand to on_done
        self._ready: dict[int, Firing] = {}
        self._closed = False
        self._abandoned = False  # close's timeout ran out: what a worker takes from now on is not run
        self._workers = [threading.Thread(target=self._work, name=f"dyntel-action-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._workers:
            t.start()

    @property
    def dry_run(self) -> bool:
        return self.runtime.dry_run

    @property
    def dropped(self) -> int:
        """Firings whose actions were skipped without running: queue full, or shutdown."""
        return self.counts.total_dropped

    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, firing: Firing, actions: Sequence[ActionSpec]) -> None:
        with self._order:
            seq = self._submitted
            self._submitted += 1
        if not actions:
            self._done(seq, firing)
            return
        with self._counting:
            self.counts.put += 1
        if self._closed:
            self._skip(seq, firing, actions, SHUTDOWN, AFTER_CLOSE)
        elif all(spec.type in INLINE_TYPES for spec in actions):
            with self._counting:
                self.counts.out += 1
            run_actions(firing, actions, self.runtime)
            self._queue.put((seq, firing, ()))  # the report, in order, off this thread
        elif self._queue.qsize() >= self.queue_size:
            self._skip(seq, firing, actions, QUEUE_FULL,
                       f"queue full: {self.queue_size} firings already waiting for their actions")
        else:
            self._queue.put((seq, firing, actions))

    def _skip(self, seq: int, firing: Firing, actions: Sequence[ActionSpec], why: str, reason: str) -> None:
        """Every action of the firing `skipped` with `reason`, recorded (action log, metrics); counted as a drop."""
        with self._counting:
            self.counts.drop(why)
        for spec in actions:
            outcome = ActionOutcome(spec.type, SKIPPED, {"reason": reason})
            firing.actions.append(outcome)
            self.runtime.record(firing, outcome, 0.0)
        self._done(seq, firing)

    def _done(self, seq: int, firing: Firing) -> None:
        with self._order:
            self._ready[seq] = firing
            while self._reported in self._ready:
                ready = self._ready.pop(self._reported)
                self._reported += 1
                if self.on_done is not None:
                    try:
                        self.on_done(ready)
                    except Exception as e:  # printing a firing must not kill a worker
                        self.runtime.context.log(f"dyntel: reporting the firing of {ready.rule} failed: {e}")

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            seq, firing, actions = item
            if not actions:  # a firing whose actions ran on the engine's thread: only its report
                self._done(seq, firing)
                continue
            if self._abandoned:
                self._skip(seq, firing, actions, SHUTDOWN, NOT_STARTED)
                continue
            with self._counting:
                self.counts.out += 1
            try:
                run_actions(firing, actions, self.runtime)
            except Exception as e:  # run_actions records failures itself; this is a bug, kept off the loop
                self.runtime.context.log(f"dyntel: the actions of {firing.rule} stopped: {type(e).__name__}: {e}")
            self._done(seq, firing)

    def close(self, timeout: float | None = 60.0) -> None:
        """Finish what is queued (each action still bounded by its own deadline) for up to `timeout` seconds, then
        stop the workers. Firings still queued then are not run: their actions are skipped (`shutdown`), recorded
        and logged, so every firing submitted gets an outcome for each of its actions."""
        if self._closed:
            return
        self._closed = True
        for _ in self._workers:
            self._queue.put(_STOP)
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._workers:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in self._workers):
            self._abandoned = True
            left = 0
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    continue
                left += 1
                self._skip(item[0], item[1], item[2], SHUTDOWN, NOT_STARTED)
            for _ in self._workers:  # for the stuck workers, when their action returns
                self._queue.put(_STOP)
            if left:
                self.runtime.context.log(f"dyntel: {left} queued firing(s) not started within the {timeout:g}s "
                                         "the action pool had to finish; their actions are skipped (shutdown)")
        self.runtime.close()
