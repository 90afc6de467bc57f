"""Which memory a dump holds: thread stacks first, then writable memory, then the rest, within a size budget.

Both writers (ELF core, minidump) plan from here before writing a byte, so a dump's size is known up front and never
exceeds its limit: a dump that would be too large keeps the stacks (what a backtrace needs) and then as much of the
rest as fits, in address order, and says it was truncated.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from dyntel.capture.errors import CaptureError
from dyntel.capture.procfs import MapEntry
from dyntel.capture.ptrace import Frozen

__all__ = ["MEMORY_CHOICES", "STACK_CAP", "DumpResult", "Region", "dumpable_mapping", "plan_regions", "skipped_regions"]

MEMORY_CHOICES = ("stacks", "writable", "all")
STACK_CAP = 8 << 20
RED_ZONE = 128  # x86-64 SysV: a leaf function may use 128 bytes below rsp without moving it

# Reading these fails or has side effects: the vDSO's data pages, the legacy vsyscall page.
_PSEUDO_SKIPPED = frozenset({"[vvar]", "[vvar_vclock]", "[vsyscall]"})


@dataclass(slots=True)
class Region:
    """A range of the target's memory to copy into the dump."""

    start: int
    size: int
    kind: str  # "stack" | "writable" | "readonly"
    entry: MapEntry | None = None

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(slots=True)
class DumpResult:
    """What a writer wrote. `skipped_regions`: mappings (or stacks) left out or cut short to stay within max_size;
    `unreadable_bytes`: planned memory the target would not give (a file mapping past the file's end), zero-filled."""

    size: int
    truncated: bool
    threads: int
    regions: int
    memory_bytes: int
    skipped_regions: int
    unreadable_bytes: int = 0


def dumpable_mapping(entry: MapEntry) -> bool:
    """Readable, and not a device (reading device memory can hang or act on the hardware) or a vDSO data page."""
    if not entry.readable or entry.path in _PSEUDO_SKIPPED:
        return False
    # /dev/shm is tmpfs and /dev/zero (deleted) is shared anonymous memory: ordinary memory under a /dev name.
    return not (entry.path.startswith("/dev/") and not entry.path.startswith(("/dev/shm/", "/dev/zero")))


def _relro(entry: MapEntry, after: MapEntry | None) -> bool:
    """The RELRO part of a loaded ELF object: read-only now, but written by the dynamic loader at start-up (GOT,
    .dynamic with DT_DEBUG), so the file does not hold its contents. It sits just below the object's rw-p data.
    A debugger finds the shared libraries through DT_DEBUG there; the kernel dumps it too (it has anonymous pages).
    """
    return (after is not None and entry.perms == "r--p" and entry.inode != 0 and after.perms == "rw-p"
            and after.inode == entry.inode and after.dev == entry.dev and after.start == entry.end
            and after.offset == entry.offset + entry.size)


def _stack_ranges(frozen: Frozen, maps: list[MapEntry]) -> list[tuple[int, int, MapEntry]]:
    starts = [m.start for m in maps]
    ranges = []
    for thread in frozen.threads:
        sp = thread.regs.get("rsp", 0)
        i = bisect.bisect_right(starts, sp) - 1
        if i < 0 or not maps[i].start <= sp < maps[i].end or not maps[i].readable:
            continue  # rsp outside any mapping: nothing to save for this thread
        entry = maps[i]
        start = max(entry.start, sp - RED_ZONE)
        ranges.append((start, min(entry.end, start + STACK_CAP), entry))
    ranges.sort(key=lambda r: r[0])
    merged: list[tuple[int, int, MapEntry]] = []
    for start, end, entry in ranges:
        if merged and start <= merged[-1][1] and merged[-1][2] is entry:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), entry)
        else:
            merged.append((start, end, entry))
    return merged


def _subtract(entry: MapEntry, stacks: list[tuple[int, int, MapEntry]]) -> list[tuple[int, int]]:
    """The parts of a mapping outside the stack ranges."""
    pieces = []
    at = entry.start
    for start, end, _ in stacks:
        if end <= at or start >= entry.end:
            continue
        if start > at:
            pieces.append((at, start))
        at = max(at, end)
    if at < entry.end:
        pieces.append((at, entry.end))
    return pieces


def plan_regions(frozen: Frozen, maps: list[MapEntry], memory: str,
                 max_memory: int | None) -> tuple[list[Region], bool]:
    """The regions to copy, in address order and not overlapping, and whether max_memory forced some out."""
    if memory not in MEMORY_CHOICES:
        raise CaptureError(f"memory: {memory!r} is not one of {', '.join(MEMORY_CHOICES)}")
    maps = sorted(maps, key=lambda m: m.start)
    stacks = _stack_ranges(frozen, maps)
    stack_pieces = [Region(start, end - start, "stack", entry) for start, end, entry in stacks]
    other_pieces: list[Region] = []
    if memory != "stacks":
        for i, entry in enumerate(maps):
            if not dumpable_mapping(entry):
                continue
            written = entry.writable or _relro(entry, maps[i + 1] if i + 1 < len(maps) else None)
            if memory == "writable" and not written:
                continue
            kind = "writable" if written else "readonly"
            other_pieces.extend(Region(s, e - s, kind, entry) for s, e in _subtract(entry, stacks))
    total = sum(r.size for r in stack_pieces) + sum(r.size for r in other_pieces)
    truncated = max_memory is not None and total > max_memory
    chosen: list[Region] = []
    if not truncated:
        chosen = stack_pieces + other_pieces
    else:
        assert max_memory is not None
        room = max_memory
        for piece in stack_pieces + other_pieces:  # stacks first; each list is in address order
            if room <= 0:
                break
            if piece.size > room:
                # Of a stack, the part nearest rsp (its start) holds the innermost frames: keep that.
                piece = Region(piece.start, room, piece.kind, piece.entry)
            chosen.append(piece)
            room -= piece.size
    return _coalesce(sorted(chosen, key=lambda r: r.start)), truncated


def _coalesce(pieces: list[Region]) -> list[Region]:
    """Adjacent pieces of one mapping become one region again (a stack inside a writable mapping)."""
    out: list[Region] = []
    for piece in pieces:
        last = out[-1] if out else None
        if last is not None and last.entry is piece.entry and last.end == piece.start:
            last.size += piece.size
            if piece.kind == "stack":
                last.kind = "stack"
        else:
            out.append(piece)
    return out


def skipped_regions(frozen: Frozen, maps: list[MapEntry], memory: str, chosen: list[Region]) -> int:
    """How many regions of the untruncated plan `chosen` (a truncated plan) leaves out or cuts short."""
    full, _ = plan_regions(frozen, maps, memory, None)
    starts = [r.start for r in chosen]
    skipped = 0
    for region in full:
        covered = 0
        i = max(bisect.bisect_right(starts, region.start) - 1, 0)
        while i < len(chosen) and chosen[i].start < region.end:
            covered += max(0, min(chosen[i].end, region.end) - max(chosen[i].start, region.start))
            i += 1
        skipped += covered < region.size
    return skipped
