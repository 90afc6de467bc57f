"""Rate balancing of the live source (the methods PerfLiveSource takes from RateBalancer): which tracepoints write
into the prompt rings (a wake-up on each sample) and which into the batched ones. Split from
dyntel.sources.perf.live.

Waking. `latency="low"` (the default; the config's `sources.latency`) gives each CPU two rings: a prompt one, whose
owner wakes the reader as soon as it holds a byte, and a batched one, which wakes it at its watermark (a quarter
of the ring) and is otherwise read every `max_wait` (2 ms by default; the config's `sources.max_wait`). A tracepoint
writes into one or the other and moves with PERF_EVENT_IOC_SET_OUTPUT, which switches between two samples: none is
lost, and the reader sorts every ring's samples together. A wake-up on every sample costs the writer a self-IPI and
an irq_work: on this project's 2-CPU VM a getppid() call went from 1.2 us to 12-14 us of CPU with it (a measured
300k calls), so it is kept for the quiet tracepoints, where it is what makes latency fall as load falls: a new
tracepoint starts batched (its rate is unknown), and every BALANCE_INTERVAL the reader moves one under
PROMPT_MIN_RATE samples a second to the prompt rings and one over PROMPT_MAX_RATE back (the prompt rings count
their samples by event id as they are found; a batched one's rate is read from its perf counters). With every
tracepoint prompt and nothing coming, the reader sleeps until a sample or the idle tick (`flush_interval`, 100 ms,
for `on_idle`). `latency="throughput"` has only the batched rings, read at the watermark or every `max_wait`
(default `flush_interval`): the one wake-up per 100 ms of before, at most 100 ms of added latency. A tracepoint that
moves leaves the count of a full ring's lost samples in that ring's kernel state until something else is written
there (LOST records come ahead of a ring's next record): `lost()` has the exact counts either way.
"""

from __future__ import annotations

import contextlib
import logging

from dyntel.sources.perf import event as pe
from dyntel.sources.perf.live_state import Tracepoint

log = logging.getLogger("dyntel.live")

# A tracepoint is woken for on each sample while it writes fewer than PROMPT_MAX_RATE samples a second (all CPUs),
# and batched above; a batched one goes back below PROMPT_MIN_RATE (the gap keeps one near the line from flapping).
# The wake-up costs the writer about 12 us a sample on this project's 2-CPU VM (benchmarks/latency.py notes), so
# 2000/s costs the writers at most 2.4% of a CPU, and a batched tracepoint waits at most max_wait.
PROMPT_MAX_RATE = 2000
PROMPT_MIN_RATE = 1000
BALANCE_INTERVAL = 0.25  # seconds between two looks at the rates


class RateBalancer:
    """PerfLiveSource's moves between prompt and batched rings; its state is the source's (declared here for the
    type checker)."""

    cpus: list[int]
    _rings: list[pe.Ring]
    _prompt_from: int
    _prompt_counts: dict[int, int]
    _open: dict[str, Tracepoint]
    _tracepoint_of: dict[int, Tracepoint]

    def _rings_of(self, tp: Tracepoint) -> list[pe.Ring]:
        n = len(self.cpus)
        return self._rings[n:2 * n] if tp.prompt else self._rings[:n]

    @staticmethod
    def _detach(rings: list[pe.Ring], now: int) -> None:
        for ring in rings:
            ring.attached -= 1
            if ring.attached <= 0:
                ring.attached = 0
                ring.detached_at = now

    def _move(self, tp: Tracepoint, prompt: bool, now: int) -> None:
        """Redirect the tracepoint's events to the prompt rings or the batched ones (PERF_EVENT_IOC_SET_OUTPUT: the
        kernel switches between two samples, none is lost; the reader sorts both rings' samples together)."""
        log.debug("%s: %s", tp.full_name, "wakes the reader on each sample" if prompt else "batched")
        old = self._rings_of(tp)
        tp.prompt = prompt
        new = self._rings_of(tp)
        for fd, ring in zip(tp.fds, new, strict=True):
            pe.set_output(fd, ring.fd)
        for ring in new:
            ring.attached += 1
        self._detach(old, now)
        if not prompt:
            tp.counted = (self._count(tp), now)

    @staticmethod
    def _count(tp: Tracepoint) -> int:
        n = 0
        for fd in tp.fds:
            with contextlib.suppress(OSError):
                n += pe.read_count(fd)
        return n

    def _balance(self, elapsed_ns: int, now: int) -> None:
        """Move tracepoints between the prompt and the batched rings by their rates over the last `elapsed_ns`
        (the lock is held). Prompt rings count their samples by event id as they are found (they are quiet by
        construction); a batched tracepoint's rate is read from its counters only when the batched rings together
        are busy enough for one of them to stay."""
        if self._prompt_from >= len(self._rings) or elapsed_ns <= 0:
            return
        seconds = elapsed_ns / 1e9
        batched = [tp for tp in self._open.values() if not tp.prompt and tp.fds]
        if self._prompt_counts:
            per_tp: dict[str, int] = {}
            for ident, n in self._prompt_counts.items():
                tp = self._tracepoint_of.get(ident)
                if tp is not None and tp.prompt:
                    per_tp[tp.full_name] = per_tp.get(tp.full_name, 0) + n
            self._prompt_counts = {}
            for full, n in per_tp.items():
                if n > PROMPT_MAX_RATE * seconds:
                    self._move(self._open[full], False, now)
        found = sum(r.found for r in self._rings[:self._prompt_from])
        for ring in self._rings:
            ring.found = 0
        if not batched:
            return
        everything_slow = found < PROMPT_MIN_RATE * seconds
        for tp in batched:
            if everything_slow:
                self._move(tp, True, now)
                continue
            n = self._count(tp)
            before, at = tp.counted
            tp.counted = (n, now)
            if now > at and (n - before) * 1e9 / (now - at) < PROMPT_MIN_RATE:
                self._move(tp, True, now)
