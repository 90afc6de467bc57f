"""`dump`: a dump of the event's process, as a Linux minidump or an ELF core, into the artifact store.

Options: `format: minidump|core` (default minidump), `memory: stacks|writable|all` (what memory to include;
default: stacks for a minidump, as Breakpad does, writable for a core, as the kernel does), `dir` (the artifact
directory), `max_size` (this dump's cap: regions are dropped, stacks last, and the outcome says `truncated`),
`max_total` (the directory's quota), `pid` (another process than the event's), `timeout`.

The threads are stopped with ptrace (PTRACE_SEIZE + INTERRUPT, no signal is delivered) only while registers and
memory are copied; the outcome gives that pause (`pause_ms`) beside the whole duration and the size.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from pydantic import Field

from dyntel.actions import ActionContext
from dyntel.actions.spec import ActionSpec
from dyntel.firing import OK, SKIPPED, ActionOutcome, Firing
from dyntel.options import Duration, OptionsModel, Size
from dyntel.units import parse_size

TYPE = "dump"
RANK = 10
SUFFIX = {"minidump": ".dmp", "core": ".core"}
DEFAULT_MEMORY = {"minidump": "stacks", "core": "writable"}


class DumpOptions(OptionsModel):
    what: ClassVar[str] = "dump"
    format: Literal["minidump", "core"] | None = None
    dir: str | None = None
    max_size: Size | None = None
    max_total: Size | None = None
    memory: Literal["stacks", "writable", "all"] | None = None
    pid: int | None = Field(default=None, ge=1)
    timeout: Duration | None = None


OPTIONS = DumpOptions


def target_pid(spec: ActionSpec, firing: Firing) -> int | str:
    """The pid an action works on (its `pid` option, else the event's), or why there is none."""
    pid = spec.options.get("pid")
    if pid is None and firing.event is not None:
        pid = firing.event.pid
    if pid is None:
        return "the event carries no process id (give the action a pid option)"
    try:
        value = int(pid)
    except (TypeError, ValueError):
        return f"pid {pid!r} is not a process id"
    if value <= 0:
        return f"pid {value} is not a process id"
    return value


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    from dyntel.capture.errors import CaptureError, ProcessGone
    from dyntel.capture.output import guarded
    from dyntel.capture.permissions import check
    from dyntel.capture.procfs import parse_maps, read_maps, read_proc
    from dyntel.capture.ptrace import frozen

    opts = spec.options
    pid = target_pid(spec, firing)
    if isinstance(pid, str):
        return ActionOutcome(TYPE, SKIPPED, {"reason": pid})
    fmt = str(opts.get("format") or "minidump")
    if fmt not in SUFFIX:
        raise ValueError(f"format {fmt!r}: use minidump or core")
    memory = str(opts.get("memory") or DEFAULT_MEMORY[fmt])
    try:
        check(pid)
    except ProcessGone as e:
        return ActionOutcome(TYPE, SKIPPED, {"reason": str(e), "pid": pid})
    store = context.artifacts.get(opts.get("dir"), max_total=parse_size(opts["max_total"])
                                  if opts.get("max_total") is not None else None)
    max_size = parse_size(opts["max_size"]) if opts.get("max_size") is not None else None
    reservation = store.reserve("dump", SUFFIX[fmt], pid=pid, rule=firing.rule, want=max_size)
    if isinstance(reservation, str):
        return ActionOutcome(TYPE, SKIPPED, {"reason": reservation, "pid": pid})
    start = time.monotonic()
    try:
        maps_raw = read_proc(pid, "maps")
        # An empty read means refused or gone: read_maps raises the error that says which.
        maps = parse_maps(maps_raw.decode("utf-8", "surrogateescape")) if maps_raw else read_maps(pid)
        out = guarded(reservation.file, deadline=context.deadline, limit=reservation.limit)
        if fmt == "core":
            from dyntel.capture.elfcore import write_core

            with frozen(pid, timeout=min(2.0, context.remaining())) as f:
                result = write_core(f, maps, out, memory=memory, max_size=reservation.limit,
                                    redact_patterns=context.redact)
        else:
            from dyntel.capture.minidump import process_info, write_minidump

            # /proc text, ELF build ids and uname are read while the target still runs, not during its pause.
            info = process_info(pid, maps, maps_raw, context.redact)
            with frozen(pid, timeout=min(2.0, context.remaining())) as f:
                result = write_minidump(f, maps, out, memory=memory, max_size=reservation.limit, info=info)
        pause_ns = f.pause_ns
        out.flush()
    except CaptureError as e:
        reservation.discard()
        # The freeze waits at most the time the action has left: when that ran out first, what the user set was
        # the timeout, and the outcome says so, whichever step noticed it.
        if context.deadline is not None and time.monotonic() >= context.deadline:
            raise TimeoutError(f"the capture ran past its timeout and was stopped ({e})") from e
        raise
    except BaseException:
        reservation.discard()
        raise
    size = reservation.finish()
    return ActionOutcome(TYPE, OK, {
        "path": str(reservation.path), "format": fmt, "memory": memory, "pid": pid, "size": size,
        "truncated": result.truncated, "threads": result.threads, "regions": result.regions,
        "pause_ms": round(pause_ns / 1e6, 3), "duration_ms": round((time.monotonic() - start) * 1000.0, 3)})
