"""`dyntel config show [--config FILE] [--json]`: the merged settings (defaults, config file, DYNTEL_* variables)
and where each value came from."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    r = sub.add_parser("config", help="show the merged configuration and where each value came from",
                       description="Print the settings dyntel run would use: built-in defaults, overridden by the "
                                   "config file (--config or $DYNTEL_CONFIG), overridden by DYNTEL_* environment "
                                   "variables. Flags of `dyntel run` override all of these.")
    r.add_argument("what", choices=("show",), help="show: print the merged settings")
    r.add_argument("--config", metavar="FILE", help="the config file (default $DYNTEL_CONFIG)")
    r.add_argument("--json", action="store_true", help="as JSON: {values: ..., origin: ...}")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from dyntel.config import resolve, show
    from dyntel.rules.errors import RuleErrors

    try:
        settings = resolve(args.config)
    except RuleErrors as e:
        for error in e.errors:
            print(error, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"config_file": settings.config_file, "values": settings.values, "origin": settings.origin},
                         indent=1, default=str))
    else:
        sys.stdout.write(show(settings))
    return 0
