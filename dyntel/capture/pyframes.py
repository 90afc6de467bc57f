"""The Python side of a CPython process: is it one, which version, and every thread's Python frames (py-spy).

The stacks capture reads CPython 3.11's frames itself (dyntel.capture.cpython) and runs py-spy only for other
versions, after its own freeze.

py-spy runs in its default blocking mode: it stops the process for the few ms it takes to copy the frame chains
(measured on the capture target: heartbeat max gap 5.0 ms, against 2.8 ms with --nonblocking), and in exchange
no thread's chain is read half-way through a call or return. Its --native merged mode is not used: it stopped
the target for 20-24 ms a dump, four times as long, and eu-stack gives the native frames anyway.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dyntel.capture.errors import CaptureError
from dyntel.capture.procfs import MapEntry
from dyntel.capture.symbolize import exported, module_path, runtime_address
from dyntel.capture.tool import run_tool

__all__ = ["PythonFrame", "PythonInfo", "PythonThread", "detect", "dump", "parse_py_spy"]

INSTALL_HINT = "install py-spy (pip install py-spy) or set DYNTEL_PY_SPY"
_LIBPYTHON = re.compile(r"libpython(\d+)\.(\d+)")
_EXE = re.compile(r"^python(\d+)\.(\d+)")
_LEVELS = {0xA: "a", 0xB: "b", 0xC: "rc"}


@dataclass(frozen=True, slots=True)
class PythonInfo:
    cpython: bool
    version: str | None  # "3.11.7" when Py_Version can be read, else "3.11" from a file name
    runtime: int | None = None  # where _PyRuntime is in the process (dyntel.capture.cpython starts there)


@dataclass(frozen=True, slots=True)
class PythonFrame:
    function: str
    file: str | None
    line: int | None


@dataclass(slots=True)
class PythonThread:
    tid: int
    name: str | None
    state: str
    frames: list[PythonFrame] = field(default_factory=list)  # innermost first


def _format_hex_version(hexversion: int) -> str:
    major, minor, micro = hexversion >> 24 & 0xFF, hexversion >> 16 & 0xFF, hexversion >> 8 & 0xFF
    level, serial = hexversion >> 4 & 0xF, hexversion & 0xF
    return f"{major}.{minor}.{micro}" + (f"{_LEVELS[level]}{serial}" if level in _LEVELS else "")


def detect(pid: int, maps: Sequence[MapEntry]) -> PythonInfo:
    """CPython if the executable or a mapped libpython exports _PyRuntime (an embedding program counts, whatever
    its name); the version from Py_Version (3.11+, read from the process) or else from libpythonX.Y/pythonX.Y."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        exe = ""
    candidates: list[MapEntry] = []
    for entry in maps:
        if entry.path and (entry.path == exe or _LIBPYTHON.search(os.path.basename(entry.path))) and all(
                c.path != entry.path for c in candidates):
            candidates.append(entry)
    for entry in candidates:
        symbols = exported(module_path(pid, entry))
        if "_PyRuntime" not in symbols:
            continue
        named = _LIBPYTHON.search(os.path.basename(entry.path)) or _EXE.search(os.path.basename(entry.path))
        version = f"{named.group(1)}.{named.group(2)}" if named else None
        if "Py_Version" in symbols:
            at = runtime_address(pid, maps, entry.path, symbols["Py_Version"])
            raw = _read_memory(pid, at, 4) if at is not None else b""
            if len(raw) == 4:
                version = _format_hex_version(struct.unpack("<I", raw)[0])
        return PythonInfo(True, version, runtime_address(pid, maps, entry.path, symbols["_PyRuntime"]))
    return PythonInfo(False, None)


def _read_memory(pid: int, address: int, size: int) -> bytes:
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
            f.seek(address)
            return f.read(size)
    except OSError:
        return b""


def parse_py_spy(text: str) -> dict[int, PythonThread]:
    """py-spy dump --json output → threads by OS tid."""
    data: Any = json.loads(text)
    threads: dict[int, PythonThread] = {}
    for item in data if isinstance(data, list) else []:
        tid = item.get("os_thread_id")
        if not isinstance(tid, int):
            continue
        state = "gil" if item.get("owns_gil") else "active" if item.get("active") else "idle"
        frames = [PythonFrame(str(f.get("name")), f.get("filename"), f.get("line")) for f in item.get("frames", [])]
        threads[tid] = PythonThread(tid, item.get("thread_name"), state, frames)
    return threads


def dump(py_spy: str, pid: int, timeout: float) -> dict[int, PythonThread]:
    """Every Python thread's frames; CaptureError with py-spy's own words when it fails."""
    result = run_tool([py_spy, "dump", "--json", "--pid", str(pid)], timeout)
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise CaptureError(f"py-spy exited with status {result.returncode}: {' / '.join(said) or 'no message'}")
    try:
        return parse_py_spy(result.stdout)
    except (ValueError, AttributeError, TypeError) as e:
        raise CaptureError(f"py-spy printed JSON this version of dyntel cannot read ({e})") from None
