"""`dyntel demo`: the bundled default, with real actions: see dyntel/demo/run.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    r = sub.add_parser("demo", help="show the whole idea in under a minute: rules over a bundled recording, "
                                    "with a real dump, stacks and an OTLP alert",
                       description="Replay the bundled recording through the bundled rule pack; on the recorded "
                                   "SIGKILL, take the stacks and a minidump of a demo service this command starts, "
                                   "and send an OTLP alert to a receiver it starts. Needs ptrace rights on its own "
                                   "child (any user, unless Yama ptrace_scope is 2 or more).")
    r.add_argument("--artifacts", metavar="DIR", default="dyntel-demo",
                   help="where the dump and the stack report go (default ./dyntel-demo)")
    r.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dyntel.demo.run import run_demo

    color = None if args.color == "auto" else args.color == "always"
    result = run_demo(sys.stdout, artifacts=args.artifacts, color=color)
    captured = {a.type for f in result.firings for a in f.actions if a.status == "ok"}
    return 0 if {"dump", "stacks"} <= captured and result.alerts else 1
