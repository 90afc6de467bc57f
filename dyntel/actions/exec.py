"""`exec`: run a command for a firing. Off unless dyntel was started with `--allow-exec`.

Options: `argv` (a list: the program and its arguments, each with placeholders; no shell is involved, so a field's
value can never become a command), `timeout` (default: the type's, 30s).

The command runs in a process group of its own, with stdin from /dev/null and a minimal environment: PATH, LANG,
HOME, plus the firing as DYNTEL_* variables (DYNTEL_RULE, DYNTEL_TIME, DYNTEL_PID, DYNTEL_TID, DYNTEL_PROVIDER,
DYNTEL_EVENT, DYNTEL_LEVEL, DYNTEL_GROUP as JSON, DYNTEL_EVENT_JSON, and DYNTEL_ACTIONS_<TYPE>_<KEY> for each result
of an earlier action of the firing, e.g. DYNTEL_ACTIONS_DUMP_PATH). At the deadline the whole group is killed
(SIGKILL). Its exit status and the first `OUTPUT_CAP` bytes of stdout and stderr go into the outcome; a non-zero
status is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import time
from typing import Any, ClassVar

from pydantic import Field

from dyntel.actions import ActionContext
from dyntel.actions.placeholders import as_text
from dyntel.actions.spec import ActionSpec
from dyntel.event_json import format_event
from dyntel.firing import FAILED, OK, SKIPPED, ActionOutcome, Firing
from dyntel.options import Duration, OptionsModel

TYPE = "exec"
RANK = 60
SHORT_FORM = ("argv", list)  # `- exec: [argv...]`
OUTPUT_CAP = 8 << 10  # bytes of stdout and of stderr kept in the outcome (and the action log)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_NAME = re.compile(r"[^A-Z0-9]+")


class ExecOptions(OptionsModel):
    what: ClassVar[str] = "exec"
    argv: list[str] = Field(min_length=1)
    timeout: Duration | None = None


OPTIONS = ExecOptions


def environment(firing: Firing) -> dict[str, str]:
    """The command's whole environment: a minimal base and the firing's values."""
    env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "LANG": os.environ.get("LANG", "C.UTF-8"),
           "HOME": os.environ.get("HOME", "/")}
    env["DYNTEL_RULE"] = firing.rule
    env["DYNTEL_TIME"] = str(firing.time)
    env["DYNTEL_GROUP"] = json.dumps(firing.group, default=str, separators=(",", ":"))
    e = firing.event
    if e is not None:
        for key, value in (("PROVIDER", e.provider), ("EVENT", e.name), ("PID", e.pid), ("TID", e.tid),
                           ("LEVEL", e.level), ("KEYWORD", e.keyword), ("SOURCE", e.source)):
            if value is not None:
                env[f"DYNTEL_{key}"] = str(value)
        env["DYNTEL_EVENT_JSON"] = format_event(e)
    # Results of the actions before this one (the latest of a type wins, as {actions.TYPE.KEY} reads them).
    for outcome in firing.actions:
        for key, value in {"status": outcome.status, **outcome.detail}.items():
            name = "DYNTEL_ACTIONS_" + _NOT_NAME.sub("_", f"{outcome.type}_{key}".upper())
            env[name] = as_text(value)
    return {k: v.replace("\0", "") for k, v in env.items()}


def _text(data: bytes) -> tuple[str, bool]:
    return data[:OUTPUT_CAP].decode("utf-8", "replace"), len(data) > OUTPUT_CAP


def _collect(proc: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr until both close or the deadline passes, keeping the first OUTPUT_CAP bytes of each
    (and one more, to tell that there was more); the rest is read and dropped, so a chatty command neither blocks on
    a full pipe nor fills dyntel's memory. At the deadline the process group is killed. Returns (out, err, killed).
    """
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    kept = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    killed = False
    with selectors.DefaultSelector() as sel:
        for f in (proc.stdout, proc.stderr):
            sel.register(f, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0 and not killed:
                killed = True
                # The group, not just the child: what it started must not outlive the action either.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                # A process that left the group may still hold the pipes open: give up on them soon.
                deadline = time.monotonic() + 2.0
                continue
            if left <= 0:
                break
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = kept[key.fd]
                if len(buf) <= OUTPUT_CAP:
                    buf += chunk[:OUTPUT_CAP + 1 - len(buf)]
    proc.stdout.close()
    proc.stderr.close()
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return bytes(out), bytes(err), killed


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    if not context.allow_exec:
        return ActionOutcome(TYPE, SKIPPED, {"reason": "exec is off: start dyntel with --allow-exec to let rules "
                                                       "run commands"})
    argv = spec.options.get("argv")
    if isinstance(argv, str):
        argv = [argv]
    if not isinstance(argv, list) or not argv:
        return ActionOutcome(TYPE, FAILED, {"reason": f"argv {argv!r}: expected a list, the program first"})
    args = [as_text(a) for a in argv]
    start = time.monotonic()
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=environment(firing), start_new_session=True, close_fds=True)
    except OSError as e:
        return ActionOutcome(TYPE, FAILED, {"reason": f"{args[0]}: {e.strerror or e}", "argv": args})
    out, err, timed_out = _collect(proc, time.monotonic() + context.remaining())
    stdout, out_cut = _text(out)
    stderr, err_cut = _text(err)
    detail: dict[str, Any] = {"argv": args, "pid": proc.pid, "exit": proc.returncode, "stdout": stdout,
                              "stderr": stderr, "duration_ms": round((time.monotonic() - start) * 1000.0, 3)}
    if out_cut or err_cut:
        detail["output_truncated"] = True
    if timed_out:
        detail["reason"] = f"timeout: killed the process group after {detail['duration_ms'] / 1000:.1f}s"
        return ActionOutcome(TYPE, FAILED, detail)
    if proc.returncode != 0:
        detail["reason"] = (f"exit status {proc.returncode}" if proc.returncode > 0
                            else f"killed by signal {_signal_name(-proc.returncode)}")
        return ActionOutcome(TYPE, FAILED, detail)
    return ActionOutcome(TYPE, OK, detail)
