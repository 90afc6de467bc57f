"""Every thread's native program counters, unwound by elfutils' eu-stack.

The stacks capture unwinds in-process through libdw (dyntel.capture.libdw) and runs eu-stack only when libdw
cannot be loaded. NativeThread is the shape of both.

eu-stack attaches to one thread at a time (PTRACE_ATTACH), unwinds it with the modules' CFI and detaches before
the next, so each thread is stopped only for its own unwind (a few ms) and never all at once. It runs with -q:
the symbol names come from dyntel.capture.symbolize, which keeps the modules' tables between captures and gives
the symbol offsets eu-stack does not print; -q makes eu-stack itself 4x quicker (3.6 ms against 16 ms for the
capture target), though its naming happens after the detach and never lengthened the pause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dyntel.capture.tool import run_tool

__all__ = ["NativeThread", "parse_eu_stack", "unwind"]

INSTALL_HINT = "install elfutils (apt-get install elfutils) or set DYNTEL_EU_STACK"
MAX_FRAMES = 256

_TID = re.compile(r"^TID (\d+):")
# "#3  0x00007f76fdd65254 - 1 ..." ("- 1": a return address, the call is at pc - 1); "    " for the activation
_FRAME = re.compile(r"^#\d+\s+0x([0-9a-f]+)( - 1)?")


@dataclass(slots=True)
class NativeThread:
    tid: int
    pcs: list[int] = field(default_factory=list)
    return_address: list[bool] = field(default_factory=list)


def parse_eu_stack(text: str) -> dict[int, NativeThread]:
    threads: dict[int, NativeThread] = {}
    current: NativeThread | None = None
    for line in text.splitlines():
        match = _TID.match(line)
        if match:
            current = threads.setdefault(int(match.group(1)), NativeThread(int(match.group(1))))
            continue
        frame = _FRAME.match(line)
        if frame and current is not None:
            current.pcs.append(int(frame.group(1), 16))
            current.return_address.append(frame.group(2) is not None)
    return threads


def unwind(eu_stack: str, pid: int, timeout: float) -> tuple[dict[int, NativeThread], str, int]:
    """(threads by tid, eu-stack's stderr, its exit status: 0 all frames, 1 some frames missing, 2 none)."""
    result = run_tool([eu_stack, "-q", "-a", "-n", str(MAX_FRAMES), "-p", str(pid)], timeout)
    return parse_eu_stack(result.stdout), result.stderr.strip(), result.returncode
