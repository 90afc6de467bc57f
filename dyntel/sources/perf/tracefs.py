"""Finding tracefs, and saying plainly what to change when the live source cannot run.

The live source needs three things from the machine: tracefs (to turn names into tracepoint ids and formats), the
right to open CPU-wide perf events with raw samples (root, CAP_PERFMON, or kernel.perf_event_paranoid = -1), and
for user_events, a kernel built with CONFIG_USER_EVENTS. Each check here either returns what it found or raises
`LiveSetupError` whose message names the setting to change: the sysctl, the capability, the mount.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dyntel.errors import DyntelError

CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
DEFAULT_MOUNT = "/sys/kernel/tracing"
PARANOID_FILE = "/proc/sys/kernel/perf_event_paranoid"
MLOCK_FILE = "/proc/sys/kernel/perf_event_mlock_kb"

# Capability bit numbers (linux/capability.h)
CAP_IPC_LOCK = 14
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38

_CAP_NAMES = {CAP_IPC_LOCK: "CAP_IPC_LOCK", CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_PERFMON: "CAP_PERFMON"}

GRANT_PERFMON = ("run dyntel as root, or give it CAP_PERFMON (`setcap cap_perfmon+ep` on the binary; in docker "
                 "`--cap-add PERFMON`, or `--cap-add SYS_ADMIN` on kernels before 5.8; in Kubernetes "
                 "securityContext.capabilities.add: [\"PERFMON\"]), or lower the sysctl: "
                 "`sysctl -w kernel.perf_event_paranoid=-1`")


class LiveSetupError(DyntelError):
    """The machine is not set up for live tracing; the message says what to change."""


@dataclass(slots=True, frozen=True)
class Tracefs:
    """A mounted tracefs."""

    path: Path

    def event_dir(self, system: str, name: str) -> Path:
        return self.path / "events" / system / name

    def event_id(self, system: str, name: str) -> int:
        """The tracepoint's id (perf_event_attr.config), read from events/<system>/<name>/id."""
        text = _read_text(self.event_dir(system, name) / "id")
        try:
            return int(text)
        except ValueError:
            raise LiveSetupError(f"{self.event_dir(system, name)}/id holds {text!r}, not a number") from None

    def format_text(self, system: str, name: str) -> str:
        return _read_text(self.event_dir(system, name) / "format")

    def available_events(self) -> list[tuple[str, str]]:
        """Every tracepoint the kernel has now, as (system, name), from available_events."""
        return parse_available_events(_read_text(self.path / "available_events"))

    def system_events(self, system: str) -> list[str]:
        """The tracepoints of one system now (a directory listing: much cheaper than available_events)."""
        try:
            with os.scandir(self.path / "events" / system) as it:
                return [e.name for e in it if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        except PermissionError as e:
            raise LiveSetupError(_unreadable(self.path, e)) from None

    @property
    def user_events_data(self) -> Path:
        return self.path / "user_events_data"

    def has_user_events(self) -> bool:
        return self.user_events_data.exists()


def parse_available_events(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        system, colon, name = line.strip().partition(":")
        if colon and system and name:
            out.append((system, name))
    return out


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except PermissionError as e:
        raise LiveSetupError(_unreadable(path, e)) from None


def _unreadable(path: Path, e: OSError) -> str:
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    return (f"cannot read {path} as {who}: {e.strerror}. tracefs is readable by root only unless mounted otherwise: "
            f"run dyntel as root, or remount tracefs for a group dyntel is in "
            f"(`mount -o remount,gid=GROUP,mode=0750 {DEFAULT_MOUNT}`)")


# ---------------------------------------------------------------------------------------------------------------
# Discovery and mounting


def tracefs_mounts(mounts_text: str | None = None) -> list[str]:
    """Mount points of tracefs listed in /proc/mounts (octal escapes undone)."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return []
    out: list[str] = []
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            out.append(_unescape_mount(parts[1]))
    return out


def _unescape_mount(text: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as \040, \011, \012, \134
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 4 <= len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _candidates() -> Iterator[str]:
    seen: set[str] = set()
    for path in (*CANDIDATES, *tracefs_mounts()):
        if path not in seen:
            seen.add(path)
            yield path


def _is_tracefs(path: str) -> bool:
    """Whether `path` holds a mounted tracefs. PermissionError when it is there but unreadable."""
    os.stat(os.path.join(path, "events"))  # raises PermissionError for a tracefs we may not read
    return os.path.isdir(os.path.join(path, "events"))


def find_tracefs(mount: bool = True) -> Tracefs:
    """The mounted tracefs; mounts it at /sys/kernel/tracing when it is missing and `mount` allows.

    Raises LiveSetupError when there is none and it cannot be mounted, or when it is there but unreadable.
    """
    unreadable: tuple[str, OSError] | None = None
    for path in _candidates():
        try:
            if os.listdir(path) and _is_tracefs(path):
                return Tracefs(Path(path))
        except PermissionError as e:
            unreadable = unreadable or (path, e)
        except OSError:
            continue
    if unreadable is not None:
        raise LiveSetupError(_unreadable(Path(unreadable[0]), unreadable[1]))
    if not mount:
        raise LiveSetupError(_not_mounted("mounting was not allowed (mount=False)"))
    return mount_tracefs(DEFAULT_MOUNT)


def mount_tracefs(target: str = DEFAULT_MOUNT) -> Tracefs:
    """`mount -t tracefs nodev TARGET`, with the reason it failed in words when it does."""
    if not _kernel_has_tracefs():
        raise LiveSetupError("this kernel has no tracefs (no 'tracefs' in /proc/filesystems): it was built "
                             "without CONFIG_TRACING / CONFIG_FTRACE, and live tracing needs a kernel with them")
    if not os.path.isdir(target):
        raise LiveSetupError(_not_mounted(f"{target} does not exist (is sysfs mounted at /sys?)"))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
    if libc.mount(b"nodev", os.fsencode(target), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        if err in (errno.EPERM, errno.EACCES):
            if not has_capability(CAP_SYS_ADMIN):
                held = " (this process does not have it)"
            elif in_user_namespace():
                held = (" in the host's user namespace; this process has it only in its own user namespace "
                        "(a rootless or user-namespaced container), where tracefs cannot be mounted")
            else:
                held = ", which this process has: a security module or seccomp profile refused the mount"
            why = f"mounting it was refused ({errno.errorcode.get(err, err)}): that needs CAP_SYS_ADMIN{held}"
        else:
            why = f"mounting it failed: {os.strerror(err)}"
        raise LiveSetupError(_not_mounted(why))
    return Tracefs(Path(target))


def in_user_namespace(uid_map: str | None = None) -> bool:
    """Whether this process is in a user namespace other than the host's (its uid map is not the identity)."""
    if uid_map is None:
        try:
            uid_map = Path("/proc/self/uid_map").read_text()
        except OSError:
            return False
    return uid_map.split() != ["0", "0", "4294967295"]


def _kernel_has_tracefs() -> bool:
    try:
        return any(line.split()[-1] == "tracefs" for line in Path("/proc/filesystems").read_text().splitlines()
                   if line.split())
    except OSError:
        return True  # cannot tell; let the mount say


def _not_mounted(why: str) -> str:
    return (f"tracefs is not mounted (looked at {', '.join(CANDIDATES)} and /proc/mounts), and {why}. "
            f"On a host, as root: `mount -t tracefs nodev {DEFAULT_MOUNT}`. In a container, mount the host's tracefs "
            f"into it (docker: `-v {DEFAULT_MOUNT}:{DEFAULT_MOUNT}`; Kubernetes: a hostPath volume of "
            f"{DEFAULT_MOUNT}), or run the container with CAP_SYS_ADMIN so that dyntel can mount it")


# ---------------------------------------------------------------------------------------------------------------
# Permissions


def perf_event_paranoid() -> int | None:
    """kernel.perf_event_paranoid, or None when the kernel has no perf events (no such file)."""
    try:
        return int(Path(PARANOID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def effective_capabilities(status_text: str | None = None) -> int:
    """The CapEff mask of this process (from /proc/self/status)."""
    if status_text is None:
        try:
            status_text = Path("/proc/self/status").read_text()
        except OSError:
            return 0
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_capability(cap: int, mask: int | None = None) -> bool:
    if mask is None:
        mask = effective_capabilities()
    return bool(mask >> cap & 1)


def can_trace(paranoid: int | None = None, caps: int | None = None) -> bool:
    """Whether CPU-wide tracepoint events with raw samples are allowed to this process (as the kernel decides)."""
    if paranoid is None:
        paranoid = perf_event_paranoid()
    if caps is None:
        caps = effective_capabilities()
    if has_capability(CAP_PERFMON, caps) or has_capability(CAP_SYS_ADMIN, caps):
        return True
    return paranoid is not None and paranoid <= -1


def explain_perf_error(err: int, what: str, paranoid: int | None = None, caps: int | None = None) -> str:
    """A message for a refused perf_event_open(2): what was refused, why, and what to change."""
    if paranoid is None:
        paranoid = perf_event_paranoid()
    if caps is None:
        caps = effective_capabilities()
    head = f"perf_event_open for {what} failed: {os.strerror(err)}"
    if err in (errno.EACCES, errno.EPERM):
        held = [name for cap, name in _CAP_NAMES.items() if cap != CAP_IPC_LOCK and has_capability(cap, caps)]
        if held:
            return (f"{head}, although this process has {' and '.join(held)}. Something else refuses it: in a "
                    f"container, the seccomp profile (docker's default allows perf_event_open only with "
                    f"CAP_PERFMON or CAP_SYS_ADMIN in the container's capability set; otherwise run with a profile "
                    f"that allows it), or a security module (SELinux perf_event class, lockdown=confidentiality)")
        level = "unknown" if paranoid is None else str(paranoid)
        if paranoid is not None and paranoid >= 3:
            why = (f"kernel.perf_event_paranoid is {level}, which (a Debian/Android setting) refuses every "
                   f"perf_event_open without CAP_PERFMON, whatever the event")
        elif paranoid is not None and paranoid >= 1:
            why = (f"kernel.perf_event_paranoid is {level}: events on every CPU (which dyntel opens) need "
                   f"CAP_PERFMON at 1 or above")
        elif paranoid is not None and paranoid >= 0:
            why = (f"kernel.perf_event_paranoid is {level}: raw tracepoint samples (which dyntel reads) need "
                   f"CAP_PERFMON unless it is -1")
        else:
            why = f"kernel.perf_event_paranoid is {level}, yet the kernel refused"
        return f"{head}. This process (uid {os.geteuid()}) has neither CAP_PERFMON nor CAP_SYS_ADMIN, and {why}. " \
               f"To fix: {GRANT_PERFMON}"
    if err == errno.ENOSYS:
        return f"{head}: this kernel has no perf events (CONFIG_PERF_EVENTS is off), which live tracing needs"
    if err == errno.ENOENT:
        return f"{head}: the kernel does not know this tracepoint id (it went away, or this kernel lacks it)"
    if err == errno.EMFILE:
        return (f"{head}: too many open files; dyntel needs one per tracepoint per CPU. Raise the limit "
                f"(`ulimit -n`, LimitNOFILE= in a systemd unit, or docker `--ulimit nofile=...`)")
    if err == errno.EINVAL:
        return (f"{head}: the kernel rejected the event's settings (a kernel older than 4.1 has no use_clockid; "
                f"a tracepoint that perf cannot sample, such as some ftrace-internal events, also says this)")
    return head


def explain_mmap_error(err: int, nbytes: int) -> str:
    head = f"mapping a {nbytes // 1024} KiB perf ring buffer failed: {os.strerror(err)}"
    if err in (errno.EPERM, errno.ENOMEM, errno.EACCES):
        try:
            mlock = Path(MLOCK_FILE).read_text().strip()
        except OSError:
            mlock = "?"
        return (f"{head}. Without CAP_IPC_LOCK a user may lock kernel.perf_event_mlock_kb ({mlock} KiB) per CPU of "
                f"perf rings: use a smaller ring (fewer pages), raise the sysctl "
                f"(`sysctl -w kernel.perf_event_mlock_kb=2048`), set kernel.perf_event_paranoid=-1, or give "
                f"dyntel CAP_IPC_LOCK")
    return head


def require_user_events(tracefs: Tracefs) -> None:
    """Raise LiveSetupError unless this kernel has user_events (CONFIG_USER_EVENTS)."""
    if tracefs.has_user_events():
        return
    raise LiveSetupError(
        f"this kernel ({platform.release()}) has no user_events: {tracefs.user_events_data} is missing. It needs a "
        f"kernel built with CONFIG_USER_EVENTS=y (Linux 6.4 or later; Debian's and many distributions' kernels "
        f"leave it off). Kernel tracepoints still work without it")


def online_cpus(text: str | None = None) -> list[int]:
    """CPUs listed in /sys/devices/system/cpu/online ("0-3,6")."""
    if text is None:
        try:
            text = Path("/sys/devices/system/cpu/online").read_text()
        except OSError:
            return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus
