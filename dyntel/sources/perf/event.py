"""perf_event_open(2) through ctypes: the attr struct, the syscall, the ioctls, and a ring buffer's mapping.

Only what the live source needs: tracepoint and dummy events opened per CPU, their ids, filters and output
redirection, per-event lost counts (PERF_FORMAT_LOST, Linux 6.0+), and the mmap'd ring with its head and tail.

Ring memory ordering: the kernel writes records, then (after a write barrier) data_head; the reader must load
data_head with acquire semantics before reading the records, and must finish reading them before storing
data_tail (release), since the kernel reuses the space up to data_tail. On x86 (TSO) plain loads and stores already
have those semantics, so nothing more is done there; on other architectures a fence from libatomic
(atomic_thread_fence) follows the head load and precedes the tail store.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import platform
import struct
import sys
from collections.abc import Callable
from typing import Final

from dyntel.sources.perf import abi

# perf_event_open syscall numbers by machine (asm/unistd.h)
_SYSCALL_NR: Final = {
    "x86_64": 298, "amd64": 298, "i386": 336, "i686": 336, "aarch64": 241, "arm64": 241, "riscv64": 241,
    "loongarch64": 241, "armv7l": 364, "armv6l": 364, "ppc64le": 319, "ppc64": 319, "s390x": 331,
}

TYPE_SOFTWARE: Final = abi.TYPE_SOFTWARE
TYPE_TRACEPOINT: Final = abi.TYPE_TRACEPOINT
COUNT_SW_DUMMY: Final = 9

FLAG_FD_CLOEXEC: Final = 1 << 3  # perf_event_open flags argument

# perf_event_attr 1-bit flags, by bit number in the kernel's declaration order
_BIT_DISABLED = 0
_BIT_WATERMARK = 14
_BIT_SAMPLE_ID_ALL = 18
_BIT_USE_CLOCKID = 25

# read_format PERF_FORMAT_LOST: per-event count of samples that found the ring full
FORMAT_ID: Final = abi.FORMAT_ID
FORMAT_LOST: Final = abi.FORMAT_LOST


def _flag(bit: int) -> int:
    # A big-endian C compiler numbers bit-fields from the top of the storage unit.
    return 1 << bit if sys.byteorder == "little" else 1 << (63 - bit)


ATTR_DISABLED: Final = _flag(_BIT_DISABLED)
ATTR_WATERMARK: Final = _flag(_BIT_WATERMARK)
ATTR_SAMPLE_ID_ALL: Final = _flag(_BIT_SAMPLE_ID_ALL)
ATTR_USE_CLOCKID: Final = _flag(_BIT_USE_CLOCKID)


# ioctl numbers: _IO('$', n), _IOW('$', 6, char *), _IOR('$', 7, u64 *)
def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord("$") << 8 | nr


IOC_ENABLE: Final = _ioc(0, 0, 0)
IOC_DISABLE: Final = _ioc(0, 1, 0)
IOC_SET_OUTPUT: Final = _ioc(0, 5, 0)
IOC_SET_FILTER: Final = _ioc(1, 6, ctypes.sizeof(ctypes.c_void_p))
IOC_ID: Final = _ioc(2, 7, ctypes.sizeof(ctypes.c_void_p))

# perf_event_mmap_page: where the ring's bookkeeping lives in the first page
MMAP_DATA_HEAD: Final = 1024
MMAP_DATA_TAIL: Final = 1032
MMAP_DATA_OFFSET: Final = 1040
MMAP_DATA_SIZE: Final = 1048

_U64 = struct.Struct("=Q")
_U64X2 = struct.Struct("=QQ")
_LOST_READ = struct.Struct("=QQQ")  # read_format ID|LOST: value, id, lost


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr as of PERF_ATTR_SIZE_VER8 (136 bytes). Older kernels accept it as long as the fields
    they do not know are zero."""

    _fields_ = (
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup", ctypes.c_uint32),  # wakeup_events, or wakeup_watermark (bytes) with the watermark flag
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("reserved_2", ctypes.c_uint16),
        ("aux_sample_size", ctypes.c_uint32),
        ("reserved_3", ctypes.c_uint32),
        ("sig_data", ctypes.c_uint64),
        ("config3", ctypes.c_uint64),
    )


ATTR_SIZE: Final = ctypes.sizeof(PerfEventAttr)


def make_attr(type_: int, config: int, sample_type: int = 0, *, flags: int = 0, clockid: int | None = None,
              read_format: int = 0, wakeup_watermark: int = 0, wakeup_events: int = 0,
              sample_period: int = 1) -> PerfEventAttr:
    """`wakeup_watermark`: a ring owner's poll wakes once this many bytes are unread. `wakeup_events`: a sampling
    event (watermark flag clear) wakes its ring's poll every this many of its own samples, whatever the ring's
    byte watermark (0: only the watermark wakes it)."""
    attr = PerfEventAttr()
    attr.type = type_
    attr.size = ATTR_SIZE
    attr.config = config
    attr.sample_period = sample_period
    attr.sample_type = sample_type
    attr.read_format = read_format
    if clockid is not None:
        flags |= ATTR_USE_CLOCKID
        attr.clockid = clockid
    if wakeup_watermark:
        flags |= ATTR_WATERMARK
        attr.wakeup = wakeup_watermark
    elif wakeup_events:
        attr.wakeup = wakeup_events
    attr.flags = flags
    return attr


