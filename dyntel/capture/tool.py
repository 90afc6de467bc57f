"""Running the external tools a capture leans on (eu-stack, py-spy): argv only, a deadline, stderr kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dyntel.capture.errors import CaptureError
from dyntel.privileges import helper_preexec

__all__ = ["ToolMissing", "ToolResult", "ToolTimeout", "find_tool", "run_tool"]


class ToolMissing(CaptureError):
    """The helper program is not installed (or not where DYNTEL_<NAME> points)."""


class ToolTimeout(CaptureError):
    """The helper ran past the capture's timeout and was killed."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def find_tool(name: str, install_hint: str) -> str:
    """DYNTEL_<NAME> if set (ops pin a build there), else beside this Python (a venv's bin/ need not be on PATH,
    and pip puts py-spy there), else PATH."""
    variable = "DYNTEL_" + name.upper().replace("-", "_")
    pinned = os.environ.get(variable)
    if pinned:
        if not os.access(pinned, os.X_OK):
            raise ToolMissing(f"{name}: {variable}={pinned} is not an executable file; {install_hint}")
        return pinned
    beside = Path(sys.executable).parent / name
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} not found (looked beside {sys.executable} and on PATH); {install_hint}")
    return found


def run_tool(argv: list[str], timeout: float) -> ToolResult:
    """Run to completion, or kill it at `timeout` seconds and raise ToolTimeout with what it had said."""
    if timeout <= 0:
        raise ToolTimeout(f"{Path(argv[0]).name}: no time left of the capture's timeout to start it")
    try:
        # The helpers need dyntel's ptrace capabilities, which a child does not inherit from file capabilities.
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
                              preexec_fn=helper_preexec())
    except subprocess.TimeoutExpired as e:  # subprocess.run has already killed and reaped it
        said = _text(e.stderr).strip()
        raise ToolTimeout(f"{Path(argv[0]).name} killed after the capture's timeout of {timeout:.3g} s"
                          + (f"; it said: {said}" if said else "")) from None
    except OSError as e:
        raise ToolMissing(f"cannot run {argv[0]}: {e.strerror}") from None
    return ToolResult(argv, done.returncode, _text(done.stdout), _text(done.stderr))


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")
