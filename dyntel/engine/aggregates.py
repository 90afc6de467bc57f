"""A threshold window's aggregates over one group's values inside the window: sum and avg, min and max, p50, p90
and p99, each bounded by `cap` values (see windows.py for what that bound does to each)."""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any


def number(value: Any) -> float | int | None:
    """A value as a number to aggregate; None (the event is ignored) when it is missing, NaN or not a number."""
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return None
        return value
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return None if math.isnan(f) else f
    return None


class SumAgg:
    """sum and avg. Entries are [time of newest value, count, sum]; one per value until the cap."""

    __slots__ = ("avg", "cap", "entries", "n", "total")

    def __init__(self, cap: int, avg: bool) -> None:
        self.entries: deque[list[Any]] = deque()
        self.total: float | int = 0
        self.n = 0
        self.cap = cap
        self.avg = avg

    def add(self, t: int, v: float | int) -> None:
        e = self.entries
        if len(e) >= self.cap:
            last = e[-1]
            last[0] = t
            last[1] += 1
            last[2] += v
        else:
            e.append([t, 1, v])
        self.total += v
        self.n += 1

    def expire(self, lo: int) -> None:
        e = self.entries
        while e and e[0][0] < lo:
            _, c, s = e.popleft()
            self.n -= c
            self.total -= s
        if not e:
            self.total = 0  # float drift ends with the window
            self.n = 0

    def size(self) -> int:
        return self.n

    def value(self) -> float | int | None:
        if not self.n:
            return None
        return self.total / self.n if self.avg else self.total


class ExtremeAgg:
    """min and max: a monotonic deque of [time, value], the sliding-window extreme in O(1) amortized."""

    __slots__ = ("cap", "entries", "is_min")

    def __init__(self, cap: int, is_min: bool) -> None:
        self.entries: deque[list[Any]] = deque()
        self.cap = cap
        self.is_min = is_min

    def add(self, t: int, v: float | int) -> None:
        e = self.entries
        if self.is_min:
            while e and e[-1][1] >= v:
                e.pop()
        else:
            while e and e[-1][1] <= v:
                e.pop()
        if len(e) >= self.cap:
            # The newest kept extreme is more extreme than v; letting it live as long as v keeps the deque bounded.
            e[-1][0] = t
        else:
            e.append([t, v])

    def expire(self, lo: int) -> None:
        e = self.entries
        while e and e[0][0] < lo:
            e.popleft()

    def size(self) -> int:
        return len(self.entries)

    def value(self) -> float | int | None:
        return self.entries[0][1] if self.entries else None


class PercentileAgg:
    """p50/p90/p99 by nearest rank over the newest `cap` values inside the window."""

    __slots__ = ("cap", "fraction", "order", "sorted")

    def __init__(self, cap: int, fraction: float) -> None:
        self.order: deque[tuple[int, float | int]] = deque()
        self.sorted: list[float | int] = []
        self.cap = cap
        self.fraction = fraction

    def _drop_oldest(self) -> None:
        _, v = self.order.popleft()
        s = self.sorted
        del s[bisect.bisect_left(s, v)]

    def add(self, t: int, v: float | int) -> None:
        if len(self.order) >= self.cap:
            self._drop_oldest()
        self.order.append((t, v))
        bisect.insort(self.sorted, v)

    def expire(self, lo: int) -> None:
        o = self.order
        while o and o[0][0] < lo:
            self._drop_oldest()

    def size(self) -> int:
        return len(self.order)

    def value(self) -> float | int | None:
        s = self.sorted
        if not s:
            return None
        return s[max(0, math.ceil(self.fraction * len(s)) - 1)]


Agg = SumAgg | ExtremeAgg | PercentileAgg


def new_agg(agg: str, cap: int) -> Agg:
    if agg in ("sum", "avg"):
        return SumAgg(cap, agg == "avg")
    if agg in ("min", "max"):
        return ExtremeAgg(cap, agg == "min")
    if agg in ("p50", "p90", "p99"):
        return PercentileAgg(cap, int(agg[1:]) / 100)
    raise ValueError(f"unknown threshold aggregate {agg!r}")
