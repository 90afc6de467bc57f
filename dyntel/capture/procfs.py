"""What /proc tells about a process: its mappings, threads, raw files, and the build ids of the files it maps."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from dyntel.capture.errors import ProcessGone

__all__ = ["MapEntry", "build_id", "read_maps", "read_proc", "thread_ids", "thread_name"]

NT_GNU_BUILD_ID = 3
PT_NOTE = 4


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One line of /proc/PID/maps. `path` is "" for anonymous memory, or a pseudo name such as "[stack]"."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def readable(self) -> bool:
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"

    @property
    def executable(self) -> bool:
        return self.perms[2] == "x"

    @property
    def private(self) -> bool:
        return self.perms[3] == "p"

    @property
    def size(self) -> int:
        return self.end - self.start


def _gone(pid: int) -> ProcessGone:
    return ProcessGone(f"process {pid} is not running (or not visible from this pid namespace)")


def parse_maps(text: str) -> list[MapEntry]:
    entries = []
    for line in text.splitlines():
        # The path is the sixth field and may itself hold spaces; anonymous mappings have no sixth field.
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        start, _, end = fields[0].partition("-")
        entries.append(MapEntry(int(start, 16), int(end, 16), fields[1], int(fields[2], 16), fields[3],
                                int(fields[4]), fields[5] if len(fields) > 5 else ""))
    return entries


def read_maps(pid: int) -> list[MapEntry]:
    """The process's mappings in address order. ProcessGone if it does not exist, NotPermitted if refused."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise _gone(pid) from None
    except PermissionError as e:
        from dyntel.capture.errors import NotPermitted
        from dyntel.capture.permissions import explain

        raise NotPermitted(explain(pid, e.errno or 0)) from None
    return parse_maps(data.decode("utf-8", "surrogateescape"))


def read_proc(pid: int, name: str) -> bytes:
    """Raw /proc/PID/NAME; b"" when it cannot be read (gone, refused): callers treat these files as optional."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def thread_ids(pid: int) -> list[int]:
    """Every thread of the process, the main thread (tid == pid) first."""
    try:
        tids = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError):
        raise _gone(pid) from None
    tids.sort(key=lambda tid: (tid != pid, tid))
    return tids


def thread_name(pid: int, tid: int) -> str:
    """The thread's comm (at most 15 characters); "" if it exited."""
    return read_proc(pid, f"task/{tid}/comm").decode("utf-8", "replace").rstrip("\n")


_build_ids: dict[tuple[str, int, int], bytes | None] = {}
_BUILD_ID_CACHE_MAX = 4096


def build_id(path: str) -> bytes | None:
    """The NT_GNU_BUILD_ID note of an ELF file, None if it has none or cannot be read.

    Read from the program headers' PT_NOTE segments, which survive `strip`; cached by (path, inode, mtime) so a
    file replaced on disk (an upgrade while the process runs) is read again.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_ino, st.st_mtime_ns)
    if key in _build_ids:
        return _build_ids[key]
    try:
        with open(path, "rb") as f:
            found = _read_build_id(f)
    except (OSError, struct.error, ValueError):
        found = None
    if len(_build_ids) >= _BUILD_ID_CACHE_MAX:
        _build_ids.clear()
    _build_ids[key] = found
    return found


def _read_build_id(f: BinaryIO) -> bytes | None:
    ident = f.read(64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF":
        return None
    is64 = ident[4] == 2
    end = "<" if ident[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(end + "Q", ident, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", ident, 54)
        phdr = end + "IIQQQQQQ"
    else:
        phoff, = struct.unpack_from(end + "I", ident, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", ident, 42)
        phdr = end + "IIIIIIII"
    if phnum == 0 or phnum > 4096 or phentsize < struct.calcsize(phdr):
        return None
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    for i in range(phnum):
        if (i + 1) * phentsize > len(table):
            break
        fields = struct.unpack_from(phdr, table, i * phentsize)
        if fields[0] != PT_NOTE:
            continue
        # ELF64: type, flags, offset, ...; ELF32: type, offset, vaddr, paddr, filesz, ...
        offset, filesz = (fields[2], fields[5]) if is64 else (fields[1], fields[4])
        if filesz > 1 << 20:
            continue
        f.seek(offset)
        found = _find_note(f.read(filesz), end)
        if found is not None:
            return found
    return None


def _find_note(notes: bytes, end: str) -> bytes | None:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from(end + "III", notes, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        if desc_at + descsz > len(notes):
            return None
        if kind == NT_GNU_BUILD_ID and notes[name_at:name_at + namesz] == b"GNU\0":
            return notes[desc_at:desc_at + descsz]
        pos = desc_at + ((descsz + 3) & ~3)
    return None
