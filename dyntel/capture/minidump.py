"""A minidump (MDMP) of a live Linux x86_64 process, in the layout Breakpad's Linux writer uses.

The file is written front to back with no seeking, so `out` may be a pipe: the whole layout (every stream's offset
and size, every memory range's place) is planned from the frozen registers and plan_regions before the first byte
goes out, which is also what lets max_size be a hard limit rather than a check after the fact.

    header | directory | thread list | contexts | module list, names, CodeView records | system info, CSD string
    | misc info | thread names | Linux /proc streams | memory list | memory64 list | memory bytes

The memory bytes are one block: the thread stacks first, then the other regions. The Memory64 list describes the
whole block (a full dump's way, and what readers that take a single list, such as the `minidump` package, need);
the memory list describes the stacks again, pointing at the same bytes, for readers that only know 32-bit
descriptors (Breakpad's stackwalker). The stacks come first so their offsets stay below 4 GiB.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from dyntel.capture import minidump_format as fmt
from dyntel.capture.errors import CaptureError
from dyntel.capture.procfs import MapEntry, build_id, read_proc
from dyntel.capture.ptrace import Frozen, ThreadState
from dyntel.capture.regions import DumpResult, Region, plan_regions
from dyntel.security import DEFAULT_PATTERNS, redact_nul_separated

__all__ = ["Module", "ProcessInfo", "modules_of", "process_info", "write_minidump"]

PAGE = os.sysconf("SC_PAGE_SIZE")
RED_ZONE = 128  # x86-64 SysV: a leaf function may use 128 bytes below rsp
_COPY_BUFFER = 4 << 20  # large enough that the per-read cost vanishes, small enough to stay in a few huge pages
_HOLE = 16 * PAGE  # zero runs shorter than this are written, not skipped
_ZERO_BYTES = bytes(_HOLE)
_RVA32_LIMIT = 1 << 32


@dataclass(frozen=True, slots=True)
class Module:
    """One ELF file the process maps: where its first byte is and how far its mappings reach."""

    path: str
    base: int
    size: int
    build_id: bytes | None


@dataclass(slots=True)
class ProcessInfo:
    """Everything a minidump holds that can be read without stopping the process: /proc files, the system, the
    mapped ELF files and their build ids. Gather it before `frozen()` so the target's pause is only the copy."""

    pid: int
    modules: list[Module]
    linux_streams: list[tuple[int, bytes]]
    csd_version: str
    os_version: tuple[int, int, int]
    cpu_count: int
    cpu_level: int
    cpu_revision: int
    cpu_vendor: bytes
    cpu_version_information: int
    process_times: tuple[int, int, int] | None  # create (Unix seconds), user, kernel (seconds)
    timestamp: int = field(default_factory=lambda: int(time.time()))


def _is_elf(pid: int, path: str) -> bool | None:
    """Whether the file starts with the ELF magic; None when it cannot be opened from here or from the target's
    root (a file deleted since it was mapped, a mount namespace we do not share)."""
    for candidate in (path, f"/proc/{pid}/root{path}"):
        try:
            with open(candidate, "rb") as f:
                return f.read(4) == b"\x7fELF"
        except OSError:
            continue
    return None


def modules_of(pid: int, maps: Sequence[MapEntry]) -> list[Module]:
    """The ELF files mapped, in address order: the mappings of one file (path and inode) form one module whose base
    is its mapping at file offset 0 and whose size reaches the end of its last mapping."""
    groups: dict[tuple[str, int], list[MapEntry]] = {}
    for entry in maps:
        if entry.inode == 0 or not entry.path.startswith("/"):
            continue
        groups.setdefault((entry.path, entry.inode), []).append(entry)
    modules = []
    for (path, _inode), entries in groups.items():
        elf = _is_elf(pid, path)
        if elf is False or (elf is None and not any(e.executable for e in entries)):
            continue
        at_zero = [e.start for e in entries if e.offset == 0]
        base = min(at_zero) if at_zero else min(e.start for e in entries)
        end = max(e.end for e in entries)
        modules.append(Module(path, base, end - base, build_id(path) if elf else None))
    modules.sort(key=lambda m: m.base)
    return modules