def _syscall() -> Callable[..., int]:
    nr = _SYSCALL_NR.get(platform.machine().lower())
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    fn.argtypes = (ctypes.c_long, ctypes.POINTER(PerfEventAttr), ctypes.c_int, ctypes.c_int, ctypes.c_int,
                   ctypes.c_ulong)

    def perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        if nr is None:
            raise OSError(38, f"perf_event_open: no syscall number known for machine {platform.machine()!r}")
        fd = int(fn(nr, ctypes.byref(attr), pid, cpu, group_fd, flags))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd

    return perf_event_open


_open = _syscall()


def perf_event_open(attr: PerfEventAttr, pid: int = -1, cpu: int = -1, group_fd: int = -1,
                    flags: int = FLAG_FD_CLOEXEC) -> int:
    """The new event's file descriptor; OSError with the kernel's errno when refused."""
    return _open(attr, pid, cpu, group_fd, flags)


def enable(fd: int) -> None:
    fcntl.ioctl(fd, IOC_ENABLE, 0)


def disable(fd: int) -> None:
    fcntl.ioctl(fd, IOC_DISABLE, 0)


def set_output(fd: int, target_fd: int) -> None:
    """Send `fd`'s records to `target_fd`'s ring (same CPU, same clock)."""
    fcntl.ioctl(fd, IOC_SET_OUTPUT, target_fd)


def set_filter(fd: int, text: str) -> None:
    """A tracefs filter expression (`common_pid == 42`), applied by the kernel before the record is written."""
    # fcntl copies a bytes argument and passes the copy's address: the char * the ioctl wants.
    fcntl.ioctl(fd, IOC_SET_FILTER, text.encode() + b"\0")


def event_id(fd: int) -> int:
    """The id the kernel puts in this event's samples (PERF_SAMPLE_ID / IDENTIFIER)."""
    buf = bytearray(8)
    fcntl.ioctl(fd, IOC_ID, buf, True)
    return int(_U64.unpack(buf)[0])


def read_lost(fd: int) -> int:
    """Samples of this event that found its ring full (read_format must be ID|LOST)."""
    data = os.read(fd, _LOST_READ.size)
    if len(data) < _LOST_READ.size:
        return 0
    return int(_LOST_READ.unpack(data)[2])


def read_count(fd: int) -> int:
    """How many times the event has fired since it was opened (the value of its read_format, which comes first)."""
    data = os.read(fd, _LOST_READ.size)
    return int(_U64.unpack_from(data)[0]) if len(data) >= 8 else 0


def _fence() -> Callable[[], None] | None:
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return None
    try:
        lib = ctypes.CDLL("libatomic.so.1")
        fn = lib.atomic_thread_fence
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int,)
    fn.restype = None
    seq_cst = 5

    def fence() -> None:
        fn(seq_cst)

    return fence


FENCE: Final = _fence()


class Ring:
    """One mmap'd perf ring buffer: a control page, then `data_pages` pages of records (a power of two)."""

    # What the live reader keeps per ring (instance values once set; defaults for rings made without __init__).
    found = 0  # samples found since the reader last counted them
    attached = 0  # tracepoints writing into this ring (one CPU's events each)
    detached_at = 0  # CLOCK_MONOTONIC ns when the last one left (0: never)

    def __init__(self, fd: int, data_pages: int) -> None:
        if data_pages < 1 or data_pages & (data_pages - 1):
            raise ValueError(f"ring data pages must be a power of two, not {data_pages}")
        page = mmap.PAGESIZE
        self.fd = fd
        self.length = (1 + data_pages) * page
        self.mm = mmap.mmap(fd, self.length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        offset, size = _U64X2.unpack_from(self.mm, MMAP_DATA_OFFSET)
        # Kernels before 4.1 leave data_offset/data_size zero; the data then starts at the second page.
        self.base: int = offset or page
        self.size: int = size or data_pages * page
        self.tail: int = _U64.unpack_from(self.mm, MMAP_DATA_TAIL)[0]  # handed back to the kernel up to here
        self.read = self.tail  # records found up to here (the reader may hold some between the two)
        self.last_found = -1  # time of the last sample found, -1 before any

    def head(self) -> int:
        head: int = _U64.unpack_from(self.mm, MMAP_DATA_HEAD)[0]
        if FENCE is not None:
            FENCE()
        return head

    def release(self, tail: int) -> None:
        """Hand the bytes before `tail` back to the kernel."""
        if FENCE is not None:
            FENCE()
        _U64.pack_into(self.mm, MMAP_DATA_TAIL, tail)
        self.tail = tail

    def close(self) -> None:
        self.mm.close()
