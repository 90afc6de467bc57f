"""`dyntel validate RULES...`: load rule files as `run` and `replay` would, and say what is wrong, all at once."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    v = sub.add_parser("validate", help="check rule files: exit 0 when they load, else each error as "
                                        "file:line:column: message (warnings, as file:line:column: warning: "
                                        "message, on stderr either way)")
    v.add_argument("rules", nargs="+", metavar="RULES", help="rule file, or a directory of *.yaml / *.yml files")
    v.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: a summary, or errors on stderr; json: a list of {file, line, column, message} on "
                        "stdout (empty when all is well)")
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dyntel.rules.loader import load
    from dyntel.rules.trust import check_rule_files

    # Only `run` refuses rule files others could write; here a warning is enough (nothing acts on them).
    check_rule_files(args.rules, refuse=False, command="dyntel validate")
    result = load(args.rules)
    # Warnings (a rule evaluated for every event, ...) go to stderr in either format: they do not change the exit
    # status, and the JSON on stdout stays the list of errors.
    for w in result.warnings:
        print(w, file=sys.stderr)
    if args.format == "json":
        json.dump([e.to_json() for e in result.errors], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 1 if result.errors else 0
    if result.errors:
        for e in result.errors:
            print(e, file=sys.stderr)
        n = len(result.errors)
        print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return 1
    rules = len(result.ruleset.rules)
    files = len(result.ruleset.files)
    line = f"ok: {rules} rule{'s' if rules != 1 else ''} in {files} file{'s' if files != 1 else ''}"
    if result.disabled:
        line += f" ({len(result.disabled)} disabled: {', '.join(result.disabled)})"
    print(line)
    return 0
