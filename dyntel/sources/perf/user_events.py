"""Linux user_events registration: the producer's side of the ABI, and dyntel's pre-registration.

A process registers a tracepoint with `DIAG_IOCSREG` on tracefs' `user_events_data`, naming a 32-bit word in its own
memory and a bit in it; from then on the kernel sets that bit while anything (perf, ftrace) has the tracepoint
enabled and clears it when the last one lets go, so "is anybody listening?" costs a memory load. Events are written
with `writev` on the same file: the registration's `write_index` (an int32) first, then the payload. Registrations
are references: a user_event disappears once no file and no listener refers to it any more (unless registered
with `USER_EVENT_REG_PERSIST`), and `DIAG_IOCSUNREG` only stops the bit updates, the reference lasting until the
file is closed.

Pre-registration (as LinuxTracepoints' tracepoint-control does): dyntel registers the names its rules need
before any producer exists, so the tracepoint is in tracefs for perf to enable; a producer that later registers the
same name with the same fields joins that event and finds its bit already set. `Registration` holds those names for
the life of dyntel and lets them go on exit.

The ABI follows include/uapi/linux/user_events.h and Documentation/trace/user_events.rst (Linux 6.4 and later);
EventHeader's command string is eventheader.h's EVENTHEADER_COMMAND_TYPES.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from dyntel.decoders.eventheader_name import parse_tracepoint_name
from dyntel.errors import DyntelError

__all__ = [
    "EVENTHEADER_COMMAND_TYPES",
    "USER_EVENT_REG_MULTI_FORMAT",
    "USER_EVENT_REG_PERSIST",
    "Registration",
    "Tracepoint",
    "UserEventsData",
    "UserEventsError",
    "UserEventsUnavailable",
    "delete_event",
    "eventheader_command",
    "find_user_events_data",
]

# The fields every EventHeader tracepoint is registered with: the 8-byte eventheader. A producer and a
# pre-registering listener must send exactly this, or the kernel treats the second as a conflicting format.
EVENTHEADER_COMMAND_TYPES = "u8 eventheader_flags; u8 version; u16 id; u16 tag; u8 opcode; u8 level"

USER_EVENT_REG_PERSIST = 1 << 0  # outlives its last reference; needs CAP_PERFMON
USER_EVENT_REG_MULTI_FORMAT = 1 << 1  # tracepoint becomes user_events_multi:NAME.<id>, one per distinct format

MAX_COMMAND = 512  # MAX_EVENT_DESC in kernel/trace/trace_events_user.c, NUL included

# _IOC(dir, type, nr, size) from asm-generic/ioctl.h. The kernel header declares the argument types as pointers
# (`struct user_reg *`, `char *`), so the size field is a pointer's size, not the struct's.
_IOC_WRITE = 1
_IOC_READ = 2
_DIAG_IOC_MAGIC = ord("*")
_POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (_DIAG_IOC_MAGIC << 8) | nr


DIAG_IOCSREG = _ioc(_IOC_READ | _IOC_WRITE, 0, _POINTER_SIZE)
DIAG_IOCSDEL = _ioc(_IOC_WRITE, 1, _POINTER_SIZE)
DIAG_IOCSUNREG = _ioc(_IOC_WRITE, 2, _POINTER_SIZE)


class _UserReg(ctypes.Structure):
    _pack_ = 1
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("enable_bit", ctypes.c_uint8),
        ("enable_size", ctypes.c_uint8),
        ("flags", ctypes.c_uint16),
        ("enable_addr", ctypes.c_uint64),
        ("name_args", ctypes.c_uint64),
        ("write_index", ctypes.c_uint32),
    )


class _UserUnreg(ctypes.Structure):
    _pack_ = 1
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("disable_bit", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8),
        ("reserved2", ctypes.c_uint16),
        ("disable_addr", ctypes.c_uint64),
    )


assert ctypes.sizeof(_UserReg) == 28 and ctypes.sizeof(_UserUnreg) == 16

# Enable words the kernel may still write to, by address. A word leaves only after a successful DIAG_IOCSUNREG:
# freeing one while registered would let the kernel flip a bit in whatever Python puts there next.
_LIVE_WORDS: dict[int, ctypes.c_uint32] = {}


class UserEventsError(DyntelError, OSError):
    """A user_events operation the kernel refused; `errno` is the kernel's reason."""

    def __init__(self, err: int, message: str) -> None:
        OSError.__init__(self, err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserEventsUnavailable(UserEventsError):
    """No user_events here: the kernel lacks CONFIG_USER_EVENTS, tracefs is not mounted, or it is not ours to use."""


def _tracefs_mounts() -> list[Path]:
    """Where tracefs is mounted (and debugfs' tracing/, which older setups use), tracefs first."""
    tracefs: list[Path] = []
    debugfs: list[Path] = []
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                # /proc/mounts escapes spaces in paths as \040.
                where = Path(parts[1].replace("\\040", " "))
                if parts[2] == "tracefs":
                    tracefs.append(where)
                elif parts[2] == "debugfs":
                    debugfs.append(where / "tracing")
    except OSError:
        pass
    return tracefs + debugfs


def find_user_events_data() -> Path:
    """The path of user_events_data, or UserEventsUnavailable saying what to change."""
    default = Path("/sys/kernel/tracing")
    candidates = [default, *(p for p in _tracefs_mounts() if p != default)]
    for tracing in candidates:
        if (tracing / "user_events_data").exists():
            return tracing / "user_events_data"
    mounted = [p for p in candidates if (p / "events").is_dir()]
    if mounted:
        raise UserEventsUnavailable(
            errno.ENOENT,
            f"{mounted[0]} has no user_events_data: this kernel was built without CONFIG_USER_EVENTS "
            f"(Debian's kernels are); use a kernel that has it, such as the VM's (docs/vm.md)",
        )
    raise UserEventsUnavailable(
        errno.ENOENT,
        "tracefs is not mounted (no user_events_data found): as root, mount -t tracefs nodev /sys/kernel/tracing",
    )


def _open_data(path: Path | None) -> tuple[int, Path]:
    path = find_user_events_data() if path is None else path
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC), path
    except FileNotFoundError:
        raise UserEventsUnavailable(errno.ENOENT, f"{path} does not exist") from None
    except PermissionError as e:
        raise UserEventsUnavailable(
            e.errno or errno.EACCES,
            f"cannot open {path} for writing: it is root's by default; run as root, or let this user write it "
            f"(chgrp/chmod {path}, and search access to its directory)",
        ) from None


