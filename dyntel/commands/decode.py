"""`dyntel decode FILE...`: recordings to the reference decoder's JSON."""

from __future__ import annotations

import argparse
from typing import Any

from dyntel.commands import utf8_out


def register(sub: Any) -> None:
    d = sub.add_parser("decode", help="decode a recording (perf.data, pipe-mode perf, interceptor .dat) to JSON")
    d.add_argument("files", nargs="+", metavar="FILE", help="recording to read; - reads standard input")
    d.add_argument("--format", choices=("json", "jsonl"), default="json",
                   help="json: one object {file: [EVENT, ...]} (as perf-decode prints); jsonl: one EVENT a line")
    d.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    d.add_argument("--order", choices=("file", "round"), default=None,
                   help="perf.data sample order: file (default; as the reference's test decoder and the corpus) or "
                        "round (sorted by time within each FINISHED_ROUND, as the perf-decode tool)")
    d.add_argument("--no-native", action="store_true", help="do not use the native fast path (for comparison)")
    d.add_argument("--strict", action="store_true", help="exit 2 when any record was malformed and skipped")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dyntel.decode import DecodeOptions, decode_files

    out = utf8_out(args.output)
    options = DecodeOptions(format=args.format, order=args.order, native=not args.no_native)
    try:
        status = decode_files(args.files, out, options)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    if status == 2 and not args.strict:
        status = 0
    return status
