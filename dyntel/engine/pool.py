"""Actions off the event path: a bounded queue of firings and a fixed pool of worker threads.

The engine's thread only puts a firing on the queue; it never waits for an action. The pool's size is the global
cap on actions running at once; the per-type limits (one dump at a time, ...) are the runtime's gate. When the
queue is full the firing's actions are skipped at once ("queue full") and counted: an incident that fires
thousands of times must slow nothing down and must not pile up work that would run long after the moment it was
meant to capture. A firing's actions run in order on one worker, so `{actions.dump.path}` chaining holds.

`on_done` is called with each firing once all its actions have an outcome, in the order the firings were
submitted (event order): that is when `dyntel run` prints it. A firing whose dump takes two seconds holds back the
report of the firings after it for those two seconds, never their actions.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

from dyntel.engine.firing import SKIPPED, ActionOutcome, Firing
from dyntel.engine.scheduler import ActionRuntime, run_actions
from dyntel.rules.model import ActionSpec

_STOP = None


class PooledScheduler:
    def __init__(self, runtime: ActionRuntime, *, workers: int = 2, queue_size: int = 64,
                 on_done: Callable[[Firing], None] | None = None) -> None:
        if workers < 1:
            raise ValueError("the action pool needs at least one worker")
        self.runtime = runtime
        self.on_done = on_done
        self.queue_size = queue_size
        self.dropped = 0  # firings whose actions were skipped because the queue was full
        self._queue: queue.Queue[tuple[int, Firing, Sequence[ActionSpec]] | None] = queue.Queue(queue_size)
        self._order = threading.Lock()
        self._submitted = 0  # sequence number of the next firing
        self._reported = 0  # sequence number of the next firing to hand to on_done
        self._ready: dict[int, Firing] = {}
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"dyntel-action-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._workers:
            t.start()

    @property
    def dry_run(self) -> bool:
        return self.runtime.dry_run

    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, firing: Firing, actions: Sequence[ActionSpec]) -> None:
        with self._order:
            seq = self._submitted
            self._submitted += 1
        if not actions or self._closed:
            self._done(seq, firing)
            return
        try:
            self._queue.put_nowait((seq, firing, actions))
        except queue.Full:
            self.dropped += 1
            reason = f"queue full: {self.queue_size} firings already waiting for their actions"
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
            try:
                run_actions(firing, actions, self.runtime)
            except Exception as e:  # run_actions records failures itself; this is a bug, kept off the loop
                self.runtime.context.log(f"dyntel: the actions of {firing.rule} stopped: {type(e).__name__}: {e}")
            self._done(seq, firing)

    def close(self, timeout: float | None = 60.0) -> None:
        """Finish what is queued (each action still bounded by its own deadline), then stop the workers."""
        if self._closed:
            return
        self._closed = True
        for _ in self._workers:
            self._queue.put(_STOP)
        for t in self._workers:
            t.join(timeout)
        self.runtime.close()