def eventheader_command(name: str) -> str:
    """The DIAG_IOCSREG command for an EventHeader tracepoint name such as `MyProvider_L5K1`."""
    try:
        parse_tracepoint_name(name)
    except ValueError as e:
        raise ValueError(f"{name!r} is not an EventHeader tracepoint name: {e}") from None
    if " " in name or ":" in name:
        raise ValueError(f"{name!r} is not an EventHeader tracepoint name: it contains ' ' or ':'")
    return f"{name} {EVENTHEADER_COMMAND_TYPES}"


def _register_error(err: int, command: str, flags: int) -> UserEventsError:
    name = command.split(" ", 1)[0]
    reasons = {
        errno.EADDRINUSE: f"user_event {name} already exists with other fields than {command!r}; a name has one "
                          f"format (unless registered with USER_EVENT_REG_MULTI_FORMAT)",
        errno.EINVAL: f"the kernel rejected the command {command!r} (flags 0x{flags:x}): bad name, field list "
                      f"or flags (text flags after ':' are not supported)",
        errno.EPERM: f"registering {name} with flags 0x{flags:x} needs CAP_PERFMON (USER_EVENT_REG_PERSIST)",
        errno.E2BIG: f"command for {name} is too long",
    }
    return UserEventsError(err, reasons.get(err, f"DIAG_IOCSREG {command!r}: {os.strerror(err)}"))


