"""`dyntel test DIR...`: run rule test cases (rules, events, expected firings) and report PASS/FAIL per case."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    t = sub.add_parser("test", help="run rule test cases: rule files, a JSON-lines file of events, expected firings")
    t.add_argument("paths", nargs="+", metavar="DIR",
                   help="a directory searched for case.yaml and *.case.yaml files, or one case file")
    t.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: PASS/FAIL per case with what fired against what was expected; json: one object")
    t.add_argument("-v", "--verbose", action="store_true", help="list the firings of passing cases too")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dyntel.rules.trust import check_rule_files
    from dyntel.ruletest import exit_status, format_text, run_paths, to_json

    # Only `run` refuses rule files others could write; test cases warn.
    check_rule_files(args.paths, refuse=False, command="dyntel test")
    results = run_paths(args.paths)
    # The loader's warnings once each (cases often load the same rule files), on stderr: they fail no case.
    for warning in dict.fromkeys(w for r in results for w in r.warnings):
        print(warning, file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(json.dumps(to_json(results), indent=2) + "\n")
    else:
        sys.stdout.write(format_text(results, verbose=args.verbose))
    return exit_status(results)
