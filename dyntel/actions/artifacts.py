"""Where actions put files (dumps, stack reports, recordings): one directory, a hard quota, retention.

The rules a store keeps, so that a burst of firings can never fill a disk:
- The directory is 0700 and every artifact 0600, created with O_EXCL (a pre-planted file or link is refused).
- `max_total` is a hard quota on the bytes of all artifacts in the directory. Before a writer starts, it reserves
  room: it gets a byte budget (`Reservation.limit`) that is what is left of the quota, less what writers running at
  the same moment have reserved, less the disk's own free space minus `min_free`. A writer stops at its budget (the
  dump writers plan their size up front and mark the file truncated). When there is no useful room left, the
  action is skipped with reason `quota`: older artifacts are NOT deleted to make room, because the first dumps of
  an incident are usually the ones worth keeping.
- Retention is separate: `keep` newest artifacts and, if set, `max_age`; older ones are deleted (oldest first) when
  a new one is reserved, and counted (`deleted`).
Artifacts are the regular files whose names start with `dyntel-`; other files in the directory are never touched
(but their bytes count against the disk's free space, not the quota).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PREFIX = "dyntel-"
DEFAULT_ARTIFACT_DIR = "dyntel-artifacts"
# Below this budget a dump or report is not worth starting: it could not hold even the thread list.
MIN_USEFUL = 64 << 10
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(slots=True)
class StoreStats:
    created: int = 0
    deleted: int = 0  # by retention
    skipped_quota: int = 0
    bytes_written: int = 0


class Reservation:
    """One artifact being written: its path, its open file (0600), and the most it may hold."""

    def __init__(self, store: ArtifactStore, path: Path, file: BinaryIO, limit: int) -> None:
        self.store = store
        self.path = path
        self.file = file
        self.limit = limit
        self._done = False

    def finish(self) -> int:
        """Close the file and account its real size. Returns the size."""
        if not self.file.closed:
            self.file.close()
        size = self.path.stat().st_size if self.path.exists() else 0
        self.store._release(self, size)
        return size

    def discard(self) -> None:
        """Close and delete a file that is not worth keeping (an action that failed before writing anything useful)."""
        if not self.file.closed:
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.store._release(self, 0)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self._done:
            if exc_type is None:
                self.finish()
            else:
                self.discard()


class ArtifactStore:
    def __init__(self, directory: str | os.PathLike[str], *, max_total: int, keep: int = 50,
                 max_age_s: float | None = None, min_free: int = 256 << 20) -> None:
        self.directory = Path(directory)
        self.max_total = max_total
        self.keep = keep
        self.max_age_s = max_age_s
        self.min_free = min_free
        self.stats = StoreStats()
        self._lock = threading.Lock()
        self._reserved: dict[int, int] = {}  # id(reservation) -> bytes held

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.directory.stat()
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.directory, 0o700)
        elif st.st_uid != os.geteuid():
            raise PermissionError(f"artifact directory {self.directory} belongs to uid {st.st_uid}, not to dyntel's "
                                  f"uid {os.geteuid()}: dumps would be readable by its owner; use a directory of "
                                  f"dyntel's own")

    def artifacts(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every artifact, oldest first."""
        out = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith(PREFIX) and entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, st.st_size, Path(entry.path)))
        out.sort()
        return out

    def used(self) -> int:
        return sum(size for _, size, _ in self.artifacts())

    def _prune(self, making_room_for: int) -> int:
        """Retention: keep the newest `keep - making_room_for` and nothing older than max_age. Returns the bytes of
        the artifacts kept (what the quota counts), from the same directory scan."""
        found = self.artifacts()
        now = time.time()
        excess = max(0, len(found) + making_room_for - self.keep)
        kept = 0
        for i, (mtime, size, path) in enumerate(found):
            old = self.max_age_s is not None and now - mtime > self.max_age_s
            if i < excess or old:
                try:
                    path.unlink()
                    self.stats.deleted += 1
                except FileNotFoundError:
                    pass
            else:
                kept += size
        return kept

    def reserve(self, kind: str, suffix: str, *, pid: int | None = None, rule: str | None = None,
                want: int | None = None, stem: str | None = None) -> Reservation | str:
        """A new artifact file, or the reason there is no room (a string starting with "quota").

        `stem`: the name of an artifact just made, without its suffix, for a second file of the same capture."""
        with self._lock:
            self._ensure_dir()
            used = self._prune(1) + sum(self._reserved.values())
            room = self.max_total - used
            disk = os.statvfs(self.directory)
            room = min(room, disk.f_bavail * disk.f_frsize - self.min_free)
            if want is not None:
                room = min(room, want)
            if room < MIN_USEFUL:
                self.stats.skipped_quota += 1
                free = disk.f_bavail * disk.f_frsize
                return (f"quota: {used} of {self.max_total} bytes used in {self.directory} "
                        f"({free} bytes free on its disk, {self.min_free} kept free)")
            if stem is None:
                now = time.time_ns()
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000)) + f".{now % 10**9:09d}"
                parts = [PREFIX + _UNSAFE.sub("_", kind)]
                if rule:
                    parts.append(_UNSAFE.sub("_", rule)[:60])
                if pid is not None:
                    parts.append(str(pid))
                parts.append(stamp)
                stem = "-".join(parts)
            path = self.directory / (stem + suffix)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            file = os.fdopen(fd, "wb", buffering=1 << 20)
            reservation = Reservation(self, path, file, room)
            self._reserved[id(reservation)] = room
            self.stats.created += 1
            return reservation

    def _release(self, reservation: Reservation, size: int) -> None:
        with self._lock:
            if self._reserved.pop(id(reservation), None) is not None:
                self.stats.bytes_written += size
            reservation._done = True


@dataclass(slots=True)
class StoreSettings:
    directory: Path
    max_total: int = 2 << 30
    keep: int = 50
    max_age_s: float | None = None
    min_free: int = 256 << 20


class ArtifactStores:
    """The stores by directory: an action's `dir` option picks its own; each keeps its own quota."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._stores: dict[Path, ArtifactStore] = {}
        self._lock = threading.Lock()

    def get(self, directory: str | os.PathLike[str] | None = None, *, max_total: int | None = None) -> ArtifactStore:
        s = self.settings
        path = Path(directory or s.directory).resolve()
        with self._lock:
            store = self._stores.get(path)
            if store is None:
                store = ArtifactStore(path, max_total=s.max_total, keep=s.keep, max_age_s=s.max_age_s,
                                      min_free=s.min_free)
                self._stores[path] = store
            if max_total is not None:
                # A rule's `max_total` narrows the quota of its directory, never widens what another rule set.
                store.max_total = min(store.max_total, max_total)
            return store

    def all(self) -> list[ArtifactStore]:
        with self._lock:
            return list(self._stores.values())
