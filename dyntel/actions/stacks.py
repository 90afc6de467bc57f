"""`stacks`: every thread's stack of the event's process: native frames (module, symbol, offset) and, for CPython,
the Python frames; plus the event's own call chain, symbolized, when the source captured one (`--callchain`).

The report is written to the artifact store twice, as JSON (`path`) and as readable text (`text_path`), and the
outcome carries the pause the target saw. Options: `native`, `python` (true/false; python defaults to "if it is
CPython"), `dir`, `max_total`, `pid` (another process than the event's), `timeout`.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar

from pydantic import Field

from dyntel.actions import ActionContext
from dyntel.actions.dump import target_pid
from dyntel.actions.spec import ActionSpec
from dyntel.capture.symbolize import PERF_CONTEXT_MIN
from dyntel.firing import OK, SKIPPED, ActionOutcome, Firing
from dyntel.options import Duration, OptionsModel, Size
from dyntel.units import parse_size

TYPE = "stacks"
RANK = 20
# perf marks where a call chain's user part starts with a value at the top of the address space (the markers all
# sit at or above dyntel.capture.symbolize.PERF_CONTEXT_MIN, which symbolize() drops).
PERF_CONTEXT_USER = (1 << 64) - 512


class StacksOptions(OptionsModel):
    what: ClassVar[str] = "stacks"
    pid: int | None = Field(default=None, ge=1)
    dir: str | None = None
    max_total: Size | None = None
    native: bool | None = None
    python: bool | None = None
    timeout: Duration | None = None


OPTIONS = StacksOptions


def user_callchain(chain: tuple[int, ...] | None) -> list[int] | None:
    """The user-space addresses of a perf call chain (after PERF_CONTEXT_USER; all of it if there is no marker)."""
    if not chain:
        return None
    if PERF_CONTEXT_USER in chain:
        chain = chain[chain.index(PERF_CONTEXT_USER) + 1:]
    out = [a for a in chain if a < PERF_CONTEXT_MIN]
    return out or None


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    from dyntel.capture.errors import ProcessGone
    from dyntel.capture.stacks import capture_stacks, format_text, report_json

    opts = spec.options
    pid = target_pid(spec, firing)
    if isinstance(pid, str):
        return ActionOutcome(TYPE, SKIPPED, {"reason": pid})
    event = firing.event
    chain = user_callchain(event.callchain) if event is not None and event.pid == pid else None
    python = opts.get("python")
    start = time.monotonic()
    try:
        # capture_stacks checks the permissions itself (permissions.check) before it attaches anything.
        report = capture_stacks(pid, native=bool(opts.get("native", True)),
                                python=None if python is None else bool(python), callchain=chain,
                                timeout=context.remaining())
    except ProcessGone as e:
        return ActionOutcome(TYPE, SKIPPED, {"reason": str(e), "pid": pid})
    document = report_json(report)
    text = format_text(report)
    detail: dict[str, object] = {
        "pid": pid, "threads": len(report.threads), "python": report.python_version is not None,
        "pause_ms": report.pause_ms, "duration_ms": round((time.monotonic() - start) * 1000.0, 3)}
    if report.errors:
        detail["errors"] = list(report.errors)
    store = context.artifacts.get(opts.get("dir"), max_total=parse_size(opts["max_total"])
                                  if opts.get("max_total") is not None else None)
    stem: str | None = None
    for suffix, body, key in ((".json", json.dumps(document, indent=1, default=str) + "\n", "path"),
                              (".txt", text, "text_path")):
        data = body.encode("utf-8", "surrogateescape")
        reservation = store.reserve("stacks", suffix, pid=pid, rule=firing.rule, want=len(data) + (64 << 10),
                                    stem=stem)
        if isinstance(reservation, str):
            detail["skipped_files"] = reservation
            break
        with reservation:
            if len(data) > reservation.limit:
                data = data[:reservation.limit]
                detail["truncated"] = True
            reservation.file.write(data)
        detail[key] = str(reservation.path)
        stem = reservation.path.name.removesuffix(suffix)
    return ActionOutcome(TYPE, OK, detail)
