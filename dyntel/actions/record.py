"""`record`: write the events around a firing, from the engine's flight recorder, to a file `dyntel decode` and
`dyntel replay` read back.

Options: `last` (a duration before the firing's event; default 30s), `next` (a duration after it; default 0s),
`format` (`jsonl`, one EVENT a line, the default; or `json`, the `{"<file name>": [EVENT, ...]}` form), `dir` (or
`path`: the artifact directory, default the run's), `max_total`, `timeout`.

The events of `last` are written at once; the action then waits until `next` has passed on the wall clock (plus
the live source's delay) and appends the events of `next`. The file is an artifact: 0600, in the store's quota
(writing stops at the reservation's budget, and the outcome says `truncated`). Without the recorder (`dyntel
replay`, `dyntel test`) the action is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from dyntel.actions import ActionContext
from dyntel.actions.recorder import SECOND, FlightRecorder, record_spans
from dyntel.actions.spec import ActionSpec
from dyntel.event import Event
from dyntel.event_json import format_event, json_string
from dyntel.firing import OK, SKIPPED, ActionOutcome, Firing
from dyntel.options import Duration, OptionsModel, Size
from dyntel.units import parse_size

TYPE = "record"
RANK = 50
# After `next` ends on the wall clock, events of it may still be on their way (the live source holds them up to its
# flush interval and reorder window): wait this much longer before reading the ring.
SETTLE_NS = SECOND // 2
# JSON text is bigger than the recorder's in-memory estimate: the room reserved per byte held.
TEXT_FACTOR = 4


class RecordOptions(OptionsModel):
    what: ClassVar[str] = "record"
    last: Duration | None = None
    next: Duration | None = None
    path: str | None = None  # the artifact directory, like `dir`
    format: Literal["jsonl", "json"] | None = None
    dir: str | None = None
    max_total: Size | None = None
    timeout: Duration | None = None


OPTIONS = RecordOptions


class _Writer:
    """Events as JSON text into a reservation, stopping at its budget."""

    def __init__(self, file: Any, limit: int, name: str, whole: bool) -> None:
        self.file = file
        self.limit = limit - (8 if whole else 0)  # room for the closing brackets
        self.whole = whole
        self.written = 0
        self.events = 0
        self.truncated = False
        self._first = True
        if whole:
            self._put("{" + json_string(name) + ": [\n")

    def _put(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogateescape")
        if self.written + len(data) > self.limit:
            self.truncated = True
            return False
        self.file.write(data)
        self.written += len(data)
        return True

    def write(self, events: Iterable[Event]) -> None:
        for e in events:
            if self.truncated:
                return
            text = format_event(e)
            if self.whole:
                text = ("" if self._first else ",\n") + text
            else:
                text += "\n"
            if self._put(text):
                self._first = False
                self.events += 1
        self.file.flush()

    def close(self) -> None:
        if self.whole:
            data = b"\n]}\n"
            self.file.write(data)
            self.written += len(data)


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    recorder: FlightRecorder | None = context.services.get("recorder")
    if recorder is None:
        return ActionOutcome(TYPE, SKIPPED, {"reason": "no flight recorder: record runs in `dyntel run` (live "
                                                       "sources only), not in a replay or a test"})
    opts = spec.options
    last, next_ = record_spans(opts)
    fmt = str(opts.get("format") or "jsonl")
    if fmt not in ("jsonl", "json"):
        raise ValueError(f"format {fmt!r}: expected jsonl or json")
    pid = firing.event.pid if firing.event is not None else None
    store = context.artifacts.get(opts.get("dir") or opts.get("path"), max_total=parse_size(opts["max_total"])
                                  if opts.get("max_total") is not None else None)
    reservation = store.reserve("record", "." + fmt, pid=pid, rule=firing.rule,
                                want=recorder.max_bytes * TEXT_FACTOR)
    if isinstance(reservation, str):
        return ActionOutcome(TYPE, SKIPPED, {"reason": reservation})
    at = firing.time
    detail: dict[str, Any] = {"last_s": last / SECOND, "next_s": next_ / SECOND, "format": fmt}
    with reservation:
        writer = _Writer(reservation.file, reservation.limit, reservation.path.name, fmt == "json")
        writer.write(recorder.window(at - last, at))
        detail["events_before"] = writer.events
        if next_ > 0 and not writer.truncated:
            # Wait on the wall clock for `next` to pass (the firing's time is the event's, on the same clock), as
            # far as the action's deadline allows.
            wait = (at + next_ + SETTLE_NS - time.time_ns()) / SECOND
            budget = context.remaining() - 1.0
            if wait > budget:
                detail["cut"] = f"next: the action's timeout allowed {max(budget, 0):.1f}s of waiting"
            time.sleep(max(0.0, min(wait, budget)))
            end = min(at + next_, time.time_ns() - SETTLE_NS)
            before = writer.events
            writer.write(recorder.window(at, end, after=True))
            detail["events_after"] = writer.events - before
        writer.close()
    detail.update({"path": str(reservation.path), "events": writer.events, "size": writer.written,
                   "truncated": writer.truncated})
    if recorder.dropped:
        detail["recorder_dropped"] = recorder.dropped
    return ActionOutcome(TYPE, OK, detail)