class Tracepoint:
    """One registration: the enable word the kernel flips, and the write index for events.

    `is_enabled` reads the word, with no system call; `write` sends one event when someone listens.
    """

    __slots__ = ("_data", "_index", "_word", "command", "name", "write_index")

    def __init__(self, data: UserEventsData, command: str, write_index: int, word: ctypes.c_uint32) -> None:
        self._data = data
        self.command = command
        self.name = command.split(" ", 1)[0]
        self.write_index = write_index
        self._index = struct.pack("=i", write_index)
        self._word = word

    @property
    def registered(self) -> bool:
        return ctypes.addressof(self._word) in _LIVE_WORDS

    @property
    def is_enabled(self) -> bool:
        """Whether any listener has this tracepoint enabled (bit 0 of the enable word)."""
        return bool(self._word.value & 1)

    @property
    def enable_word(self) -> int:
        return int(self._word.value)

    @property
    def word(self) -> ctypes.c_uint32:
        """The enable word itself, for a producer that checks bit 0 through a memoryview of its own."""
        return self._word

    def write(self, *payload: bytes | bytearray | memoryview) -> bool:
        """Write one event made of `payload` joined; False (and no system call) when nothing listens.

        An event too short for the registered fields is refused by the kernel (EINVAL): OSError.
        """
        if not self._word.value & 1 or self._data.closed:
            return False
        try:
            os.writev(self._data.fd, (self._index, *payload))
        except OSError as e:
            if e.errno == errno.EBADF:
                return False  # disabled between the check and the write
            raise
        return True

    def unregister(self) -> None:
        """Stop the kernel from updating the enable word (the event itself lives while the file is open)."""
        self._data.unregister(self)

    def __repr__(self) -> str:
        return f"Tracepoint({self.name!r}, write_index={self.write_index}, enabled={self.is_enabled})"


