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
    from dyntel.event_json import format_event, json_string
    from dyntel.sources.recordings import open_recording

    out = _utf8_out(args.output)
    status = 0
    if args.format == "json":
        out.write("{")
    for i, path in enumerate(args.files):
        try:
            source = open_recording(path)
        except DyntelError as e:
            print(f"dyntel decode: {e}", file=sys.stderr)
            status = 1
            continue
        events = source.events()
        tags = source.field_tags
        if args.format == "jsonl":
            write = out.write
            for event in events:
                write(format_event(event, tags) + "\n")
        else:
            out.write(("," if i else "") + "\n" + json_string(source.name) + ": [")
            sep = "\n "
            for event in events:
                out.write(sep + format_event(event, tags))
                sep = ",\n "
            out.write(" ]")
        stats = source.stats
        if stats.bad:
            status = max(status, 2 if args.strict else 0)
            print(f"dyntel decode: {source.name}: {stats.bad} bad record(s), skipped:", file=sys.stderr)
            for problem in stats.problems[:10]:
                print(f"  {source.name}: {problem}", file=sys.stderr)
            if stats.bad > 10:
                print(f"  ... and {stats.bad - 10} more", file=sys.stderr)
    if args.format == "json":
        out.write("\n}\n")
    if args.output:
        out.close()
    else:
        out.flush()
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dyntel", description="Listen to user_events and ETW, evaluate rules, act.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    d = sub.add_parser("decode", help="decode a recording (perf.data, pipe-mode perf, interceptor .dat) to JSON")
    d.add_argument("files", nargs="+", metavar="FILE", help="recording to read; - reads standard input")
    d.add_argument("--format", choices=("json", "jsonl"), default="json",
                   help="json: one object {file: [EVENT, ...]} (as perf-decode prints); jsonl: one EVENT a line")
    d.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
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
