"""The `decode` verb: recordings to the reference decoder's JSON.

perf.data recordings of tracefs samples go through the native writer (`sources.perf.fast`) when it applies; it
declines before writing anything otherwise, and every event then goes through `format_event`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from dyntel.errors import DyntelError
from dyntel.event import Event
from dyntel.event_json import format_event, json_string
from dyntel.sources import Source
from dyntel.sources.perf.data import PerfDataSource
from dyntel.sources.recordings import open_recording

JSONL = "jsonl"
JSON = "json"


@dataclass(slots=True)
class DecodeOptions:
    format: str = JSON
    order: str | None = None  # perf.data: "file" (the default) or "round" (time-sorted per round, as perf-decode)
    native: bool = True  # use the native writer and the native EventHeader decoder where they apply


def decode_files(paths: list[str], out: TextIO, options: DecodeOptions, err: TextIO = sys.stderr) -> int:
    """Decode each recording to `out`. Exit status: 0, 1 when a file could not be read, 2 when records were bad
    (the caller decides whether bad records fail the run)."""
    from dyntel.decoders.eventheader import set_native

    set_native(options.native)
    status = 0
    if options.format == JSON:
        out.write("{")
    first = True
    for path in paths:
        try:
            source = open_recording(path)
        except DyntelError as e:
            print(f"dyntel decode: {e}", file=err)
            status = 1
            continue
        if options.format == JSON:
            out.write(("" if first else ",") + "\n" + json_string(source.name) + ": [")
            _write_events(source, out, options, first_sep="\n ", sep=",\n ", suffix="")
            out.write(" ]")
        else:
            _write_events(source, out, options, first_sep="", sep="", suffix="\n")
        first = False
        if _report(source, err):
            status = max(status, 2)
    if options.format == JSON:
        out.write("\n}\n")
    return status


def _write_events(source: Source, out: TextIO, options: DecodeOptions, first_sep: str, sep: str,
                  suffix: str) -> None:
    events: Iterator[Event]
    if isinstance(source, PerfDataSource):
        if options.order:
            source.order = options.order
        perf_events = source.events()  # reads the metadata before it returns, which the native writer needs
        if options.native and _write_native(source, out, first_sep, sep, suffix):
            perf_events.close()
            return
        events = perf_events
    else:
        events = source.events()
    tags = source.field_tags
    write = out.write
    for event in events:
        write(first_sep + format_event(event, tags) + suffix)
        first_sep = sep


def _write_native(source: PerfDataSource, out: TextIO, first_sep: str, sep: str, suffix: str) -> bool:
    from dyntel.sources.perf.fast import write_samples

    out.flush()
    try:
        fd = out.buffer.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # not a real file (a test's StringIO): the Python writer serves it
    written = write_samples(source, fd, first_sep=first_sep.encode(), sep=sep.encode(), suffix=suffix.encode())
    return written is not None


def _report(source: Source, err: TextIO) -> bool:
    stats = source.stats
    if not stats.bad:
        return False
    print(f"dyntel decode: {source.name}: {stats.bad} bad record(s) skipped:", file=err)
    for problem in stats.problems[:10]:
        print(f"  {source.name}: {problem}", file=err)
    if stats.bad > 10:
        print(f"  ... and {stats.bad - 10} more", file=err)
    return True
