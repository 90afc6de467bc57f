"""Event-time order across the live source's rings: how far the samples found may be yielded.

Order. Each drain reads the clock first, then every ring up to its data_head; all samples found are sorted by time
(equal times by ring) together with those held over, and those no ring can still precede are yielded (`_cut`), the
rest held for a later drain. A ring's own samples come in time order (one CPU writes it), so a ring whose last
sample found is later than t can bring nothing older than t; any other ring in use may still commit a sample whose
time was taken just before the drain started and whose record was committed just after the ring was read (a few
microseconds, more if the host preempts a virtual CPU mid-write): `reorder_ns` (1 ms by default) covers that, so
events come out in time order across CPUs. A sample waits only while another ring in use has shown nothing later
and the window has not passed (with one CPU, or every other CPU busier, not at all), and the reader's wait ends
when the oldest held sample may go, so this adds at most `reorder_ns`. Any that still arrive behind an event
already yielded are counted in `stats.out_of_order` (and yielded anyway).
"""

from __future__ import annotations

from collections.abc import Sequence

from dyntel.sources.perf import event as pe

# A ring no tracepoint writes into any more may still get a sample being written when it was detached (the kernel
# frees the old ring's users after an RCU grace period): until this long after, it is still waited for.
DETACH_GRACE_NS = 50_000_000


def cut(rings: Sequence[pe.Ring], start: int, reorder_ns: int) -> int:
    """The time up to which the samples found may be yielded: no ring can still bring an older one.

    A ring's samples come in time order (one CPU writes it), so a ring whose last sample found is later than
    t brings nothing older than t. Any other ring may still be writing a sample whose time was taken before
    this drain began and which it commits after its head was read (a few microseconds, more if the host
    preempts the virtual CPU mid-write): those are waited for up to `reorder_ns` before `start`. A ring nothing
    writes into is not waited for (DETACH_GRACE_NS after its last tracepoint left). So a sample waits only
    while some other CPU in use has shown nothing later and the window has not passed; with one CPU, or every
    other CPU busier, never."""
    floor = start - reorder_ns
    upto = 1 << 62
    for ring in rings:
        if not ring.attached and (not ring.detached_at or start - ring.detached_at > DETACH_GRACE_NS):
            continue
        last = ring.last_found
        edge = last if last > floor else floor
        if edge < upto:
            upto = edge
    return upto
