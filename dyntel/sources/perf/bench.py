"""Where the time goes when reading perf.data: `python -m dyntel.sources.perf.bench FILE [--profile] [--repeat N]`.

Times, on one recording and in one process, the stages of turning its samples into output:

  records   the record loop alone (headers, sample times, per-round sort), parsers that build nothing
  parse     + each sample's fields and an Event, without decoding the tracepoint payload
  decode    + the payload decoded by its tracefs format: what `PerfDataSource.events()` yields
  json      + each Event written as the reference's JSON (dyntel.event_json), as `dyntel decode` does
  native    the native writer (dyntel._speedups via dyntel.sources.perf.fast), when it covers the file

and prints samples per second for each (best of --repeat). --profile adds a cProfile of the `json` stage.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from typing import Any

from dyntel.sources.perf import data as perf_data
from dyntel.sources.perf import sample as perf_sample
from dyntel.sources.perf.header import Attr


class _RecordsOnly(perf_data.PerfDataSource):
    """Samples found, sorted and handed to a parser that builds nothing."""

    def _parser_for_attr(self, attr: Attr) -> perf_sample.SampleParser:
        return _nothing


class _NoDecode(perf_data.PerfDataSource):
    """Samples parsed into Events whose payload is left undecoded."""

    def _recipe(self, attr: Attr) -> perf_sample.Recipe:
        recipe = super()._recipe(attr)
        recipe.build = None
        recipe.decode = None
        return recipe


def _nothing(buf: Any, pos: int, end: int) -> None:
    return None


_SOURCES: dict[str, type[perf_data.PerfDataSource]] = {
    "records": _RecordsOnly, "parse": _NoDecode, "decode": perf_data.PerfDataSource, "json": perf_data.PerfDataSource}


def _stage(path: str, stage: str) -> float:
    from dyntel.event_json import format_event

    write = format_event if stage == "json" else None
    start = time.perf_counter()
    with open(path, "rb") as f:
        for event in _SOURCES[stage](path, f).events():
            if write is not None:
                write(event)
    return time.perf_counter() - start


def _native(path: str) -> tuple[float, int | None]:
    from dyntel.sources.perf import fast as perf_fast
    start = time.perf_counter()
    with open(path, "rb") as f, open(os.devnull, "wb") as null:
        src = perf_data.open_source(path, f)
        events = src.events()
        written = perf_fast.write_samples(src, null.fileno())
        events.close()
    return time.perf_counter() - start, written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    with open(args.file, "rb") as f:
        src = perf_data.open_source(args.file, f)
        samples = sum(1 for _ in src.events())
    print(f"{args.file}: {samples} samples, {src.stats.records} records")
    for stage in ("records", "parse", "decode", "json"):
        best = min(_stage(args.file, stage) for _ in range(args.repeat))
        print(f"  {stage:8} {best:7.3f} s  {samples / best / 1e3:8.0f} k samples/s")
    best_native = float("inf")
    written: int | None = None
    for _ in range(args.repeat):
        elapsed, written = _native(args.file)
        best_native = min(best_native, elapsed)
    if written is None:
        print("  native   declined (the file needs the Python decoder)")
    else:
        print(f"  native   {best_native:7.3f} s  {written / best_native / 1e3:8.0f} k samples/s")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        _stage(args.file, "json")
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