class UserEventsData:
    """An open user_events_data file and the tracepoints registered through it.

    Closing it unregisters them all and drops the file's references, so that events nobody else holds go away.
    A producer keeps one for its life; several threads may write through it.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.fd, self.path = _open_data(path)
        self.closed = False
        self._tracepoints: dict[str, Tracepoint] = {}
        # Registering, unregistering and closing from several threads; writes need no lock.
        self._lock = threading.Lock()

    def register(self, command: str, flags: int = 0) -> Tracepoint:
        """Register `command` ("name field1; field2..."); the same command twice gives the same Tracepoint."""
        with self._lock:
            return self._register(command, flags)

    def _register(self, command: str, flags: int) -> Tracepoint:
        if self.closed:
            raise ValueError("user_events_data is closed")
        existing = self._tracepoints.get(command)
        if existing is not None and existing.registered:
            return existing
        raw = command.encode("utf-8")
        if len(raw) >= MAX_COMMAND or b"\0" in raw:
            raise UserEventsError(errno.E2BIG if b"\0" not in raw else errno.EINVAL,
                                  f"bad user_events command {command!r}: NUL, or {MAX_COMMAND} bytes or longer")
        text = ctypes.create_string_buffer(raw)
        word = ctypes.c_uint32(0)
        reg = _UserReg(size=ctypes.sizeof(_UserReg), enable_bit=0, enable_size=4, flags=flags,
                       enable_addr=ctypes.addressof(word), name_args=ctypes.addressof(text))
        # Registered before the ioctl: the kernel may write the word the moment the call succeeds.
        _LIVE_WORDS[ctypes.addressof(word)] = word
        try:
            fcntl.ioctl(self.fd, DIAG_IOCSREG, reg)
        except OSError as e:
            del _LIVE_WORDS[ctypes.addressof(word)]
            raise _register_error(e.errno or errno.EIO, command, flags) from None
        tp = Tracepoint(self, command, int(reg.write_index), word)
        self._tracepoints[command] = tp
        return tp

    def register_eventheader(self, name: str, flags: int = 0) -> Tracepoint:
        """Register an EventHeader tracepoint (`Provider_L<level>K<keyword>[Options]`)."""
        return self.register(eventheader_command(name), flags)

    def unregister(self, tp: Tracepoint) -> None:
        with self._lock:
            self._unregister(tp)

    def _unregister(self, tp: Tracepoint) -> None:
        address = ctypes.addressof(tp._word)
        if address not in _LIVE_WORDS:
            return
        unreg = _UserUnreg(size=ctypes.sizeof(_UserUnreg), disable_bit=0, disable_addr=address)
        try:
            fcntl.ioctl(self.fd, DIAG_IOCSUNREG, unreg)
        except OSError as e:
            if e.errno != errno.ENOENT:  # ENOENT: the kernel already forgot it (after exec, say)
                raise UserEventsError(e.errno or errno.EIO, f"DIAG_IOCSUNREG {tp.name}: {e.strerror}") from None
        del _LIVE_WORDS[address]

    @property
    def tracepoints(self) -> list[Tracepoint]:
        return [tp for tp in self._tracepoints.values() if tp.registered]

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                for tp in self._tracepoints.values():
                    self._unregister(tp)
            finally:
                self.closed = True
                os.close(self.fd)

    def __enter__(self) -> UserEventsData:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def delete_event(name: str, path: Path | None = None, busy_wait: float = 0.0) -> None:
    """Delete user_event `name` (DIAG_IOCSDEL). Refused with EBUSY while any file or listener still refers to it,
    which is why this opens a file of its own: one that registered the name would itself keep it alive.

    An unregistered enable word lets go of its event only after an RCU grace period and a work item (Linux 6.12),
    so a delete right after the last unregister can still find it busy: `busy_wait` seconds retry EBUSY.
    """
    fd, path = _open_data(path)
    deadline = time.monotonic() + busy_wait
    try:
        while True:
            try:
                fcntl.ioctl(fd, DIAG_IOCSDEL, name.encode("utf-8") + b"\0")
                return
            except OSError as e:
                if e.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                reasons = {
                    errno.EBUSY: f"user_event {name} is still in use (registered by a process, or enabled by a "
                                 f"listener)",
                    errno.ENOENT: f"no user_event {name}",
                    errno.EPERM: f"deleting the persistent user_event {name} needs CAP_PERFMON",
                }
                message = reasons.get(e.errno or 0, f"DIAG_IOCSDEL {name}: {e.strerror}")
                raise UserEventsError(e.errno or errno.EIO, message) from None
    finally:
        os.close(fd)


class Registration:
    """User_events names that dyntel registers for itself, so it can enable them before their producers start.

    Each name gets a user_events_data file of its own, so that `remove` really lets go of one name (a file holds
    its references until it is closed). Held for the life of dyntel: use as a context manager, or call `close`.
    """

    def __init__(self, names: Iterable[str] = (), path: Path | None = None) -> None:
        self.path = find_user_events_data() if path is None else path
        self._held: dict[str, tuple[UserEventsData, Tracepoint]] = {}
        try:
            for name in names:
                self.add(name)
        except BaseException:
            self.close()
            raise

    def add(self, name: str, command: str | None = None) -> Tracepoint:
        """Hold `name`: an EventHeader tracepoint name, or any name with its full `command` given."""
        held = self._held.get(name)
        if held is not None:
            return held[1]
        if command is None:
            command = eventheader_command(name)
        elif command.split(" ", 1)[0] != name:
            raise ValueError(f"command {command!r} does not register {name!r}")
        data = UserEventsData(self.path)
        try:
            tp = data.register(command)
        except BaseException:
            data.close()
            raise
        self._held[name] = (data, tp)
        return tp

    def remove(self, name: str) -> None:
        held = self._held.pop(name, None)
        if held is not None:
            held[0].close()

    def is_enabled(self, name: str) -> bool:
        """Whether a listener has `name` enabled, as the kernel tells every registrant, this one included."""
        return self._held[name][1].is_enabled

    @property
    def names(self) -> list[str]:
        return list(self._held)

    def __contains__(self, name: object) -> bool:
        return name in self._held

    def close(self) -> None:
        while self._held:
            self.remove(next(iter(self._held)))

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
