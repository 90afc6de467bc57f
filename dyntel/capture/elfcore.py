"""An ELF core file of a frozen process, laid out as the kernel writes one (fs/binfmt_elf.c), for gdb.

Layout: ELF header, program headers (one PT_NOTE, then PT_LOAD per mapping in address order), the notes, then the
memory of the planned regions back to back from a page boundary. A mapping, or the part of one, that the plan leaves
out gets a PT_LOAD with p_filesz 0, as the kernel does for read-only file mappings: gdb then reads those bytes from
the mapped file, or knows they were not saved.

The file's size is fixed before the first write, from the plan, so it never exceeds max_size; memory is copied in
1 MiB chunks straight from the target to `out`, so writing a 1 GB process costs 1 MiB of dyntel's memory.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from dyntel.capture.errors import CaptureError
from dyntel.capture.procfs import MapEntry, read_proc
from dyntel.capture.ptrace import Frozen, ThreadState
from dyntel.capture.regions import DumpResult, Region, plan_regions, skipped_regions
from dyntel.security import DEFAULT_PATTERNS, redact_nul_separated

__all__ = ["write_core"]

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 1 << 20  # process_vm_readv is at full speed from 1 MiB (benchmarks/capture.py)

ET_CORE = 4
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF
PF_X, PF_W, PF_R = 1, 2, 4
NT_PRSTATUS = 1
NT_FPREGSET = 2
NT_PRPSINFO = 3
NT_AUXV = 6
NT_FILE = 0x46494C45

EHDR_SIZE = 64
PHDR_SIZE = 56
SHDR_SIZE = 64
PRSTATUS = struct.Struct("<iiih2xQQiiii16s16s16s16s216si4x")  # struct elf_prstatus, 336 bytes
PRPSINFO = struct.Struct("<bbbb4xQIIiiii16s80s")  # struct elf_prpsinfo, 136 bytes


@dataclass(slots=True)
class _Segment:
    vaddr: int
    memsz: int
    filesz: int
    flags: int
    offset: int = 0


@dataclass(slots=True)
class _Stat:
    state: str
    ppid: int
    pgrp: int
    session: int
    flags: int
    nice: int


def _stat(pid: int) -> _Stat:
    text = read_proc(pid, "stat").decode("utf-8", "replace")
    # comm (field 2) may hold spaces and parentheses: fields start after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) < 17:
        return _Stat("R", 0, 0, 0, 0, 0)
    return _Stat(fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[6]), int(fields[16]))


def _note(kind: int, desc: bytes, name: bytes = b"CORE") -> bytes:
    name0 = name + b"\0"
    pad_name = b"\0" * (-len(name0) % 4)
    pad_desc = b"\0" * (-len(desc) % 4)
    return struct.pack("<III", len(name0), len(desc), kind) + name0 + pad_name + desc + pad_desc


def _prstatus(thread: ThreadState, stat: _Stat) -> bytes:
    zero_tv = bytes(16)
    return PRSTATUS.pack(0, 0, 0, 0, 0, 0, thread.tid, stat.ppid, stat.pgrp, stat.session,
                         zero_tv, zero_tv, zero_tv, zero_tv, thread.regs_raw, 1)


def _prpsinfo(pid: int, stat: _Stat, redact_patterns: Sequence[str]) -> bytes:
    status = read_proc(pid, "status").decode("utf-8", "replace")
    ids = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in status.splitlines() if ":" in line}
    uid = int(ids.get("Uid", ["0"])[0])
    gid = int(ids.get("Gid", ["0"])[0])
    comm = read_proc(pid, "comm").rstrip(b"\n")[:15]
    cmdline = read_proc(pid, "cmdline")
    if redact_patterns:
        cmdline = redact_nul_separated(cmdline, redact_patterns)
    args = cmdline.rstrip(b"\0").replace(b"\0", b" ")[:79]
    state = stat.state[:1] or "R"
    state_number = "RSDTZW".find(state)
    return PRPSINFO.pack(max(state_number, 0), ord(state), int(state == "Z"), max(-128, min(127, stat.nice)),
                         stat.flags, uid, gid, pid, stat.ppid, stat.pgrp, stat.session, comm, args)


def _file_note(maps: Iterable[MapEntry]) -> bytes:
    files = [m for m in maps if m.path and not m.path.startswith("[") and m.inode != 0]
    table = b"".join(struct.pack("<QQQ", m.start, m.end, m.offset // PAGE) for m in files)
    names = b"".join(m.path.encode("utf-8", "surrogateescape") + b"\0" for m in files)
    return struct.pack("<QQ", len(files), PAGE) + table + names


def _notes(frozen: Frozen, maps: list[MapEntry], redact_patterns: Sequence[str]) -> bytes:
    stat = _stat(frozen.pid)
    parts = []
    for i, thread in enumerate(frozen.threads):
        parts.append(_note(NT_PRSTATUS, _prstatus(thread, stat)))
        if i == 0:
            # The kernel's order: the process-wide notes follow the first thread's status.
            parts.append(_note(NT_PRPSINFO, _prpsinfo(frozen.pid, stat, redact_patterns)))
            parts.append(_note(NT_AUXV, read_proc(frozen.pid, "auxv")))
            parts.append(_note(NT_FILE, _file_note(maps)))
        parts.append(_note(NT_FPREGSET, thread.fpregs_raw))
    return b"".join(parts)


def _flags(entry: MapEntry) -> int:
    return (PF_R if entry.readable else 0) | (PF_W if entry.writable else 0) | (PF_X if entry.executable else 0)


def _segments(maps: list[MapEntry], regions: list[Region]) -> list[_Segment]:
    """PT_LOADs for every mapping, split where a planned region starts or ends inside it."""
    segments = []
    i = 0
    for entry in maps:
        flags = _flags(entry)
        at = entry.start
        while i < len(regions) and regions[i].start < entry.end:
            region = regions[i]
            if region.start > at:
                segments.append(_Segment(at, region.start - at, 0, flags))
            end = min(region.end, entry.end)
            segments.append(_Segment(region.start, end - region.start, end - region.start, flags))
            at = end
            i += 1
        if at < entry.end:
            segments.append(_Segment(at, entry.end - at, 0, flags))
    return segments


def _header_size(phnum: int) -> int:
    return EHDR_SIZE + PHDR_SIZE * phnum + (SHDR_SIZE if phnum >= PN_XNUM else 0)


def _data_offset(phnum: int, notes_size: int) -> int:
    return -(-(_header_size(phnum) + notes_size) // PAGE) * PAGE


def _plan(frozen: Frozen, maps: list[MapEntry], memory: str, max_size: int | None,
          notes_size: int) -> tuple[list[Region], bool]:
    if max_size is None:
        return plan_regions(frozen, maps, memory, None)
    # A region that starts or ends inside a mapping splits its PT_LOAD: at most two more program headers for each
    # stack, and one for the region cut short. Budgeting for that many keeps the real file within max_size.
    most_phdrs = 1 + len(maps) + 2 * len(frozen.threads) + 2
    room = max_size - _data_offset(most_phdrs, notes_size)
    if room < 0:
        raise CaptureError(f"max_size {max_size} bytes is too small for even the core's headers and notes of "
                           f"process {frozen.pid} ({max_size - room} bytes); raise max_size")
    return plan_regions(frozen, maps, memory, room)


def _elf_header(phnum: int) -> bytes:
    extended = phnum >= PN_XNUM
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, little-endian, EV_CURRENT, System V ABI
    shoff = EHDR_SIZE + PHDR_SIZE * phnum if extended else 0
    return ident + struct.pack("<HHIQQQIHHHHHH", ET_CORE, EM_X86_64, 1, 0, EHDR_SIZE, shoff, 0, EHDR_SIZE,
                               PHDR_SIZE, PN_XNUM if extended else phnum, SHDR_SIZE if extended else 0,
                               1 if extended else 0, 0)


def _phdr(kind: int, flags: int, offset: int, vaddr: int, filesz: int, memsz: int, align: int) -> bytes:
    return struct.pack("<IIQQQQQQ", kind, flags, offset, vaddr, 0, filesz, memsz, align)


def _copy(frozen: Frozen, start: int, size: int, out: BinaryIO, buffer: memoryview) -> int:
    """Copy target memory to `out`; unreadable pages become zeros. Returns how many bytes were zero-filled."""
    zeros = 0
    at, end = start, start + size
    while at < end:
        want = buffer[:min(len(buffer), end - at)]
        got = frozen.readinto(at, want)
        if got:
            out.write(want[:got])
            at += got
        if got < len(want):
            # Unreadable from `at`: zeros to the next page boundary, then try again from there.
            gap = min(end, (at // PAGE + 1) * PAGE) - at
            out.write(bytes(gap))
            zeros += gap
            at += gap
    return zeros


def write_core(frozen: Frozen, maps: list[MapEntry], out: BinaryIO, *, memory: str = "writable",
               max_size: int | None = None, redact_patterns: Sequence[str] = DEFAULT_PATTERNS) -> DumpResult:
    """Write an ELF core of the frozen process to `out` (at its current position); never more than max_size bytes.
    The command line in NT_PRPSINFO has secrets (`--password=...`) redacted unless `redact_patterns` is empty."""
    maps = sorted(maps, key=lambda m: m.start)
    notes = _notes(frozen, maps, redact_patterns)
    regions, truncated = _plan(frozen, maps, memory, max_size, len(notes))
    segments = _segments(maps, regions)
    phnum = 1 + len(segments)
    data_offset = _data_offset(phnum, len(notes))
    offset = data_offset
    for segment in segments:
        segment.offset = offset
        offset += segment.filesz
    size = offset
    if max_size is not None and size > max_size:
        raise AssertionError(f"core planned at {size} bytes, over max_size {max_size}")  # a bug in _plan's bound

    header = bytearray(_elf_header(phnum))
    header += _phdr(PT_NOTE, 0, _header_size(phnum), 0, len(notes), 0, 4)
    for segment in segments:
        aligned = segment.vaddr % PAGE == 0 and segment.offset % PAGE == 0
        header += _phdr(PT_LOAD, segment.flags, segment.offset, segment.vaddr, segment.filesz, segment.memsz,
                        PAGE if aligned else 1)
    if phnum >= PN_XNUM:
        # More program headers than e_phnum holds: the real count goes in section header 0's sh_info.
        header += struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, phnum, 0, 0)
    header += notes
    header += bytes(data_offset - len(header))
    out.write(header)

    buffer = memoryview(bytearray(CHUNK))
    unreadable = 0
    for segment in segments:
        if segment.filesz:
            unreadable += _copy(frozen, segment.vaddr, segment.filesz, out, buffer)
    return DumpResult(size=size, truncated=truncated, threads=len(frozen.threads), regions=len(regions),
                      memory_bytes=sum(r.size for r in regions),
                      skipped_regions=skipped_regions(frozen, maps, memory, regions) if truncated else 0,
                      unreadable_bytes=unreadable)
