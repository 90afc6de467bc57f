"""The flags `dyntel run` and `dyntel replay` share for running actions: where artifacts go, the quota and
retention, the action log, and the per-type limits. (Not a verb: the leading underscore keeps it out of VERBS.)"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dyntel.engine.artifacts import DEFAULT_ARTIFACT_DIR

if TYPE_CHECKING:
    from dyntel.engine.scheduler import ActionRuntime


def add_action_flags(parser: argparse.ArgumentParser, *, live: bool) -> None:
    g = parser.add_argument_group("actions")
    g.add_argument("--artifacts", metavar="DIR", default=os.environ.get("DYNTEL_ARTIFACTS", DEFAULT_ARTIFACT_DIR),
                   help="where dumps and stack reports go, unless an action's dir says otherwise (made 0700; "
                        f"default $DYNTEL_ARTIFACTS or ./{DEFAULT_ARTIFACT_DIR})")
    g.add_argument("--quota", metavar="SIZE", default="2GB",
                   help="most bytes all artifacts of a directory may take; past it, actions are skipped "
                        "(reason quota), nothing is deleted to make room (default 2GB)")
    g.add_argument("--keep", metavar="N", type=int, default=50,
                   help="retention: keep this many newest artifacts a directory, delete older ones (default 50)")
    g.add_argument("--min-free", metavar="SIZE", default="256MB",
                   help="leave at least this much free on the artifacts' disk (default 256MB)")
    g.add_argument("--action-log", metavar="FILE",
                   help="append one JSON line per action outcome" +
                        (" (default: actions.jsonl in the artifacts directory)" if live else ""))
    g.add_argument("--action-limit", metavar="TYPE=LIMIT", action="append", default=[],
                   help="a limit on one action type, whatever rule fires it: dump=3/1h (at most 3 started an "
                        "hour), dump=concurrent:1, stacks=timeout:10s, dump=none (no rate limit); repeatable. "
                        "Defaults: dump 5/1h one at a time, stacks 120/1h one at a time")
    g.add_argument("--allow-exec", action="store_true",
                   help="let rules' exec actions run commands (off by default: they are skipped)")
    if live:
        g.add_argument("--record-memory", metavar="SIZE", default="64MB",
                       help="most memory the flight recorder of record actions holds, all providers together "
                            "(default 64MB; used only when a rule has a record action)")
        g.add_argument("--action-workers", metavar="N", type=int, default=2,
                       help="actions running at once, over all types (default 2)")
        g.add_argument("--action-queue", metavar="N", type=int, default=64,
                       help="firings waiting for a worker; past it, their actions are skipped (default 64)")


def runtime_from_args(args: argparse.Namespace, *, dry_run: bool, log: TextIO | None,
                      live: bool) -> ActionRuntime:
    from dyntel.engine.action_limits import ActionGate, parse_limit
    from dyntel.engine.action_log import ActionLog
    from dyntel.engine.artifacts import StoreSettings
    from dyntel.engine.scheduler import ActionRuntime
    from dyntel.rules.durations import parse_size

    settings = StoreSettings(Path(args.artifacts), max_total=parse_size(args.quota), keep=args.keep,
                             min_free=parse_size(args.min_free))
    path = args.action_log
    if path is None and live and not dry_run:
        path = str(Path(args.artifacts) / "actions.jsonl")
    runtime = ActionRuntime(dry_run=dry_run, log=log, artifacts=settings,
                            action_log=ActionLog(path) if path else None, allow_exec=getattr(args, "allow_exec", False))
    gate: ActionGate = runtime.gate
    for text in args.action_limit:
        action_type, changes = parse_limit(text)
        gate.set(action_type, **changes)
    return runtime
