"""perf.data recordings, file mode and pipe mode, as a `Source` of tracepoint and user_events events.

File mode (`perf record -o FILE`): the header locates the attrs, the data section and the feature sections; the
file is mapped into memory and the data section is read in place. Pipe mode (`perf record -o -`): a 16-byte header,
then the same metadata as records in the stream (HEADER_ATTR, HEADER_FEATURE, HEADER_TRACING_DATA, EVENT_UPDATE,
FINISHED_INIT) ahead of the samples; the stream is read front to back in large chunks, never seeking, so standard
input works. Big-endian recordings are read with every integer byte-swapped.

Events come out as perf-decode (LinuxTracepoints' reference decoder) prints them: only PERF_RECORD_SAMPLE becomes an
event; the samples of each round (up to a FINISHED_ROUND) are sorted by time, keeping file order for equal times,
and then yielded. (`order="file"` keeps file order instead, which is what the reference library's own test prints.)
Every other record is counted in `stats.skipped` by its type name. A record that cannot be read
(a size under 8 bytes, a record running past the end, a sample whose fields overrun it) is a counted problem with
its byte offset, and reading goes on from the next record, or from the next place that looks like a record boundary
when the size cannot be trusted.

Call chains are kept as perf stores them: a tuple of u64 with the PERF_CONTEXT_* markers (kernel, user, ...) among
the addresses, so that a reader can tell which addresses are kernel and which are user space
(`dyntel.sources.perf.abi.CONTEXT_MAX` and above are markers).

Time: with HEADER_CLOCK_DATA (what `perf record -k CLOCK_...` writes) the clock's offset to the Unix epoch is
known, and `Event.time` is nanoseconds since the epoch (`time_is_wall=True`). Otherwise it is perf's raw clock
(`time_is_wall=False`), as perf script shows it. This is the reference's rule; HEADER_CLOCKID alone does not say
where the clock started (and despite its name holds the clock's resolution).
"""

from __future__ import annotations

import contextlib
import struct
import sys
from collections.abc import Callable, Generator, Sequence
from typing import Any, BinaryIO

from dyntel.errors import DecodeError, defect
from dyntel.event import (
    EMPTY_SCHEMA,
    SOURCE_FILE,
    SOURCE_TRACEPOINT,
    SOURCE_USER_EVENTS,
    ArrayKind,
    Encoding,
    Event,
    FieldInfo,
    Format,
    Schema,
)
from dyntel.sources import FieldFilter, SourceStats, Want
from dyntel.sources.perf import abi
from dyntel.sources.perf.header import (
    Attr,
    Features,
    FileHeader,
    HeaderError,
    byte_order,
    feature_sections,
    parse_attrs_section,
    parse_event_update_name,
    parse_file_header,
    parse_header_attr_record,
    parse_pipe_header,
)
from dyntel.sources.perf.raw_tests import WALKABLE, raw_alternatives
from dyntel.sources.perf.records import header_time as make_header_time
from dyntel.sources.perf.records import refill, resync, whole_file
from dyntel.sources.perf.sample import Recipe, SampleError, SampleParser, compile_sample_parser, eventheader_builder
from dyntel.sources.perf.tracing_data import TracingData, parse_tracing_data
from dyntel.sources.perf.zstd import (
    COMPRESSED_TYPES,
    ExpandingReader,
    Expansion,
    announces_compression,
    expand_buffer,
)

# How samples are ordered. "round" is perf-decode's order: each round's samples (up to a FINISHED_ROUND) sorted by
# time, equal times in file order. "file" is the order of the records in the file, which is what the reference
# library's own test (decode-perf-utest) prints, and so what the corpus' perf.data.linux.json holds.
DEFAULT_ORDER = "file"

CHUNK = 4 << 20  # pipe-mode read size: large enough that the per-read cost vanishes, small enough to stream

# Events with no tracepoint format still show their payload, as the reference does: one hex-bytes field.
RAW_SCHEMA = Schema((FieldInfo("raw", Encoding.BINARY_LENGTH16_CHAR8, Format.HEX_BYTES),))

# Parsed tracefs formats by (system, text, long size): the same formats come back in every recording of a machine,
# and parsing one (and compiling its decoder, which the format keeps) costs far more than reading a small file.
_FORMATS: dict[tuple[str, str, int], Any] = {}
_MAX_FORMATS = 4096

# sources.perf.live takes the native pre-filter's raw tests from here (they are defined in sources.perf.raw_tests).
__all__ = ["DEFAULT_ORDER", "RAW_SCHEMA", "PerfDataSource", "open_source", "raw_alternatives", "sniff"]
_WALKABLE = WALKABLE

_OFFSET_MASK = (1 << 48) - 1  # a sample's file offset, as packed in the sort keys

_SAMPLE_SKIPS = ("SAMPLE without a matching attr", "SAMPLE with an unknown sample id", "filtered")

# What the record loop does after a record that is not a complete sample (PerfDataSource._other_record).
_NEXT, _MORE, _ROUND_END, _NEW_METADATA = range(4)

