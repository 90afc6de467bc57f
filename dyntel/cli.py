"""The `dyntel` command line: argparse over the verb modules in `dyntel.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dyntel.errors import DyntelError

# One module a verb; each has register(subparsers) and keeps its heavy imports inside its run function, so that
# `dyntel decode` loads no rule engine.
VERBS = (
    "dyntel.commands.decode",
    "dyntel.commands.validate",
    "dyntel.commands.replay",
    "dyntel.commands.test",
    "dyntel.commands.run",
    "dyntel.commands.action",
    "dyntel.commands.status",
    "dyntel.commands.config",
    "dyntel.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dyntel", description="Listen to user_events and ETW, evaluate rules, act.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERBS:
        importlib.import_module(name).register(sub)
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
