"""EventHeader providers: tracepoints `Provider_L<level>K<keyword>[Options]`, and events written to them.

    provider = Provider("MyProvider")                    # UserEventsUnavailable here when there is no user_events
    tick = provider.event("Tick", [Field("seq", U32), Field("text", STR8)], level=4, keyword=1)
    if tick.enabled:                                     # a memory load: the kernel keeps the bit current
        tick.write((seq, text))                          # one writev: index, header + metadata, payload

An `EventSet` is one registered tracepoint (a provider, level and keyword). An `Event` is one event type bound to
a set: its eventheader, metadata extension and metadata are joined into bytes once, so a write costs the enable
check, packing the payload and a single writev. Layout of each write (eventheader.h; LinuxTracepoints' Rust
`eventheader::_internal::write_eventheader` writes the same):

    int32 write_index
    eventheader            flags 0x07 (pointer64, little-endian, extension), version, id, tag, opcode, level
    [activity extension]   uint16 16 or 32, uint16 0x8002 (activity id, another block follows), ids
    metadata extension     uint16 size, uint16 0x0001, event name NUL, fields
    payload
"""

from __future__ import annotations

import errno
import os
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dyntel.decoders.eventheader_name import NAME_MAX, parse_tracepoint_name
from dyntel.producer.fields import Field, compile_pack
from dyntel.producer.sink import NoopSink, Registered, Sink, open_sink

__all__ = ["Event", "EventSet", "EventTooLarge", "Provider", "tracepoint_name"]

FLAGS = 0x01 | 0x02 | 0x04  # pointer64, little-endian, an extension follows (x86_64 and arm64 producers)
EXTENSION_METADATA = 1
EXTENSION_ACTIVITY_ID = 2
EXTENSION_CHAIN = 0x8000
# The kernel's limit on one event (the reference builders refuse at 65535 less their headers; so does this).
MAX_EVENT = 65535 - (52 + 16)

_HEADER = struct.Struct("<BBHHBB").pack
_EXTENSION = struct.Struct("<HH").pack
_ACTIVITY = _EXTENSION(16, EXTENSION_ACTIVITY_ID | EXTENSION_CHAIN)
_ACTIVITY_RELATED = _EXTENSION(32, EXTENSION_ACTIVITY_ID | EXTENSION_CHAIN)


class EventTooLarge(ValueError):
    """An event over the size user_events takes; nothing was written."""


def tracepoint_name(provider: str, level: int, keyword: int, options: str = "") -> str:
    """`Provider_L<level>K<keyword><options>`, level and keyword in lowercase hex, checked as a decoder reads it."""
    if not provider or any(c in provider for c in " :\0"):
        raise ValueError(f"provider name {provider!r} must be non-empty, without spaces, ':' or NUL")
    if not 0 <= level <= 255 or not 0 <= keyword < 1 << 64:
        raise ValueError(f"level {level} or keyword {keyword} out of range (a byte; 64 bits)")
    name = f"{provider}_L{level:x}K{keyword:x}{options}"
    if len(name.encode("utf-8")) >= NAME_MAX:
        raise ValueError(f"tracepoint name {name!r} is {NAME_MAX} bytes or longer")
    try:
        parse_tracepoint_name(name)
    except ValueError as e:
        raise ValueError(f"{name!r} is not an EventHeader tracepoint name: {e}") from None
    return name


def _id_bytes(value: bytes | uuid.UUID) -> bytes:
    raw = value.bytes if isinstance(value, uuid.UUID) else value
    if len(raw) != 16:
        raise ValueError(f"an activity id is 16 bytes, not {len(raw)}")
    return raw


class EventSet:
    """One tracepoint of a provider (its level and keyword): the enable bit and where writes go."""

    __slots__ = ("_bit", "_index", "fd", "keyword", "level", "name", "registered")

    def __init__(self, registered: Registered, level: int, keyword: int) -> None:
        self.registered = registered
        self.name = registered.name
        self.level = level
        self.keyword = keyword
        self.fd = registered.fd
        self._index = struct.pack("=i", registered.write_index)
        # A memoryview of the enable word reads it faster than ctypes' .value.
        self._bit = memoryview(registered.word).cast("B").cast("I")

    @property
    def enabled(self) -> bool:
        """Whether anything listens (bit 0 of the enable word the kernel writes); no system call."""
        return bool(self._bit[0] & 1)

    def write_raw(self, *parts: bytes) -> bool:
        """Write one event made of `parts` (eventheader first) when enabled; False when not, or when the last
        listener left between the check and the write."""
        if not self._bit[0] & 1:
            return False
        try:
            os.writev(self.fd, (self._index, *parts))
        except OSError as e:
            if e.errno == errno.EBADF:
                return False
            raise
        return True

    def __repr__(self) -> str:
        return f"EventSet({self.name!r}, enabled={self.enabled})"