_METADATA_RECORDS = frozenset({abi.RECORD_HEADER_ATTR, abi.RECORD_HEADER_TRACING_DATA, abi.RECORD_HEADER_FEATURE,
                               abi.RECORD_EVENT_UPDATE})


def sniff(head: bytes, path: str) -> bool:
    return byte_order(head) is not None


def open_source(path: str, stream: BinaryIO, order: str | None = None) -> PerfDataSource:
    return PerfDataSource(path, stream, order)


def _raw_values(raw: bytes | None) -> tuple[bytes]:
    return (b"" if raw is None else raw,)


class PerfDataSource:
    """One perf.data recording. Metadata (attrs, formats, clock) is filled in as `events()` reads the file."""

    def __init__(self, name: str, stream: BinaryIO, order: str | None = None) -> None:
        self.name = name
        self.order = order or DEFAULT_ORDER  # "round": time order within each round, as perf-decode; "file"
        self.stats = SourceStats()
        # EventHeader field tags show in the JSON keys ("Struct20;tag=0xBEEF"), as perf-decode 1.4 and the format
        # authors' Rust decoder (tracepoint_decode) print them. The corpus's perf.data.linux.json, made by an older
        # perf-decode, has none; its .dat output has them.
        self.field_tags = True
        self._stream = stream
        self.header: FileHeader | None = None
        # The whole recording (mapped file or bytes) and its data section's bounds, once `events()` has read the
        # metadata of a recording held whole; None for a pipe read as a stream. For native fast paths that write
        # samples straight from the buffer; valid until the events iterator is exhausted or closed.
        self.buffer: Any = None
        self.data_range: tuple[int, int] | None = None
        self.big_endian = False
        self.attrs: list[Attr] = []
        self.features = Features()
        self.tracing: TracingData | None = None
        self.formats: dict[int, Any] = {}  # tracepoint id -> TracepointFormat
        self._by_id: dict[int, Attr] = {}
        self._update_names: dict[int, str] = {}  # sample id -> name, from pipe mode's EVENT_UPDATE records
        self._parsers: dict[int, SampleParser] = {}  # sample id -> compiled parser, rebuilt when metadata changes
        self._attr_parsers: dict[int, SampleParser] = {}  # id(attr) -> compiled parser
        self._common_type: tuple[int, int] | None = None  # (offset, size) of common_type in the first format
        self._warned: set[str] = set()
        self._base = 0  # file offset of buf[0] of the window being read (pipe mode reads in chunks)
        self._eventheader: Any = None
        # zstd recordings (perf record -z): the record loops read the expanded stream; problems found in it are
        # located back in the file (dyntel.sources.perf.zstd). Offsets from _expanded_from on are expanded ones.
        self._expansion: Expansion | None = None
        self._expanded_from = 0
        # The pre-decode filter (see dyntel.sources.Want); set it before calling events(). Samples of a tracefs
        # event it does not want are dropped by their sample id before anything else is read from them;
        # EventHeader samples once their metadata names the event, before the payload is decoded.
        self.want: Want | None = None
        # Field tests for tracefs events (see dyntel.sources.FieldFilter); applied by the native pre-filter only.
        self.field_filter: FieldFilter | None = None
        self.native_filter = True  # use dyntel._prefilter where it applies (False: the record loop, to compare)
        self._attr_wanted: dict[int, bool] = {}  # id(attr) -> want's answer for its tracefs samples
        self._max_filtered_time = 0  # latest raw time among the samples the filter dropped
        self.position = 0  # file offset read up to (updated once a round), for progress
        self.rounds = 0  # FINISHED_ROUNDs read; a consumer sees it change between rounds' samples

    # ----------------------------------------------------------------------------------------------------------
    # Reading

    def events(self) -> Generator[Event, None, None]:
        """The samples as Events: sorted by time within each round (order "round"), or in file order ("file").

        The file's header and metadata sections are read by this call; the records, as the iterator is consumed.
        """
        # Standard input stays open: it is not ours, and `dyntel decode - -` would find it closed.
        closers: list[Callable[[], None]] = [] if self._stream is sys.stdin.buffer else [self._stream.close]
        plan: tuple[Any, int, int, Callable[[int], bytes] | None, int] | None = None
        try:
            buf = whole_file(self._stream, closers)
            plan = self._prepare_buffer(buf) if buf is not None else self._prepare_stream()
        finally:
            if plan is None:
                _close_all(closers)
        if plan is None:
            return _no_events()
        if self.want is not None and self.native_filter:
            scanned = self._native_scan(*plan)
            if scanned is not None:
                return self._scanned_loop(plan[0], scanned, closers)
        return self._loop(*plan, closers)

    def _sample_failed(self, e: Exception, offset: int) -> None:
        """Count a sample that could not become an Event, at the sample's offset in the file. Called on the error
        path only, so both record loops share it without a call per sample."""
        if isinstance(e, SampleError):
            self.stats.problem(offset + e.offset, e.message, "sample")
        elif isinstance(e, DecodeError):
            self.stats.problem(offset, f"SAMPLE not decoded: {e.message}", e.reason or "malformed")
        else:
            defect(e)
            self.stats.problem(offset, f"SAMPLE could not be decoded: {type(e).__name__}: {e}", "defect")

    def _problem(self, offset: int, message: str) -> None:
        expansion = self._expansion
        if expansion is not None and offset >= self._expanded_from:
            offset, where = expansion.locate(offset)
            message += where
        self.stats.problem(offset, message)


    def _prepare_buffer(self, buf: Any) -> tuple[Any, int, int, None, int] | None:
        """Header and metadata of a recording held whole; the data section's bounds, or None when unreadable."""
        size = len(buf)
        try:
            hdr = parse_pipe_header(bytes(buf[:16]))
        except HeaderError as e:
            self._problem(e.offset, e.message if size >= 16 else "file ends inside the 16-byte perf header")
            return None
        self.big_endian = hdr.big_endian
        self.buffer = buf
        if hdr.pipe:
            self.header = hdr
            if announces_compression(buf, 16, size, hdr.big_endian):
                expanded, self._expansion = expand_buffer(buf, 16, size, self.big_endian, self._problem, 16)
                self._expanded_from = 16
                expanded = bytes(buf[:16]) + expanded  # offsets stay those of a stream that starts with its header
                self.buffer = expanded
                self.data_range = (16, len(expanded))
                return expanded, 16, len(expanded), None, 0
            self.data_range = (16, size)
            return buf, 16, size, None, 0
        try:
            hdr = parse_file_header(bytes(buf[: abi.FILE_HEADER_SIZE]), size)
        except HeaderError as e:
            self._problem(e.offset, e.message)
            return None
        self.header = hdr
        self._load_file_metadata(buf, hdr, size)
        start, end = hdr.data_offset, hdr.data_offset + hdr.data_size
        if start > size:
            self._problem(40, f"data section starts at byte {start}, past the end of the file ({size} bytes)")
            return None
        if end > size:
            self._problem(40, f"data section ({hdr.data_size} bytes at {start}) runs past the end of the file "
                              f"({size} bytes): the recording is truncated")
            end = size
        if abi.HEADER_COMPRESSED in self.features.raw:
            expanded, self._expansion = expand_buffer(buf, start, end, self.big_endian, self._problem)
            self._expanded_from = 0  # every offset the loops report from now on is in `expanded`
            self.buffer = expanded
            self.data_range = (0, len(expanded))
            return expanded, 0, len(expanded), None, 0
        self.data_range = (start, end)
        return buf, start, end, None, 0

    def _load_file_metadata(self, buf: Any, hdr: FileHeader, size: int) -> None:
        try:
            attrs = parse_attrs_section(buf, hdr, size)
        except HeaderError as e:
            self._problem(e.offset, e.message)
            attrs = []
        for attr in attrs:
            self._add_attr(attr)
        features, errors = feature_sections(buf, hdr, size)
        for err in errors:
            self._problem(err.offset, err.message)
        for bit, blob in features.items():
            self._add_feature(bit, blob)

    def _prepare_stream(self) -> tuple[Any, int, int, Callable[[int], bytes] | None, int] | None:
        """The 16-byte header of a stream; a pipe-mode stream is then read record by record, in chunks."""
        stream = self._stream
        read: Callable[[int], bytes] = getattr(stream, "read1", None) or stream.read
        head = b""
        while len(head) < 16:
            more = read(16 - len(head))
            if not more:
                break
            head += more
        try:
            hdr = parse_pipe_header(head)
        except HeaderError as e:
            self._problem(e.offset, e.message if len(head) >= 16 else "stream ends inside the 16-byte perf header")
            return None
        self.big_endian = hdr.big_endian
        self.header = hdr
        if not hdr.pipe:
            # A file-mode recording on a pipe: its sections are found by offset, so it has to be read whole.
            rest = [head]
            while chunk := stream.read(CHUNK):
                rest.append(chunk)
            return self._prepare_buffer(b"".join(rest))
        # Any pipe may carry COMPRESSED records (perf record -z -o -): read through the expanding reader.
        reader = ExpandingReader(read, hdr.big_endian, self._problem, 16, CHUNK)
        self._expansion = reader.expansion
        self._expanded_from = 16
        return b"", 0, 0, reader.read, 16

    # ----------------------------------------------------------------------------------------------------------
    # The record loop

    def _loop(self, buf: Any, pos: int, end: int, read: Callable[[int], bytes] | None, base: int,
              closers: list[Callable[[], None]]) -> Generator[Event, None, None]:
        """Read records in buf[pos:end]; with `read`, refill from it when a record is incomplete (pipe mode).

        This is the hot loop, in two passes per round. The first walks the records and, for each sample, keeps
        one integer: its time, its offset in the round and its size, packed so that sorting the integers sorts
        the samples by time and, for equal times, by file order. At the round's end the integers are sorted and
        the second pass turns each sample into an Event just before yielding it. Building Events only as they
        are consumed keeps few of them alive at once, which matters more than it seems: a round can hold tens of
        thousands of samples, and that many live objects make every garbage collection pass slow.

        In file order no sorting is needed and samples become Events as they are read.

        It stays one function on purpose: what happens to each sample (the drop test, the sort key, the parser look-up
        and call) is written out in place, twice (file order and the second pass), because a function call per
        sample would cost more than the rest of the loop's own work on it. Records other than samples go to
        `_other_record`, and the counting at the end to `_count_read`.
        """
        be = int(self.big_endian)
        header = abi.RECORD_HEADER[be].unpack_from
        u32 = abi.U32[be].unpack_from
        u64 = abi.U64[be].unpack_from
        counts: dict[int, int] = {}
        keys: list[int] = []
        add_key = keys.append
        parsers = self._parsers
        problem = self._problem
        failed = 0  # samples that were problems
        yielded = 0
        self._base = base
        id_off, default, time_off = self._dispatch()
        drop = self._dropped_ids() if id_off else frozenset()  # sample ids of unwanted events
        filtered = 0
        max_dropped = 0  # their latest time, so that a replay can end where the recording ends
        # Samples without a time keep file order (the reference sorts them all as time 0).
        sort = self.order == "round" and time_off > 0
        # The record header and, for a sample, its time, in one unpack (for other records `t` means nothing).
        header_time = make_header_time(be, time_off)
        eof = read is None
        flush = False  # a FINISHED_ROUND ended the first pass over a round
        try:
            while True:
                while end - pos >= 8:
                    try:
                        rtype, size, t = header_time(buf, pos)
                    except struct.error:  # a short record at the very end of the buffer
                        rtype, size = header(buf, pos)
                        t = 0
                    nxt = pos + size
                    if rtype == 9 and nxt <= end and size >= 8:
                        # Unwanted samples cost the header read and this look-up: no sort key, no parser.
                        if drop and id_off + 8 <= size and u64(buf, pos + id_off)[0] in drop:
                            filtered += 1
                            if t > max_dropped:
                                max_dropped = t
                            pos = nxt
                            continue
                        if sort:
                            add_key(t << 64 | (base + pos) << 16 | size)
                            pos = nxt
                            continue
                        # file order: straight to an Event
                        if id_off:
                            if id_off + 8 > size:
                                problem(base + pos, f"SAMPLE of {size} bytes has no room for its sample id")
                                failed += 1
                                pos = nxt
                                continue
                            ident = u64(buf, pos + id_off)[0]
                            parser = parsers.get(ident)
                            if parser is None:
                                parser = self._parser_for_id(ident)
                        else:
                            parser = default
                        try:
                            event = parser(buf, pos, nxt)
                        except Exception as e:  # a sample failing on bad bytes must not end the file
                            self._sample_failed(e, base + pos)
                            failed += 1
                        else:
                            if event is not None:
                                yielded += 1
                                yield event
                        pos = nxt
                        continue

                    # Not a complete sample: everything else, at a slower pace.
                    pos, then = self._other_record(buf, pos, end, rtype, size, eof, header, u32, u64, counts,
                                                   bool(keys))
                    if then == _NEXT:
                        continue
                    if then == _NEW_METADATA:
                        id_off, default, time_off = self._dispatch()
                        drop = self._dropped_ids() if id_off else frozenset()
                        sort = self.order == "round" and time_off > 0
                        header_time = make_header_time(be, time_off)
                        continue
                    flush = then == _ROUND_END
                    break

                if not flush and eof and pos < end:
                    self._report_truncated(buf, pos, end, header)
                    pos = end
                if keys and (flush or eof):
                    # The second pass over a round, inline in this generator (a nested one costs per event).
                    keys.sort()
                    for k in keys:
                        p = (k >> 16 & _OFFSET_MASK) - base
                        q = p + (k & 0xFFFF)
                        if id_off:
                            if id_off + 8 > q - p:
                                problem(base + p, f"SAMPLE of {q - p} bytes has no room for its sample id")
                                failed += 1
                                continue
                            ident = u64(buf, p + id_off)[0]
                            parser = parsers.get(ident)
                            if parser is None:
                                parser = self._parser_for_id(ident)
                        else:
                            parser = default
                        try:
                            event = parser(buf, p, q)
                        except Exception as err:  # a sample failing on bad bytes must not end the file
                            self._sample_failed(err, base + p)
                            failed += 1
                        else:
                            if event is not None:
                                yielded += 1
                                yield event
                    keys.clear()
                if flush:
                    flush = False
                    continue
                if eof:
                    break
                # Pipe mode: keep the unread tail (and this round's samples) and append what the stream has.
                assert read is not None
                keep = min(pos, (keys[0] >> 16 & _OFFSET_MASK) - base) if keys else pos
                filled = refill(read, bytes(buf[keep:end]), pos - keep, header, u32, u64, CHUNK)
                if filled is None:
                    eof = True
                    continue
                buf, eof = filled
                base += keep
                pos -= keep
                end = len(buf)
                self._base = base
        finally:
            self.position = base + pos
            self._count_read(counts, yielded, len(keys) + failed, filtered, max_dropped if time_off else 0)
            _close_all(closers)

    def _other_record(self, buf: Any, pos: int, end: int, rtype: int, size: int, eof: bool,
                      header: Callable[..., tuple[int, int]], u32: Callable[..., tuple[int]],
                      u64: Callable[..., tuple[int]], counts: dict[int, int], round_has_samples: bool
                      ) -> tuple[int, int]:
        """A record at buf[pos:] that is not a complete sample: metadata, a round's end, another record type
        (counted in `counts`), a bad or an incomplete one. (where the record loop goes on, what it does next:
        _NEXT, _MORE (more data first, or the end), _ROUND_END (sort and yield the round), _NEW_METADATA)."""
        base = self._base
        problem = self._problem
        nxt = pos + size
        if size < 8:
            found = resync(buf, pos, end, header, eof)
            if found is None and not eof:
                return pos, _MORE  # look again with more of the stream
            bad = f"record of type {rtype} has size {size}, less than its 8-byte header"
            if found is None:
                problem(base + pos, bad + "; no record boundary follows, the rest is not read")
                return end, _MORE
            problem(base + pos, f"{bad}; skipped {found - pos} bytes to the next record boundary")
            return found, _NEXT
        if nxt > end:
            return pos, _MORE  # incomplete: refill, or report the truncation
        extra = 0
        if rtype == abi.RECORD_HEADER_TRACING_DATA and size >= 12:
            extra = u32(buf, pos + 8)[0]  # the tracing data follows the record
        elif rtype == abi.RECORD_AUXTRACE and size >= 16:
            extra = u64(buf, pos + 8)[0]  # so does the AUX area data
        if nxt + extra > end:
            return pos, _MORE  # incomplete: refill, or report the truncation
        counts[rtype] = counts.get(rtype, 0) + 1
        if rtype in COMPRESSED_TYPES:
            # Expanded before the record loop when the recording says it is compressed (HEADER_COMPRESSED in file
            # mode; any pipe). One that was not announced is lost, and each is counted.
            problem(base + pos, "COMPRESSED (zstd) record in a recording whose header does not say it is "
                                "compressed (HEADER_COMPRESSED); its records are skipped")
        if rtype == abi.RECORD_FINISHED_ROUND:
            self.position = base + nxt
            self.rounds += 1
            if round_has_samples:
                return nxt, _ROUND_END
        elif rtype in _METADATA_RECORDS:
            self._metadata_record(rtype, buf, pos, nxt, extra)
            return nxt + extra, _NEW_METADATA
        return nxt + extra, _NEXT

    def _count_read(self, counts: dict[int, int], yielded: int, other_samples: int, filtered: int,
                    max_dropped: int) -> None:
        """Add what a record loop read to `stats`: the samples yielded, the others it read (kept for sorting when
        reading stopped, or problems), the filtered ones (and their latest time), and the other records by type."""
        stats = self.stats
        if filtered:
            stats.skipped["filtered"] = stats.skipped.get("filtered", 0) + filtered
            if max_dropped > self._max_filtered_time:
                self._max_filtered_time = max_dropped
        stats.events += yielded
        samples = yielded + other_samples + sum(stats.skipped.get(r, 0) for r in _SAMPLE_SKIPS)
        stats.records += samples + sum(counts.values())
        skipped = stats.skipped
        for rtype, n in counts.items():
            if n:
                name = abi.record_name(rtype)
                skipped[name] = skipped.get(name, 0) + n

    def _report_truncated(self, buf: Any, pos: int, end: int, header: Callable[..., tuple[int, int]]) -> None:
        base = self._base
        left = end - pos
        if left < 8:
            self._problem(base + pos, f"data ends {left} bytes into a record header: the recording is truncated")
            return
        rtype, size = header(buf, pos)
        self._problem(base + pos, f"{abi.record_name(rtype)} record of {size} bytes runs past the end of the data "
                                  f"({left} bytes left): the recording is truncated")

    # ----------------------------------------------------------------------------------------------------------
    # Metadata

    def _metadata_record(self, rtype: int, buf: Any, pos: int, end: int, extra: int) -> None:
        be = self.big_endian
        base = self._base
        if rtype == abi.RECORD_HEADER_ATTR:
            try:
                self._add_attr(parse_header_attr_record(buf, pos, end, be))
            except HeaderError as e:
                self._problem(base + e.offset, e.message)
        elif rtype == abi.RECORD_HEADER_TRACING_DATA:
            if self.tracing is None:
                self._set_tracing_data(bytes(buf[end : end + extra]), base + end)
        elif rtype == abi.RECORD_HEADER_FEATURE:
            if end - pos >= 16:
                bit = abi.U64[int(be)].unpack_from(buf, pos + 8)[0]
                if bit < abi.HEADER_FEATURE_BITS:
                    self._add_feature(bit, bytes(buf[pos + 16 : end]), base + pos + 16)
        elif rtype == abi.RECORD_EVENT_UPDATE:
            update = parse_event_update_name(buf, pos, end, be)
            if update is not None:
                ident, name = update
                self._update_names[ident] = name
                attr = self._by_id.get(ident)
                if attr is not None and not attr.name:
                    attr.name = name
        self._metadata_changed()

    def _add_attr(self, attr: Attr) -> None:
        self.attrs.append(attr)
        for ident in attr.ids:
            self._by_id[ident] = attr
            if not attr.name and ident in self._update_names:
                attr.name = self._update_names[ident]
        self._metadata_changed()

    def _add_feature(self, bit: int, blob: bytes, offset: int = 0) -> None:
        self.features.add(bit, blob, self.big_endian)
        if bit == abi.HEADER_TRACING_DATA and self.tracing is None:
            self._set_tracing_data(blob, offset)
        elif bit == abi.HEADER_EVENT_DESC:
            self._apply_event_desc()
        self._metadata_changed()

    def _apply_event_desc(self) -> None:
        """Names (and any attrs not seen yet) from HEADER_EVENT_DESC, matched to the attrs by sample id."""
        descs = self.features.event_desc
        for i, desc in enumerate(descs):
            matched = False
            for ident in desc.ids:
                attr = self._by_id.get(ident)
                if attr is None:
                    self._by_id[ident] = desc.attr
                    if desc.attr not in self.attrs:
                        self.attrs.append(desc.attr)
                else:
                    attr.name = desc.name
                matched = True
            if not matched and i < len(self.attrs) and not self.attrs[i].name:
                # No ids (a one-event recording without PERF_SAMPLE_ID): the descriptions follow the attrs' order.
                self.attrs[i].name = desc.name

    def _set_tracing_data(self, blob: bytes, offset: int) -> None:
        td = parse_tracing_data(blob)
        self.tracing = td
        if td.error is not None:
            self._problem(offset + td.error_offset, td.error)
        try:
            from dyntel.decoders.tracefs_format import parse_format
        except ImportError:
            return
        for ev in td.events:
            cache_key = (ev.system, ev.text, td.long_size)
            try:
                fmt = _FORMATS.get(cache_key)
                if fmt is None:
                    fmt = parse_format(ev.text, ev.system, td.long_size, strict=False)
                    if len(_FORMATS) >= _MAX_FORMATS:
                        _FORMATS.clear()
                    _FORMATS[cache_key] = fmt
            except DecodeError as e:
                self._warn_once(f"format of {ev.system}: {e.message}", offset)
                continue
            except Exception as e:  # a bad format loses its event's fields, not the file
                defect(e)
                self._warn_once(f"format of {ev.system} could not be read: {type(e).__name__}: {e}", offset)
                continue
            common = self._common_type_of(fmt)
            if common is None:
                continue
            if self._common_type is None:
                self._common_type = common
            elif common != self._common_type:
                continue  # the reference drops formats whose common_type is not where the first one's is
            self.formats.setdefault(fmt.id, fmt)

    @staticmethod
    def _common_type_of(fmt: Any) -> tuple[int, int] | None:

        for f in fmt.fields[: fmt.common_field_count]:
            if f.name == "common_type":
                if f.offset < 128 and f.size in (1, 2, 4) and f.array == ArrayKind.NONE:
                    return (f.offset, f.size)
                return None
        return None

    def _warn_once(self, message: str, offset: int) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._problem(offset, message)

    def _metadata_changed(self) -> None:
        self._parsers.clear()
        self._attr_parsers.clear()
        self._attr_wanted.clear()

    # ----------------------------------------------------------------------------------------------------------
    # Sample parsers

    def _dispatch(self) -> tuple[int, SampleParser, int]:
        """(offset of the sample id in a SAMPLE, or 0 when samples carry none; the parser to use then; offset of
        the sample time, or 0 when samples carry none)."""
        attrs = self.attrs
        if not attrs:
            return 0, self._no_attr, 0
        first = attrs[0]
        if len({(a.sample_id_offset, a.sample_time_offset) for a in attrs}) > 1:
            # perf itself refuses such a file; go on with the first attr's layout
            self._warn_once("the attrs disagree on where a sample's id or time is; using the first attr's", 0)
        time_off = first.sample_time_offset or 0
        id_off = first.sample_id_offset
        if id_off is None:
            return 0, self._parser_for_attr(first), time_off
        return id_off, self._no_attr, time_off

    def _no_attr(self, buf: Any, pos: int, end: int) -> None:
        self.stats.skip("SAMPLE without a matching attr")

    def _parser_for_id(self, ident: int) -> SampleParser:
        attr = self._by_id.get(ident)
        if attr is None:
            if len(self.attrs) == 1:
                attr = self.attrs[0]  # as perf does: with one event, every sample is that event's
            else:
                self._parsers[ident] = self._unknown_id
                return self._unknown_id
        parser = self._parser_for_attr(attr)
        self._parsers[ident] = parser
        return parser

    def _unknown_id(self, buf: Any, pos: int, end: int) -> None:
        self.stats.skip("SAMPLE with an unknown sample id")

    def _parser_for_attr(self, attr: Attr) -> SampleParser:
        parser = self._attr_parsers.get(id(attr))
        if parser is None:
            if self.want is not None and not self._wants_attr(attr):
                parser = self._filtered
            else:
                parser = compile_sample_parser(attr, self.big_endian, self._recipe(attr))
            self._attr_parsers[id(attr)] = parser
        return parser

    # ----------------------------------------------------------------------------------------------------------
    # The pre-decode filter

    def _wants_attr(self, attr: Attr) -> bool:
        """Whether `want` takes the tracefs samples of `attr`. EventHeader attrs are always taken here: their
        events are named by each sample's metadata, and the builder asks per event type."""
        wanted = self._attr_wanted.get(id(attr))
        if wanted is None:
            fmt = self.formats.get(attr.config & 0xFFFFFFFF) if attr.type == abi.TYPE_TRACEPOINT else None
            if fmt is not None and fmt.kind == "eventheader" and attr.sample_type & abi.SAMPLE_RAW:
                wanted = True
            else:
                provider, name = self.event_name(attr)
                wanted = self.want is None or bool(self.want(provider, name, None))
            self._attr_wanted[id(attr)] = wanted
        return wanted

    def _dropped_ids(self) -> frozenset[int]:
        """The sample ids of attrs whose samples `want` does not take (empty without a filter)."""
        if self.want is None:
            return frozenset()
        return frozenset(ident for ident, attr in self._by_id.items() if not self._wants_attr(attr))

    def _filtered(self, buf: Any, pos: int, end: int) -> None:
        self.stats.skip("filtered")

    @property
    def end_time(self) -> int | None:
        """The latest sample time of the recording as far as it has been read, filtered samples included, in
        `Event.time`'s units; None when unknown. (HEADER_SAMPLE_TIME gives it for file-mode recordings.)"""
        clock = self.features.clock
        offset = clock.offset_ns if clock is not None else 0
        ends = []
        last = self.features.raw.get(abi.HEADER_SAMPLE_TIME)
        if last is not None and len(last) >= 16:
            t = abi.U64[int(self.big_endian)].unpack_from(last, 8)[0]
            if t:
                ends.append(t + offset)
        if self._max_filtered_time:
            ends.append(self._max_filtered_time + offset)
        return max(ends) if ends else None

    # ----------------------------------------------------------------------------------------------------------
    # The native pre-filter: the whole data section scanned in C (dyntel._prefilter), so that samples no rule
    # wants cost no Python at all; the kept ones are decoded below exactly as the record loop decodes them.

    def _native_scan(self, buf: Any, start: int, end: int, read: Callable[[int], bytes] | None,
                     base: int) -> dict[str, Any] | None:
        """The C module's verdict on every sample, or None where it does not apply (no module, pipe mode,
        big-endian, no sample ids) or declines (anything irregular, which the record loop then reports)."""
        if read is not None or base or self.big_endian or not self.attrs:
            # No attrs yet: pipe mode held whole (its attrs are records in the stream, read by the record loop)
            # or a file without any; the record loop reports what there is.
            return None
        try:
            from dyntel import _prefilter  # type: ignore[attr-defined]
        except ImportError:
            return None
        id_off, _default, time_off = self._dispatch()
        plan_ids: dict[int, int] = {}
        plans: list[Any] = []
        if not id_off:
            # Samples without ids are all the first attr's (as the record loop reads them).
            plans.append(self._native_plan(self.attrs[0]))
        index: dict[int, int] = {}
        for ident, attr in self._by_id.items() if id_off else ():
            i = index.get(id(attr))
            if i is None:
                i = index[id(attr)] = len(plans)
                plans.append(self._native_plan(attr))
            plan_ids[ident] = i
        scanned: dict[str, Any] | None = _prefilter.scan(
            buffer=buf, start=start, end=end, id_offset=id_off, time_offset=time_off, plan_ids=plan_ids,
            plans=plans, sort=self.order == "round" and time_off > 0)
        return scanned

    def _native_plan(self, attr: Attr) -> tuple[int, tuple[tuple[tuple[int, int, bool, int, tuple[int, ...]], ...],
                                                         ...]] | None:
        """None: drop every sample of `attr`; else (sample_type, alternatives of raw field tests)."""
        if not self._wants_attr(attr):
            return None
        keep_all = (attr.sample_type, ())
        if self.field_filter is None or not attr.sample_type & abi.SAMPLE_RAW or attr.sample_type & ~WALKABLE:
            return keep_all
        fmt = self.formats.get(attr.config & 0xFFFFFFFF) if attr.type == abi.TYPE_TRACEPOINT else None
        if fmt is None or fmt.kind != "tracefs":
            return keep_all
        provider, name = self.event_name(attr)
        compiled = raw_alternatives(fmt, self.field_filter(provider, name))
        return keep_all if compiled is None else (attr.sample_type, compiled)

    def _scanned_loop(self, buf: Any, scanned: dict[str, Any],
                      closers: list[Callable[[], None]]) -> Generator[Event, None, None]:
        """Decode the samples the C scan kept, round by round, as the record loop's second pass does."""
        stats = self.stats
        problem = self._problem
        parsers = self._parsers
        u64 = abi.U64[0].unpack_from
        id_off, default, _ = self._dispatch()
        words = memoryview(scanned["words"]).cast("Q")
        rounds = len(scanned["round_ends"])
        yielded = failed = 0
        done = 0
        try:
            for r, stop in enumerate([*scanned["round_ends"], len(words)]):
                # As the record loop counts: a round's samples come once its FINISHED_ROUND has been read; those
                # after the last one come with it.
                self.rounds = min(r + 1, rounds)
                for w in words[done:stop]:
                    p = w >> 16
                    q = p + (w & 0xFFFF)
                    if id_off:
                        ident = u64(buf, p + id_off)[0]
                        parser = parsers.get(ident)
                        if parser is None:
                            parser = self._parser_for_id(ident)
                    else:
                        parser = default
                    try:
                        event = parser(buf, p, q)
                    except SampleError as err:
                        problem(p + err.offset, err.message)
                        failed += 1
                    except DecodeError as err:
                        problem(p, f"SAMPLE not decoded: {err.message}")
                        failed += 1
                    except Exception as err:  # a decoder failing on bad bytes must not end the file
                        defect(err)
                        problem(p, f"SAMPLE could not be decoded: {type(err).__name__}: {err}")
                        failed += 1
                    else:
                        if event is not None:
                            yielded += 1
                            yield event
                done = stop
        finally:
            del words
            stats.events += yielded
            dropped = scanned["dropped_type"] + scanned["dropped_value"]
            if dropped:
                stats.skipped["filtered"] = stats.skipped.get("filtered", 0) + dropped
            if scanned["max_dropped_time"] > self._max_filtered_time:
                self._max_filtered_time = scanned["max_dropped_time"]
            counts: dict[int, int] = scanned["counts"]
            stats.records += scanned["samples"] + sum(counts.values())
            for rtype, n in counts.items():
                name = abi.record_name(rtype)
                stats.skipped[name] = stats.skipped.get(name, 0) + n
            self.position = self.data_range[1] if self.data_range else 0
            _close_all(closers)

    def event_name(self, attr: Attr) -> tuple[str, str]:
        """(provider, event) for the samples of `attr`, as the reference names a sample it does not decode as
        EventHeader: from the "system:event" name of HEADER_EVENT_DESC (all of it the provider when it has no
        colon), else from the tracepoint format."""
        fmt = self.formats.get(attr.config & 0xFFFFFFFF) if attr.type == abi.TYPE_TRACEPOINT else None
        if not attr.name and fmt is not None:
            return fmt.system, fmt.name
        provider, colon, name = attr.name.partition(":")
        return provider, name if colon else ""

    def _recipe(self, attr: Attr) -> Recipe:
        be = self.big_endian
        fmt = self.formats.get(attr.config & 0xFFFFFFFF) if attr.type == abi.TYPE_TRACEPOINT else None
        clock = self.features.clock
        offset = clock.offset_ns if clock is not None else 0
        wall = clock is not None
        provider, name = self.event_name(attr)
        has_raw = bool(attr.sample_type & abi.SAMPLE_RAW)
        if fmt is None:
            source = SOURCE_TRACEPOINT if attr.type == abi.TYPE_TRACEPOINT else SOURCE_FILE
            if has_raw:
                return Recipe(provider, name, RAW_SCHEMA, source, decode=_raw_values, time_offset=offset,
                              time_is_wall=wall)
            return Recipe(provider, name, EMPTY_SCHEMA, source, time_offset=offset, time_is_wall=wall)
        source = SOURCE_USER_EVENTS if fmt.system == "user_events" else SOURCE_TRACEPOINT
        decode: Callable[..., Sequence[Any]] = fmt.decoder(be) if hasattr(fmt, "decoder") else (
            lambda raw, _d=fmt.decode, _be=be: _d(raw, _be))
        if not has_raw:
            tracefs_decode = decode
            decode = lambda raw, _d=tracefs_decode: _d(b"")  # noqa: E731 - the reference reads no bytes then
        recipe = Recipe(provider, name, fmt.schema, source, decode=decode, time_offset=offset, time_is_wall=wall)
        if fmt.kind == "eventheader" and has_raw:
            recipe.build = self._eventheader_builder(fmt, recipe)
        return recipe

    def _eventheader_builder(self, fmt: Any, tracefs: Recipe) -> Callable[..., Event | None]:
        if self._eventheader is None:
            from dyntel.decoders.eventheader import EventHeaderDecoder

            self._eventheader = EventHeaderDecoder()
        return eventheader_builder(fmt, tracefs, self._eventheader, self.want, self.stats.skip,
                                   self.stats.not_eventheader)


def _no_events() -> Generator[Event, None, None]:
    yield from ()


def _close_all(closers: list[Callable[[], None]]) -> None:
    for close in reversed(closers):
        # closing what was already closed, or a map with a view still alive: nothing to report
        with contextlib.suppress(OSError, BufferError, ValueError):
            close()
    closers.clear()
