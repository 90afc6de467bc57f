"""The `dyntel` command line. Each verb is a function; argparse wires them up."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from typing import TextIO

from dyntel.errors import DyntelError


def _utf8_out(path: str | None) -> TextIO:
    # Event strings keep undecodable bytes as surrogate escapes; give them back as the original bytes.
    buffer = open(path, "wb") if path else sys.stdout.buffer  # noqa: SIM115 - the caller closes it
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape", newline="\n",
                            write_through=False, line_buffering=False)


def cmd_decode(args: argparse.Namespace) -> int:
    from dyntel.decode import DecodeOptions, decode_files

    out = _utf8_out(args.output)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dyntel", description="Listen to user_events and ETW, evaluate rules, act.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

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
    d.set_defaults(func=cmd_decode)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        return 0
    except DyntelError as e:
        print(f"dyntel {args.verb}: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
