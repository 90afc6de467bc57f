"""ETL decode speed: dyntel against the etl-parser package (1.0.1) on the same file, in the same run.

Both read the file from memory and turn every record they can into an event: dyntel through `EtlSource.events()`
(TraceLogging payloads decoded to values), etl-parser through its observer, calling `parse_tracelogging()` on every
EVENT_HEADER record as a user of it would. Prints events/s for both (each counts its own events: etl-parser skips
the header buffer) and the ratio of the rates; best of --repeat runs.

    python benchmarks/etl.py [FILE.etl | corpus zip member] [--repeat 3]

Without FILE it uses gcrundownevents (PerfViewData.clrRundown.etl, 110 CLR rundown events) from the corpus, the
largest corpus file etl-parser reads (it reads nothing from the compressed ones).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file is named etl.py like the etl-parser package: keep its folder off the path so `import etl` finds that.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

DEFAULT = ("gcrundownevents.etl.zip", "gcrundownevents/PerfViewData.clrRundown.etl")


def load(arg: str | None) -> tuple[str, bytes]:
    if arg is not None:
        return arg, Path(arg).read_bytes()
    corpus = Path(os.environ.get("DYNTEL_CORPUS", ROOT.parent / "shared" / "corpus")) / "etw"
    with zipfile.ZipFile(corpus / DEFAULT[0]) as z:
        return DEFAULT[1], z.read(DEFAULT[1])


def run_dyntel(data: bytes) -> int:
    from dyntel.sources.etw.etl import EtlSource

    n = 0
    for _ in EtlSource("bench.etl", io.BytesIO(data)).events():
        n += 1
    return n


def run_etl_parser(data: bytes) -> int:
    from etl.etl import IEtlFileObserver, build_from_stream

    count = [0]

    class Observer(IEtlFileObserver):  # type: ignore[misc]
        def on_event_record(self, event: Any) -> None:
            count[0] += 1
            # Manifest events are not TraceLogging: it raises for them, as documented.
            with contextlib.suppress(Exception):
                event.parse_tracelogging()

        def on_trace_record(self, event: Any) -> None:
            count[0] += 1

        def on_perfinfo_trace(self, obj: Any) -> None:
            count[0] += 1

        def on_system_trace(self, obj: Any) -> None:
            count[0] += 1

        def on_win_trace(self, obj: Any) -> None:
            count[0] += 1

    build_from_stream(data).parse(Observer())
    return count[0]


def best(fn: Any, data: bytes, repeat: int) -> tuple[int, float]:
    times = []
    n = 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn(data)
        times.append(time.perf_counter() - t)
    return n, min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    name, data = load(args.file)
    ours, t_ours = best(run_dyntel, data, args.repeat)
    theirs, t_theirs = best(run_etl_parser, data, args.repeat)
    rate_ours = ours / t_ours
    rate_theirs = theirs / t_theirs if theirs else 0.0
    print(f"{name}: {len(data)} bytes")
    print(f"dyntel:     {ours:8d} events in {t_ours * 1000:8.2f} ms = {rate_ours:12.0f} events/s")
    print(f"etl-parser: {theirs:8d} events in {t_theirs * 1000:8.2f} ms = {rate_theirs:12.0f} events/s")
    if rate_theirs:
        print(f"ratio: {rate_ours / rate_theirs:.1f}x")
    else:
        print("ratio: etl-parser read no events from this file")


if __name__ == "__main__":
    main()
