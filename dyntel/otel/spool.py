"""An on-disk spool of encoded records: one file per record, named by its sequence number, durable when stored.

Why one file per record: a record is deleted only after the collector took it, and deleting a file is the one
operation that needs no rewriting of what is left; the file name keeps the order. A record is on disk before
`append` returns: the file is fsynced, then the directory (so the name is too). A file cut short by a crash is
found by its length and CRC and discarded (its action had not reported ok).

The directory is 0700 and refused if it is a link or another user's; files are 0600, created with O_EXCL and
O_NOFOLLOW. One process at a time: a lock file (flock) refuses a second dyntel on the same spool, whose sequence
numbers would collide. The spool is bounded in bytes and in files; when a new record does not fit, the oldest are
deleted and counted in `dropped`: the newest alerts say most about an incident that is still going on.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import stat
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_MAGIC = b"DTSP"
_VERSION = 1
_HEADER = struct.Struct("<4sB3xQII")  # magic, version, seq, record length, crc32 of the record
_SUFFIX = ".rec"
_LOCK = ".lock"
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_FILES = 10_000


class SpoolError(Exception):
    pass


@dataclass(slots=True)
class SpoolStats:
    dropped: int = 0  # oldest records deleted to make room
    corrupt: int = 0  # files found unreadable (a crash while writing) and deleted


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 max_files: int = DEFAULT_MAX_FILES, sync: bool = True) -> None:
        if max_bytes <= _HEADER.size or max_files < 1:
            raise SpoolError(f"spool bounds too small: max_bytes {max_bytes}, max_files {max_files}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.sync = sync
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        # close() may come while the sender thread still reads (an export outlived the shutdown's timeout): the
        # descriptors are closed by whoever leaves last, so a late reader never opens a name relative to a closed
        # (or, worse, reused) directory descriptor.
        self._users = 0
        self._closed = False
        self._dir_fd = _open_private_dir(self.directory)
        self._lock_fd = _lock(self._dir_fd, self.directory)
        self._seqs: list[int] = []  # sorted
        self._sizes: dict[int, int] = {}
        self._bytes = 0
        self._scan()

    def _scan(self) -> None:
        for name in os.listdir(self._dir_fd):
            if not name.endswith(_SUFFIX):
                continue
            stem = name[: -len(_SUFFIX)]
            if not stem.isdigit():
                continue
            try:
                size = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
            seq = int(stem)
            self._seqs.append(seq)
            self._sizes[seq] = size
            self._bytes += size
        self._seqs.sort()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seqs)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def last_seq(self) -> int | None:
        with self._lock:
            return self._seqs[-1] if self._seqs else None

    @property
    def closed(self) -> bool:
        return self._closed

    @contextlib.contextmanager
    def _using(self) -> Iterator[bool]:
        """The directory descriptor held open for one operation; yields False (and holds nothing) once closed."""
        with self._lock:
            if self._closed:
                yield_open = False
            else:
                self._users += 1
                yield_open = True
        try:
            yield yield_open
        finally:
            if yield_open:
                with self._lock:
                    self._users -= 1
                    last = self._closed and self._users == 0
                if last:
                    self._close_fds()

    def append(self, seq: int, record: bytes) -> int:
        """Store `record` under `seq`, durably; returns how many older records were dropped to make room."""
        with self._using() as usable:
            if not usable:
                raise SpoolError(f"spool {self.directory} is closed: alert {seq} not stored")
            return self._append(seq, record)

    def _append(self, seq: int, record: bytes) -> int:
        size = _HEADER.size + len(record)
        if size > self.max_bytes:
            raise SpoolError(f"a {len(record)}-byte record does not fit a spool of {self.max_bytes} bytes "
                             f"({self.directory}); raise its max_bytes")
        data = _HEADER.pack(_MAGIC, _VERSION, seq, len(record), zlib.crc32(record)) + record
        name = _name(seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=self._dir_fd)
        except FileExistsError as e:
            raise SpoolError(f"spool record {self.directory / name} already exists: sequence numbers reused "
                             "(two dyntel processes on one spool?)") from e
        try:
            os.write(fd, data)
            if self.sync:
                os.fsync(fd)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._dir_fd)
            raise
        os.close(fd)
        if self.sync:
            os.fsync(self._dir_fd)
        with self._lock:
            dropped = self._make_room_locked(size)
            i = bisect.bisect(self._seqs, seq)
            self._seqs.insert(i, seq)
            self._sizes[seq] = size
            self._bytes += size
        return dropped

    def _make_room_locked(self, size: int) -> int:
        dropped = 0
        while self._seqs and (len(self._seqs) + 1 > self.max_files or self._bytes + size > self.max_bytes):
            self._remove_locked(self._seqs[0])
            dropped += 1
        self.stats.dropped += dropped
        return dropped

    def _remove_locked(self, seq: int) -> None:
        i = bisect.bisect_left(self._seqs, seq)
        if i < len(self._seqs) and self._seqs[i] == seq:
            del self._seqs[i]
            self._bytes -= self._sizes.pop(seq, 0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_name(seq), dir_fd=self._dir_fd)

    def oldest(self, count: int, after: int | None = None) -> list[tuple[int, bytes]]:
        """Up to `count` records in sequence order (those above `after` only); unreadable ones are deleted."""
        with self._lock:
            start = bisect.bisect_right(self._seqs, after) if after is not None else 0
            wanted = self._seqs[start:start + count]
        out: list[tuple[int, bytes]] = []
        with self._using() as usable:
            if not usable:
                return out  # closed: what is on disk waits for the next start
            for seq in wanted:
                record = self._read(seq)
                if record is not None:
                    out.append((seq, record))
        return out

    def _read(self, seq: int) -> bytes | None:
        try:
            fd = os.open(_name(seq), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir_fd)
        except FileNotFoundError:  # dropped to make room meanwhile
            return None
        try:
            data = os.read(fd, 1 << 30)
        finally:
            os.close(fd)
        if len(data) >= _HEADER.size:
            magic, version, stored_seq, length, crc = _HEADER.unpack_from(data)
            record = data[_HEADER.size:]
            if (magic, version, stored_seq) == (_MAGIC, _VERSION, seq) and len(record) == length \
                    and zlib.crc32(record) == crc:
                return record
        with self._lock:
            self.stats.corrupt += 1
            self._remove_locked(seq)
        return None

    def remove(self, seqs: list[int]) -> None:
        """Delete records the collector took (after close: only forgotten; the next start resends them)."""
        with self._using() as usable, self._lock:
            if usable:
                for seq in seqs:
                    self._remove_locked(seq)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            last = self._users == 0
        if last:
            self._close_fds()

    def _close_fds(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        with contextlib.suppress(OSError):
            os.close(self._dir_fd)


def _name(seq: int) -> str:
    return f"{seq:020d}{_SUFFIX}"


def _open_private_dir(directory: Path) -> int:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise SpoolError(f"cannot create the OTLP spool directory {directory}: {e.strerror or e}") from e
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise SpoolError(f"cannot open the OTLP spool directory {directory} (a symbolic link is refused): "
                         f"{e.strerror or e}") from e
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise SpoolError(f"the OTLP spool directory {directory} belongs to uid {st.st_uid}, not to dyntel's "
                         f"uid {os.geteuid()}: choose another directory")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    return fd


def _lock(dir_fd: int, directory: Path) -> int:
    fd = os.open(_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        os.close(fd)
        raise SpoolError(f"the OTLP spool {directory} is in use by another dyntel process; give each its own "
                         "spool directory") from e
    return fd
