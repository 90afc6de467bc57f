"""This process's capabilities: making the permitted ones effective at start, and handing the ptrace ones to the
helper programs it runs.

The container image gives dyntel its capabilities as file capabilities of its interpreter, in the permitted set
only (`setcap ...=p`, no effective bit). With the effective bit, a container whose bounding set lacks one of them
could not run the interpreter at all (the kernel refuses the execve: "operation not permitted"); without it, dyntel
starts with what the container grants, makes those effective itself, and says which one is missing where it is
needed. Under systemd (ambient capabilities) or as root, the permitted set is already effective and this changes
nothing.

The helpers (eu-stack, py-spy) get CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, where dyntel holds them, as ambient
capabilities raised in the child between fork and exec: only they get them, not commands that exec actions run,
and no file of the image needs capabilities but the interpreter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

__all__ = ["HELPER_CAPS", "helper_preexec", "pass_to_helper", "raise_permitted"]

CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19
# What eu-stack and py-spy need on another user's process: ptrace and process_vm_readv, and /proc/PID/auxv (0400,
# the target's), which eu-stack reads before it attaches.
HELPER_CAPS = (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH)

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_IS_SET = 1


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _get() -> tuple[_Header, ctypes.Array[_Data]]:
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if _lib().capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    return header, data


def _set(header: _Header, data: ctypes.Array[_Data]) -> None:
    if _lib().capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def raise_permitted() -> None:
    """Make every permitted capability effective. Never fails: where the kernel refuses, the code that needs a
    capability finds it missing and says so."""
    if not os.path.exists("/proc/self/status"):  # not Linux
        return
    try:
        header, data = _get()
        if all(d.effective == d.permitted for d in data):
            return
        for d in data:
            d.effective = d.permitted
        _set(header, data)
    except (OSError, AttributeError):
        pass


def pass_to_helper() -> None:
    """In a child between fork and exec (subprocess's preexec_fn): raise HELPER_CAPS, those of them this process
    holds, into the ambient set, which the execve of a file without capabilities keeps. Async-signal-unsafe work
    is none: two system calls and a loop."""
    try:
        header, data = _get()
        held = [c for c in HELPER_CAPS if data[c // 32].permitted >> (c % 32) & 1]
        if not held:
            return
        for c in held:  # ambient needs the capability in the inheritable set as well as the permitted one
            data[c // 32].inheritable |= 1 << (c % 32)
        _set(header, data)
        for c in held:
            _lib().prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, c, 0, 0)
    except (OSError, AttributeError):
        pass


def helper_preexec() -> Callable[[], None] | None:
    """pass_to_helper where it is needed, else None: not for root (whose children get every capability of the
    bounding set anyway), nor when the capabilities are ambient already (systemd) or not held at all. A preexec_fn
    makes subprocess fork instead of vfork, which costs time in a large process: only pay it when it does something."""
    if os.geteuid() == 0 or not os.path.exists("/proc/self/status"):
        return None
    try:
        _, data = _get()
        held = [c for c in HELPER_CAPS if data[c // 32].permitted >> (c % 32) & 1]
        if all(_lib().prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_IS_SET, c, 0, 0) == 1 for c in held):
            return None
    except (OSError, AttributeError):
        return None
    return pass_to_helper