class Event:
    """One event type bound to an event set, its header and metadata built once.

    `write(values)` packs `values` (a sequence in field order, or a mapping by name) and writes the event;
    `write_payload(payload)` writes bytes packed by the caller (the OpenTelemetry exporters pack their own).
    """

    __slots__ = ("_bit", "_fd", "_head", "_header", "_index", "_meta_block", "_pack", "event_set", "fields",
                 "metadata", "name")

    def __init__(self, event_set: EventSet, name: str, fields: Sequence[Field] = (), *, id: int = 0,
                 version: int = 0, tag: int = 0, opcode: int = 0, metadata: bytes | None = None) -> None:
        if "\0" in name:
            raise ValueError(f"event name {name!r} contains a NUL")
        self.event_set = event_set
        self.name = name
        self.fields = tuple(fields)
        if metadata is None:
            metadata = name.encode("utf-8") + b"\0" + b"".join(f.metadata() for f in self.fields)
        if len(metadata) > MAX_EVENT:
            raise EventTooLarge(f"metadata of {name!r} is {len(metadata)} bytes; user_events takes {MAX_EVENT}")
        self.metadata = metadata
        self._header = _HEADER(FLAGS, version, id, tag, opcode, event_set.level)
        self._meta_block = _EXTENSION(len(metadata), EXTENSION_METADATA) + metadata
        self._head = self._header + self._meta_block
        self._pack = compile_pack(self.fields)
        self._bit = event_set._bit
        self._fd = event_set.fd
        self._index = event_set._index

    @property
    def enabled(self) -> bool:
        return bool(self._bit[0] & 1)

    def write(self, values: Any = (), activity_id: bytes | uuid.UUID | None = None,
              related_id: bytes | uuid.UUID | None = None) -> bool:
        """Pack and write one event; False, having packed nothing, when nobody listens."""
        if not self._bit[0] & 1:
            return False
        return self.write_payload(self._pack(values), activity_id, related_id)

    def write_payload(self, payload: bytes, activity_id: bytes | uuid.UUID | None = None,
                      related_id: bytes | uuid.UUID | None = None) -> bool:
        if not self._bit[0] & 1:
            return False
        if len(payload) + len(self._head) > MAX_EVENT:
            raise EventTooLarge(f"{self.name}: {len(payload) + len(self._head)} bytes; user_events takes "
                                f"{MAX_EVENT}")
        if activity_id is None:
            if related_id is not None:
                raise ValueError("a related activity id needs an activity id")
            iov: tuple[bytes, ...] = (self._index, self._head, payload)
        elif related_id is None:
            iov = (self._index, self._header, _ACTIVITY + _id_bytes(activity_id), self._meta_block, payload)
        else:
            iov = (self._index, self._header, _ACTIVITY_RELATED + _id_bytes(activity_id) + _id_bytes(related_id),
                   self._meta_block, payload)
        try:
            os.writev(self._fd, iov)
        except OSError as e:
            if e.errno == errno.EBADF:
                return False
            raise
        return True

    def pack(self, values: Any) -> bytes:
        return self._pack(values)


class Provider:
    """An EventHeader provider: its tracepoints, registered as they are asked for, and unregistered on close.

    `sink` is where events go (user_events by default). Without user_events this raises UserEventsUnavailable,
    unless `noop_if_unavailable`: then every event set is disabled for good and writes cost one bit test.
    `options` is appended to every tracepoint name (e.g. "Gmygroup" for a provider group).
    """

    def __init__(self, name: str, *, options: str = "", sink: Sink | None = None,
                 noop_if_unavailable: bool = False, user_events_data: Path | None = None) -> None:
        tracepoint_name(name, 0, 0, options)  # checks the name before anything is opened
        self.name = name
        self.options = options
        self.sink: Sink = sink if sink is not None else open_sink(user_events_data, noop_if_unavailable)
        self._sets: dict[tuple[int, int], EventSet] = {}
        self.closed = False

    @property
    def is_noop(self) -> bool:
        return isinstance(self.sink, NoopSink)

    def register_set(self, level: int, keyword: int) -> EventSet:
        """The tracepoint for `level` and `keyword`, registered on first use."""
        key = (level, keyword)
        s = self._sets.get(key)
        if s is None:
            if self.closed:
                raise ValueError(f"provider {self.name} is closed")
            s = EventSet(self.sink.register(tracepoint_name(self.name, level, keyword, self.options)), level, keyword)
            self._sets[key] = s
        return s

    def event(self, name: str, fields: Sequence[Field] = (), *, level: int = 4, keyword: int = 1, id: int = 0,
              version: int = 0, tag: int = 0, opcode: int = 0) -> Event:
        """An event type on the tracepoint of `level` and `keyword` (registered now if it is not yet)."""
        return Event(self.register_set(level, keyword), name, fields, id=id, version=version, tag=tag,
                     opcode=opcode)

    @property
    def event_sets(self) -> list[EventSet]:
        return list(self._sets.values())

    def close(self) -> None:
        """Unregister every tracepoint (DIAG_IOCSUNREG) and let go of user_events_data."""
        if not self.closed:
            self.closed = True
            self.sink.close()
            # Unregistered words are the process's own again; zero them so that a late write is a no-op.
            for s in self._sets.values():
                s.registered.word.value = 0

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
