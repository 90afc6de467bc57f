"""Where a provider's events go: user_events, a capture file descriptor, or nowhere.

A sink registers tracepoint names and gives back, for each, an enable word (the kernel's, for user_events) and the
fd and write index that events are written with. The capture sink is the seam that lets the exact bytes of every
writev be read on a machine without user_events (a SOCK_SEQPACKET pair keeps each writev one message; /dev/null
serves for timing): the producer's write path is the same writev whatever the sink.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dyntel.sources.perf.user_events import Tracepoint, UserEventsData, UserEventsUnavailable

__all__ = ["CaptureSink", "NoopSink", "Registered", "Sink", "UserEventsSink", "capture_pair", "open_sink"]


@dataclass(slots=True, eq=False)
class Registered:
    """One tracepoint as a sink registered it."""

    name: str
    word: ctypes.c_uint32  # bit 0: somebody listens
    fd: int  # -1: never written
    write_index: int


class Sink(Protocol):
    def register(self, name: str) -> Registered: ...

    def close(self) -> None: ...


class UserEventsSink:
    """Real user_events: DIAG_IOCSREG on user_events_data, with the enable word in this process."""

    def __init__(self, path: Path | None = None) -> None:
        self.data = UserEventsData(path)
        self._by_name: dict[str, Tracepoint] = {}

    def register(self, name: str) -> Registered:
        tp = self.data.register_eventheader(name)
        self._by_name[name] = tp
        return Registered(name, tp.word, self.data.fd, tp.write_index)

    def close(self) -> None:
        self.data.close()  # DIAG_IOCSUNREG for each, then the file's references go


class CaptureSink:
    """Writes to a file descriptor the caller owns, as if user_events were there: each tracepoint gets the next
    write index (so a reader can tell them apart by the first 4 bytes of each write) and starts enabled."""

    def __init__(self, fd: int, enabled: bool = True) -> None:
        self.fd = fd
        self.enabled = enabled
        self.names: dict[int, str] = {}  # write index -> tracepoint name
        self._words: dict[str, Registered] = {}

    def register(self, name: str) -> Registered:
        r = self._words.get(name)
        if r is None:
            r = Registered(name, ctypes.c_uint32(int(self.enabled)), self.fd, len(self.names))
            self.names[r.write_index] = name
            self._words[name] = r
        return r

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Flip a tracepoint's bit, as the kernel does when a listener comes or goes."""
        self._words[name].word.value = int(enabled)

    def receive(self, reader: socket.socket) -> list[tuple[str, bytes]]:
        """What was written since the last call, as (tracepoint name, event bytes after the write index), when the
        fd is one end of a SOCK_SEQPACKET pair (see `capture_pair`) and `reader` the other."""
        out: list[tuple[str, bytes]] = []
        while True:
            try:
                data = reader.recv(1 << 17, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            (index,) = struct.unpack_from("=i", data)
            out.append((self.names[index], data[4:]))

    def close(self) -> None:
        for r in self._words.values():
            r.word.value = 0


class NoopSink:
    """No user_events: every tracepoint is registered disabled and stays so; nothing is ever written."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def register(self, name: str) -> Registered:
        return Registered(name, ctypes.c_uint32(0), -1, -1)

    def close(self) -> None:
        pass


def open_sink(path: Path | None = None, noop_if_unavailable: bool = False) -> UserEventsSink | NoopSink:
    """user_events_data opened for registering; without user_events, UserEventsUnavailable saying why and how to
    go on without events, or (`noop_if_unavailable`) a NoopSink."""
    try:
        return UserEventsSink(path)
    except UserEventsUnavailable as e:
        if noop_if_unavailable:
            return NoopSink(str(e))
        raise UserEventsUnavailable(
            e.errno or errno.ENOENT,
            f"{e} -- to run without events where user_events is missing, create the provider with "
            f"noop_if_unavailable=True",
        ) from None


def capture_pair(enabled: bool = True) -> tuple[CaptureSink, socket.socket]:
    """A CaptureSink writing into a SOCK_SEQPACKET socket pair, which keeps each writev one message, and the
    reading end. The caller closes the sink's fd (`sink.fd`) and the reader."""
    writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return CaptureSink(writer.detach(), enabled), reader