def _cpu_fields(cpuinfo: bytes) -> tuple[int, int, int, bytes, int]:
    """(processor count, family, revision, vendor id, CPUID.1:EAX) from /proc/cpuinfo, as Breakpad reads them."""
    count = 0
    first: dict[str, str] = {}
    for line in cpuinfo.decode("ascii", "replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            count += 1
        elif count == 1 and key not in first:
            first[key] = value.strip()

    def number(name: str) -> int:
        try:
            return int(first.get(name, "0"))
        except ValueError:
            return 0

    family, model, stepping = number("cpu family"), number("model"), number("stepping")
    vendor = first.get("vendor_id", "").encode("ascii", "replace")[:12].ljust(12, b"\0")
    return (count or os.cpu_count() or 1, family, (model & 0xFF) << 8 | (stepping & 0xFF), vendor,
            fmt.cpu_version_information(family, model, stepping))


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _process_times(pid: int) -> tuple[int, int, int] | None:
    stat = read_proc(pid, "stat")
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        utime, stime, start = int(fields[11]), int(fields[12]), int(fields[19])
        boot = next(int(line.split()[1]) for line in _read("/proc/stat").splitlines()
                    if line.startswith(b"btime"))
    except (IndexError, ValueError, StopIteration):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return boot + start // ticks, utime // ticks, stime // ticks


def _release_file(pid: int) -> bytes:
    """The target's view of its distribution: its root's lsb-release (Breakpad's choice), else os-release."""
    for root in (f"/proc/{pid}/root", ""):
        for name in ("/etc/lsb-release", "/etc/os-release"):
            try:
                with open(root + name, "rb") as f:
                    return f.read()
            except OSError:
                continue
    return b""


def _os_version(release: str) -> tuple[int, int, int]:
    parts = []
    for piece in release.split(".")[:3]:
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        parts.append(int(digits) if digits else 0)
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def process_info(pid: int, maps: Sequence[MapEntry], maps_raw: bytes | None = None,
                 redact_patterns: Sequence[str] = DEFAULT_PATTERNS) -> ProcessInfo:
    """What the dump needs from /proc and the file system; read it before freezing. `maps_raw`: the bytes `maps`
    was parsed from, when the caller has them (read again otherwise). The cmdline and environ streams have their
    secrets (`DB_PASSWORD=...`, `--token x`) replaced by REDACTED unless `redact_patterns` is empty."""
    cmdline, environ = read_proc(pid, "cmdline"), read_proc(pid, "environ")
    if redact_patterns:
        cmdline = redact_nul_separated(cmdline, redact_patterns)
        environ = redact_nul_separated(environ, redact_patterns)
    cpuinfo = _read("/proc/cpuinfo")
    count, level, revision, vendor, version_information = _cpu_fields(cpuinfo)
    uts = os.uname()
    # Breakpad's CSD version: the uname fields except the host name, which says who, not what.
    csd = " ".join((uts.sysname, uts.release, uts.version, uts.machine))
    streams = [
        (fmt.LINUX_CPU_INFO, cpuinfo),
        (fmt.LINUX_PROC_STATUS, read_proc(pid, "status")),
        (fmt.LINUX_LSB_RELEASE, _release_file(pid)),
        (fmt.LINUX_CMD_LINE, cmdline),
        (fmt.LINUX_ENVIRON, environ),
        (fmt.LINUX_AUXV, read_proc(pid, "auxv")),
        (fmt.LINUX_MAPS, maps_raw if maps_raw is not None else read_proc(pid, "maps")),
    ]
    return ProcessInfo(pid, modules_of(pid, maps), streams, csd, _os_version(uts.release), min(count, 255),
                       level, revision, vendor, version_information, _process_times(pid))


@dataclass(slots=True)
class _Layout:
    """Where everything goes: offsets from the start of the dump."""

    streams: list[tuple[int, int, int]]  # (stream type, rva, size), directory order
    thread_list: int
    contexts: int
    module_list: int
    module_names: list[int]
    module_cvs: list[int]
    system_info: int
    csd: int
    misc_info: int
    thread_names: int
    thread_name_strings: list[int]
    linux: list[int]
    memory_list: int
    memory64_list: int
    memory: int  # start of the memory block (the Memory64 list's BaseRva)
    stacks_in_list: int  # how many of the leading stack regions the 32-bit memory list can describe
    size: int  # the whole file


def _plan_layout(info: ProcessInfo, threads: Sequence[ThreadState], stacks: Sequence[Region],
                 others: Sequence[Region]) -> _Layout:
    streams: list[tuple[int, int, int]] = []
    count_streams = 7 + len(info.linux_streams)  # threads, modules, memory, memory64, system, misc, names
    pos = fmt.HEADER.size + fmt.DIRECTORY.size * count_streams

    def place(kind: int, size: int) -> int:
        nonlocal pos
        pos = fmt.align(pos)
        at = pos
        streams.append((kind, at, size))
        pos += size
        return at

    thread_list = place(fmt.THREAD_LIST_STREAM, 4 + fmt.THREAD.size * len(threads))
    pos = fmt.align(pos, 16)  # contexts hold the FXSAVE area, which debuggers like to read aligned
    contexts = pos
    pos += fmt.CONTEXT_SIZE * len(threads)

    module_list = place(fmt.MODULE_LIST_STREAM, 4 + fmt.MODULE.size * len(info.modules))
    module_names, module_cvs = [], []
    for module in info.modules:
        pos = fmt.align(pos, 4)
        module_names.append(pos)
        pos += fmt.string_size(module.path)
        pos = fmt.align(pos, 4)
        module_cvs.append(pos if module.build_id else 0)
        pos += 4 + len(module.build_id) if module.build_id else 0

    system_info = place(fmt.SYSTEM_INFO_STREAM, fmt.SYSTEM_INFO.size)
    csd = pos
    pos += fmt.string_size(info.csd_version)
    misc_info = place(fmt.MISC_INFO_STREAM, fmt.MISC_INFO.size)

    thread_names = place(fmt.THREAD_NAMES_STREAM, 4 + fmt.THREAD_NAME.size * len(threads))
    thread_name_strings = []
    for thread in threads:
        pos = fmt.align(pos, 4)
        thread_name_strings.append(pos)
        pos += fmt.string_size(thread.name)

    linux = [place(kind, len(data)) for kind, data in info.linux_streams]

    # Space for every stack's descriptor; the list's DataSize counts only those whose bytes lie below 4 GiB.
    memory_list = place(fmt.MEMORY_LIST_STREAM, 4 + fmt.MEMORY_DESCRIPTOR.size * len(stacks))
    memory64_list = place(fmt.MEMORY64_LIST_STREAM,
                          fmt.MEMORY64_LIST.size + fmt.MEMORY_DESCRIPTOR64.size * (len(stacks) + len(others)))
    memory = fmt.align(pos, PAGE)  # a page-aligned block: a reader can map ranges straight from the file
    reach = 0
    end = memory
    for region in stacks:
        end += region.size
        if end > _RVA32_LIMIT:
            break
        reach += 1
    streams[-2] = (fmt.MEMORY_LIST_STREAM, memory_list, 4 + fmt.MEMORY_DESCRIPTOR.size * reach)
    size = memory + sum(r.size for r in stacks) + sum(r.size for r in others)
    return _Layout(streams, thread_list, contexts, module_list, module_names, module_cvs, system_info, csd,
                   misc_info, thread_names, thread_name_strings, linux, memory_list, memory64_list, memory, reach,
                   size)


def _layout_of(info: ProcessInfo, threads: Sequence[ThreadState], regions: Sequence[Region]) -> _Layout:
    return _plan_layout(info, threads, [r for r in regions if r.kind == "stack"],
                        [r for r in regions if r.kind != "stack"])


def _stack_descriptor(thread: ThreadState, stacks: Sequence[Region], rvas: Sequence[int]) -> tuple[int, int, int]:
    """(start, size, rva) of the thread's stack from just below rsp (the red zone) to the end of its region, so
    the descriptor says where the live frames are even when the region holds the whole mapping; a thread whose
    stack was not saved gets an empty range at rsp."""
    sp = thread.regs.get("rsp", 0)
    for region, rva in zip(stacks, rvas, strict=True):
        if region.start <= sp < region.end or region.start <= sp - RED_ZONE < region.end:
            start = max(region.start, sp - RED_ZONE)
            return start, region.end - start, rva + (start - region.start)
    return sp, 0, 0


def _pack_metadata(buf: bytearray, layout: _Layout, info: ProcessInfo, threads: Sequence[ThreadState],
                   stacks: Sequence[Region], others: Sequence[Region], flags: int) -> None:
    fmt.HEADER.pack_into(buf, 0, fmt.SIGNATURE, fmt.VERSION, len(layout.streams), fmt.HEADER.size, 0,
                         info.timestamp & 0xFFFFFFFF, flags)
    for i, (kind, rva, size) in enumerate(layout.streams):
        fmt.DIRECTORY.pack_into(buf, fmt.HEADER.size + i * fmt.DIRECTORY.size, kind, size, rva)

    stack_rvas = []
    rva = layout.memory
    for region in stacks:
        stack_rvas.append(rva)
        rva += region.size

    fmt.U32.pack_into(buf, layout.thread_list, len(threads))
    for i, thread in enumerate(threads):
        context = layout.contexts + i * fmt.CONTEXT_SIZE
        start, size, at = _stack_descriptor(thread, stacks, stack_rvas)
        if at + size > _RVA32_LIMIT:
            start, size, at = thread.regs.get("rsp", 0), 0, 0
        fmt.THREAD.pack_into(buf, layout.thread_list + 4 + i * fmt.THREAD.size, thread.tid, 0, 0, 0,
                             thread.regs.get("fs_base", 0), start, size, at, fmt.CONTEXT_SIZE, context)
        fmt.pack_context(buf, context, thread.regs, thread.fpregs_raw)

    fmt.U32.pack_into(buf, layout.module_list, len(info.modules))
    for i, module in enumerate(info.modules):
        fmt.pack_string(buf, layout.module_names[i], module.path)
        cv_size = 0
        if module.build_id:
            cv_size = 4 + len(module.build_id)
            fmt.U32.pack_into(buf, layout.module_cvs[i], fmt.CV_SIGNATURE_ELF)
            at = layout.module_cvs[i] + 4
            buf[at:at + len(module.build_id)] = module.build_id
        fmt.MODULE.pack_into(buf, layout.module_list + 4 + i * fmt.MODULE.size, module.base,
                             min(module.size, 0xFFFFFFFF), 0, 0, layout.module_names[i], cv_size,
                             layout.module_cvs[i], 0, 0, 0, 0)

    vendor = info.cpu_vendor
    fmt.SYSTEM_INFO.pack_into(buf, layout.system_info, fmt.PROCESSOR_ARCHITECTURE_AMD64, info.cpu_level,
                              info.cpu_revision, info.cpu_count, 0, *info.os_version, fmt.PLATFORM_LINUX,
                              layout.csd, 0, 0, int.from_bytes(vendor[0:4], "little"),
                              int.from_bytes(vendor[4:8], "little"), int.from_bytes(vendor[8:12], "little"),
                              info.cpu_version_information, 0, 0)
    fmt.pack_string(buf, layout.csd, info.csd_version)

    misc_flags = fmt.MISC1_PROCESS_ID | (fmt.MISC1_PROCESS_TIMES if info.process_times else 0)
    created, user, kernel = info.process_times or (0, 0, 0)
    fmt.MISC_INFO.pack_into(buf, layout.misc_info, fmt.MISC_INFO.size, misc_flags, info.pid,
                            created & 0xFFFFFFFF, user & 0xFFFFFFFF, kernel & 0xFFFFFFFF)

    fmt.U32.pack_into(buf, layout.thread_names, len(threads))
    for i, thread in enumerate(threads):
        fmt.THREAD_NAME.pack_into(buf, layout.thread_names + 4 + i * fmt.THREAD_NAME.size, thread.tid,
                                  layout.thread_name_strings[i])
        fmt.pack_string(buf, layout.thread_name_strings[i], thread.name)

    for at, (_kind, data) in zip(layout.linux, info.linux_streams, strict=True):
        buf[at:at + len(data)] = data

    fmt.U32.pack_into(buf, layout.memory_list, layout.stacks_in_list)
    for i in range(layout.stacks_in_list):
        fmt.MEMORY_DESCRIPTOR.pack_into(buf, layout.memory_list + 4 + i * fmt.MEMORY_DESCRIPTOR.size,
                                        stacks[i].start, stacks[i].size, stack_rvas[i])
    fmt.MEMORY64_LIST.pack_into(buf, layout.memory64_list, len(stacks) + len(others), layout.memory)
    at = layout.memory64_list + fmt.MEMORY64_LIST.size
    for region in (*stacks, *others):
        fmt.MEMORY_DESCRIPTOR64.pack_into(buf, at, region.start, region.size)
        at += fmt.MEMORY_DESCRIPTOR64.size


class _Sink:
    """Where memory bytes go. When `out` can seek, runs of whole zero pages (the untouched part of a thread's 8 MiB
    stack, of a malloc arena) become holes instead of writes: the write into the page cache is what the target waits
    for, and zeros are most of a typical process's writable memory."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hole = 0
        self.sparse = _can_skip(out)

    def write(self, buf: bytearray, view: memoryview, n: int) -> None:
        if not self.sparse:
            self.out.write(view[:n])
            return
        # Blocks of _HOLE bytes (startswith compares in place, no copy): a per-page test costs more in Python than it
        # saves; the tail is its own block.
        full = n - n % _HOLE
        at = 0
        while at < n:
            end = at
            while end < full and not buf.startswith(_ZERO_BYTES, end):
                end += _HOLE
            if end == full and end < n and any(buf[end:n]):
                end = n
            if end > at:
                if self.hole:
                    self.out.seek(self.hole, os.SEEK_CUR)
                    self.hole = 0
                self.out.write(view[at:end])
                at = end
            while end < full and buf.startswith(_ZERO_BYTES, end):
                end += _HOLE
            if end == full and end < n and not any(buf[end:n]):
                end = n
            self.hole += end - at
            at = end

    def close(self) -> None:
        """A trailing hole still has to reach the file's planned end."""
        if self.hole:
            self.out.seek(self.hole - 1, os.SEEK_CUR)
            self.out.write(b"\0")
            self.hole = 0


def _can_skip(out: BinaryIO) -> bool:
    """Seekable and not O_APPEND (where every write lands at the end whatever the position)."""
    try:
        if not out.seekable():
            return False
    except (AttributeError, OSError, ValueError):
        return False
    if "a" in getattr(out, "mode", ""):
        return False
    try:
        import fcntl

        return not fcntl.fcntl(out.fileno(), fcntl.F_GETFL) & os.O_APPEND
    except (AttributeError, OSError, ValueError):
        return True  # no descriptor (BytesIO): seeking past the end then writing fills with zeros


def _copy(frozen: Frozen, region: Region, sink: _Sink, buf: bytearray) -> int:
    """Stream a region's bytes through `buf`, reading straight into it; pages the target will not give are zeros
    so every later range keeps its planned offset. Returns the bytes zero-filled."""
    view = memoryview(buf)
    addr, left, unreadable = region.start, region.size, 0
    while left:
        n = min(left, len(buf))
        got = frozen.readinto(addr, view[:n])
        if got < n:
            # The read stopped at an unreadable page: zero that page and carry on after it.
            bad_end = min(n, (addr + got) // PAGE * PAGE + PAGE - addr)
            view[got:bad_end] = bytes(bad_end - got)
            unreadable += bad_end - got
            n = bad_end
        sink.write(buf, view, n)
        addr += n
        left -= n
    return unreadable


def _skipped(full: Sequence[Region], chosen: Sequence[Region]) -> int:
    """Regions of the unlimited plan that the budgeted plan left out or cut short."""
    kept = [(r.start, r.end) for r in chosen]
    return sum(1 for region in full
               if not any(start <= region.start and region.end <= end for start, end in kept))


def write_minidump(frozen: Frozen, maps: list[MapEntry], out: BinaryIO, *, memory: str = "stacks",
                   max_size: int | None = None, info: ProcessInfo | None = None) -> DumpResult:
    """Write a minidump of the frozen process to `out`, front to back, never more than max_size bytes.

    `info`: process_info(), gathered before freezing; read here, inside the pause, when not given. When the dump
    would pass max_size, plan_regions keeps the stacks first and drops the rest, and the result says truncated;
    CaptureError if even a dump without memory would not fit.
    """
    if info is None:
        info = process_info(frozen.pid, maps)
    threads = frozen.threads
    full, truncated = plan_regions(frozen, maps, memory, None)
    regions, layout = full, _layout_of(info, threads, full)
    fixed = layout.memory  # fewer regions never need more room before the memory block
    if max_size is not None and layout.size > max_size:
        if fixed > max_size:
            raise CaptureError(f"max_size {max_size} is below the {fixed} bytes a minidump of process {frozen.pid} "
                               "needs before any memory (threads, modules, /proc files): raise it")
        truncated = True
        room = max_size - fixed
        # A cut plan can hold a region more than the full one (two stacks of one mapping no longer joined by the
        # memory between them): then take the overshoot off the budget and plan again.
        for _ in range(8):
            regions, _cut = plan_regions(frozen, maps, memory, room)
            layout = _layout_of(info, threads, regions)
            if layout.size <= max_size:
                break
            room = max(0, room - (layout.size - max_size))
        else:
            raise CaptureError(f"could not plan a minidump of process {frozen.pid} within max_size {max_size}")
    stacks = [r for r in regions if r.kind == "stack"]
    others = [r for r in regions if r.kind != "stack"]

    flags = {"writable": fmt.MINIDUMP_WITH_PRIVATE_READ_WRITE_MEMORY,
             "all": fmt.MINIDUMP_WITH_FULL_MEMORY}.get(memory, 0)
    meta = bytearray(layout.memory)
    _pack_metadata(meta, layout, info, threads, stacks, others, flags)
    out.write(meta)
    del meta

    buf = bytearray(min(_COPY_BUFFER, max((r.size for r in regions), default=0)))
    sink = _Sink(out)
    unreadable = 0
    for region in (*stacks, *others):
        unreadable += _copy(frozen, region, sink, buf)
    sink.close()
    return DumpResult(size=layout.size, truncated=truncated, threads=len(threads), regions=len(regions),
                      memory_bytes=sum(r.size for r in regions),
                      skipped_regions=_skipped(full, regions) if truncated else 0, unreadable_bytes=unreadable)
