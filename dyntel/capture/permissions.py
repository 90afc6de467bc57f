"""Whether ptrace on a process would be allowed, and if not, why, in words that say what to change.

The kernel answers a refused attach with a bare EPERM. The reasons are few and each is visible from /proc, in the
order the kernel checks them (kernel/ptrace.c `__ptrace_may_access`, then Yama, then `ptrace_attach`):
uids/gids differ and we lack CAP_SYS_PTRACE; the target is not dumpable and we lack CAP_SYS_PTRACE; Yama's
ptrace_scope; the target already has a tracer.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from dyntel.capture.errors import NotPermitted, ProcessGone

__all__ = ["Facts", "check", "explain", "gather", "reasons"]

CAP_SYS_PTRACE = 19
YAMA_SCOPE = "/proc/sys/kernel/yama/ptrace_scope"

_GIVE_CAP = ("give dyntel CAP_SYS_PTRACE (run it as root, or `setcap cap_sys_ptrace+ep` on its interpreter; in "
             "Kubernetes securityContext.capabilities.add: [\"SYS_PTRACE\"], in Docker --cap-add SYS_PTRACE)")


@dataclass(slots=True)
class Facts:
    """What decides whether we may ptrace the target, as read from /proc. None: could not be read."""

    pid: int
    name: str
    our_pid: int
    our_uid: int
    our_gid: int
    have_cap_sys_ptrace: bool
    target_uids: tuple[int, ...]  # real, effective, saved, fs
    target_gids: tuple[int, ...]
    dumpable: bool | None
    tracer_pid: int
    tracer_name: str
    yama_scope: int | None
    descendant: bool
    kernel_thread: bool


def _status(pid: int | str) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _ids(value: str) -> tuple[int, ...]:
    return tuple(int(v) for v in value.split())


def _has_cap(status: dict[str, str], cap: int) -> bool:
    return bool(int(status.get("CapEff", "0"), 16) >> cap & 1)


def _yama_scope() -> int | None:
    try:
        with open(YAMA_SCOPE) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None  # no Yama in this kernel: no extra restriction


def _is_descendant(pid: int, ancestor: int) -> bool:
    seen = 0
    while pid > 1 and seen < 4096:
        if pid == ancestor:
            return True
        ppid = _status(pid).get("PPid")
        if not ppid:
            return False
        pid = int(ppid)
        seen += 1
    return False


def _dumpable(pid: int, uids: tuple[int, ...]) -> bool | None:
    """The kernel gives the files in a non-dumpable process's /proc/PID to root (the directory itself keeps its
    owner); for a process that runs as root that tells nothing."""
    if not uids or uids[1] == 0:
        return None
    try:
        return os.stat(f"/proc/{pid}/status").st_uid == uids[1]
    except OSError:
        return None


def gather(pid: int) -> Facts | None:
    """The facts about `pid`, None if no such process is visible from here."""
    status = _status(pid)
    # A zombie (or a process half-way out) has no memory or threads left to capture: that is gone, not a kernel
    # thread, whatever its empty /proc files suggest.
    if not status or status.get("State", "")[:1] in ("Z", "X"):
        return None
    ours = _status("self")
    uids = _ids(status.get("Uid", ""))
    tracer = int(status.get("TracerPid", "0") or 0)
    kernel_thread = _is_kernel_thread(pid, status)
    if kernel_thread is None:
        return None  # on its way out: no memory left, and not a kernel thread either
    return Facts(
        pid=pid,
        name=status.get("Name", "?"),
        our_pid=os.getpid(),
        our_uid=os.getuid(),
        our_gid=os.getgid(),
        have_cap_sys_ptrace=_has_cap(ours, CAP_SYS_PTRACE),
        target_uids=uids,
        target_gids=_ids(status.get("Gid", "")),
        dumpable=_dumpable(pid, uids),
        tracer_pid=tracer,
        tracer_name=_status(tracer).get("Name", "?") if tracer else "",
        yama_scope=_yama_scope(),
        descendant=_is_descendant(pid, os.getpid()),
        kernel_thread=kernel_thread,
    )


PF_KTHREAD = 0x00200000


def _is_kernel_thread(pid: int, status: dict[str, str]) -> bool | None:
    """True for a kernel thread (PF_KTHREAD in /proc/PID/stat's flags, or `Kthread: 1` in status); None for a
    process that has released its memory while exiting (no VmSize, no exe) but is no kernel thread: it is gone."""
    if status.get("Kthread") == "1":
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        flags = int(stat[stat.rfind(b")") + 2:].split()[6])
    except (OSError, ValueError, IndexError):
        return None
    if flags & PF_KTHREAD:
        return True
    if "VmSize" not in status and not os.path.exists(f"/proc/{pid}/exe"):
        return None
    return False


def reasons(facts: Facts) -> list[str]:
    """Every reason ptrace on the process would be refused, most fundamental first; [] if it would be allowed."""
    who = f"process {facts.pid} ({facts.name})"
    found = []
    if facts.pid == facts.our_pid:
        found.append(f"{who} is dyntel itself: a process cannot ptrace itself; capture it from another process")
    if facts.kernel_thread:
        found.append(f"{who} is a kernel thread: it has no user memory or registers to capture")
    cap = facts.have_cap_sys_ptrace
    same_ids = (all(u == facts.our_uid for u in facts.target_uids[:3])
                and all(g == facts.our_gid for g in facts.target_gids[:3]))
    if not cap and not same_ids:
        found.append(f"{who} runs as uid {'/'.join(map(str, facts.target_uids[:3]))} gid "
                     f"{'/'.join(map(str, facts.target_gids[:3]))} (real/effective/saved) and dyntel as uid "
                     f"{facts.our_uid} gid {facts.our_gid} without CAP_SYS_PTRACE: run dyntel as the same user and "
                     f"group, or {_GIVE_CAP}")
    if not cap and facts.dumpable is False:
        found.append(f"{who} is not dumpable (it called prctl(PR_SET_DUMPABLE, 0), changed its uid, or runs a "
                     f"setuid or file-capability program), so only a tracer with CAP_SYS_PTRACE may attach: "
                     f"{_GIVE_CAP}")
    scope = facts.yama_scope
    if scope == 3:
        found.append(f"ptrace is disabled for every process: {YAMA_SCOPE} is 3, which cannot be lowered until a "
                     "reboot; set kernel.yama.ptrace_scope = 1 (or 0) in /etc/sysctl.d and reboot")
    elif scope == 2 and not cap:
        found.append(f"{YAMA_SCOPE} is 2: only a tracer with CAP_SYS_PTRACE may attach; {_GIVE_CAP}")
    elif scope == 1 and not cap and not facts.descendant:
        found.append(f"{YAMA_SCOPE} is 1: without CAP_SYS_PTRACE a process may only trace its own descendants "
                     f"and {who} is not one of dyntel's; {_GIVE_CAP}, or lower the scope with "
                     "`sysctl kernel.yama.ptrace_scope=0`")
    if facts.tracer_pid and facts.tracer_pid != facts.our_pid:
        found.append(f"{who} is already traced by process {facts.tracer_pid} ({facts.tracer_name}): a process has "
                     "one tracer at a time; detach that debugger or strace (or wait for it to finish) and retry")
    return found


def _not_visible(pid: int) -> str:
    return (f"no process {pid} is visible from here: it exited, or runs in another pid namespace (in Kubernetes set "
            "shareProcessNamespace: true in the pod spec, or run dyntel with hostPID: true; in Docker use "
            "--pid=container:NAME or --pid=host)")


def check(pid: int) -> None:
    """Raise ProcessGone if `pid` is not visible, NotPermitted (with the reason) if ptrace on it would be refused."""
    facts = gather(pid)
    if facts is None:
        raise ProcessGone(_not_visible(pid))
    found = reasons(facts)
    if found:
        raise NotPermitted("; and ".join(found))


def explain(pid: int, err: int) -> str:
    """A message for errno `err` from ptrace, process_vm_readv or /proc/PID/mem on `pid`."""
    if err == errno.ESRCH:
        return _not_visible(pid)
    if err in (errno.EPERM, errno.EACCES):
        facts = gather(pid)
        if facts is None:
            return _not_visible(pid)
        found = reasons(facts)
        if found:
            return "; and ".join(found)
        return (f"the kernel refused ptrace on process {facts.pid} ({facts.name}) for none of the usual reasons "
                "(uid, dumpable, Yama, another tracer): a security module or seccomp profile forbids it. Check "
                "SELinux (deny_ptrace boolean), AppArmor (the profile needs `ptrace (read, trace)`), or the "
                "container's seccomp profile (Docker's default allows ptrace from kernel 4.8)")
    if err in (errno.EFAULT, errno.EIO):
        return f"memory of process {pid} could not be read at that address (unmapped, or a guard page)"
    return f"process {pid}: {os.strerror(err)}"
