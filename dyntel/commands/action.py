"""`dyntel action TYPE --pid PID [--OPTION VALUE ...]`: one action by hand, as a debugging tool.

Every option of the action's rule form is a flag (`--format core`, `--max-size 1G`, `--dir /var/dumps`); values
read as in YAML (`--level 5` is a number). The action runs as a rule's would, through the same runtime (artifact
directory, quota, timeouts), but with no rate limit: a person asked for it. `--json` prints the outcome as the action
log writes it; otherwise a readable summary (and, for `stacks`, the report itself).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

_USAGE = "dyntel action TYPE [--pid PID] [--OPTION VALUE ...] [--json] [--action-log FILE]"


def register(sub: Any) -> None:
    r = sub.add_parser("action", help="run one action by hand (dump, stacks, ...) on a process",
                       usage=_USAGE,
                       description="Run one action as a rule would, on a process of your choice: "
                                   "`dyntel action dump --pid 1234 --format core`, `dyntel action stacks --pid 1234`. "
                                   "The action's options are flags (--format, --dir, --max-size, ...). "
                                   "Artifacts go where `dyntel run`'s go ($DYNTEL_ARTIFACTS, the config "
                                   "file's artifacts.dir, else ./dyntel-artifacts) unless --dir says otherwise.")
    r.add_argument("type", help="the action type: dump, stacks, log, ...")
    r.add_argument("options", nargs=argparse.REMAINDER, help="--pid PID and the action's options as --key value")
    r.set_defaults(func=run)


def parse_options(tokens: list[str]) -> tuple[dict[str, Any], bool, str | None]:
    """(options, json output?, action log path) from `--key value` / `--flag` / `key=value` tokens."""
    import yaml

    options: dict[str, Any] = {}
    as_json = False
    action_log = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--json":
            as_json = True
        elif token == "--action-log":
            if i + 1 >= len(tokens):
                raise ValueError("--action-log needs a file name")
            action_log = tokens[i + 1]
            i += 1
        elif token.startswith("--"):
            key, eq, value = token[2:].partition("=")
            if not eq:
                if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                    value = tokens[i + 1]
                    i += 1
                else:
                    value = "true"
            options[key.replace("-", "_")] = yaml.safe_load(value) if value != "" else ""
        elif "=" in token:
            key, _, value = token.partition("=")
            options[key.replace("-", "_")] = yaml.safe_load(value)
        else:
            raise ValueError(f"{token!r}: options are written --key value (see dyntel action --help)")
        i += 1
    return options, as_json, action_log


def _check(action_type: str, options: dict[str, Any]) -> list[str]:
    from pydantic import ValidationError

    from dyntel.actions.registry import UnknownAction, find_action, type_names

    try:
        model = find_action(action_type).options
    except UnknownAction:
        return [f"{action_type!r} is not an action type; the types are: {', '.join(sorted(type_names()))}"]
    try:
        model.model_validate({("for" if k == "for_" else k): v for k, v in options.items()})
    except ValidationError as e:
        out = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            out.append(f"--{where.replace('_', '-')}: {err['msg']}")
        return out
    return []


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from dyntel.actions import deliver_queued
    from dyntel.actions.spec import ActionSpec
    from dyntel.event import Event
    from dyntel.firing import OK, Firing
    from dyntel.rules.errors import RuleErrors
    from dyntel.runtime.action_log import ActionLog, outcome_record
    from dyntel.runtime.limits import TypeLimits
    from dyntel.runtime.scheduler import ActionRuntime, run_actions

    try:
        options, as_json, log_path = parse_options(list(args.options))
    except ValueError as e:
        print(f"dyntel action: {e}", file=sys.stderr)
        return 2
    problems = _check(args.type, options)
    if problems:
        for p in problems:
            print(f"dyntel action {args.type}: {p}", file=sys.stderr)
        return 2
    pid = options.get("pid")
    event = Event("dyntel", "by-hand", pid=int(pid) if isinstance(pid, int) else None, time=time.time_ns())
    firing = Firing("by-hand", event.time or 0, {}, event)
    # By hand there is no rate limit, only the per-type timeout and the one-at-a-time rule.
    limits = {args.type: TypeLimits(concurrent=1, count=None, timeout_s=_default_timeout(args.type))}
    try:
        artifacts = _artifact_settings()
    except RuleErrors as e:
        print(f"dyntel action: {e}", file=sys.stderr)
        return 2
    runtime = ActionRuntime(log=sys.stderr, action_log=ActionLog(log_path) if log_path else None, limits=limits,
                            artifacts=artifacts)
    if args.type == "enable" and not runtime.dry_run:
        seen = _enable_by_hand(firing, ActionSpec(args.type, options), runtime)
    else:
        run_actions(firing, [ActionSpec(args.type, options)], runtime)
        seen = None
    runtime.close()
    # An otlp alert waits in its sender: deliver it before exiting, and say what became of it.
    for line in deliver_queued(timeout=10.0):
        print(f"dyntel action: {line}", file=sys.stderr)
    outcome = firing.actions[0]
    if seen is not None:
        outcome.detail["events_seen"] = seen
    if as_json:
        print(json.dumps(outcome_record(firing, outcome, 0.0), default=str))
    else:
        text_path = outcome.detail.get("text_path")
        if outcome.status == OK and isinstance(text_path, str):
            with open(text_path, encoding="utf-8", errors="replace") as f:
                sys.stdout.write(f.read())
        print(f"{args.type}: {outcome.status}", file=sys.stderr)
        for key, value in outcome.detail.items():
            print(f"  {key}: {value}", file=sys.stderr)
    return 0 if outcome.status == OK else 1


def _artifact_settings() -> Any:
    """Where `dyntel run` would put artifacts, with its quota: one place a pod (or host) keeps them in, whether a
    rule or a person asked ($DYNTEL_ARTIFACTS in the image, the config file's artifacts section, the defaults)."""
    from pathlib import Path

    from dyntel.actions.artifacts import StoreSettings
    from dyntel.config import resolve

    settings = resolve()
    return StoreSettings(Path(settings["artifacts.dir"]), max_total=settings["artifacts.quota"],
                         keep=settings["artifacts.keep"], min_free=settings["artifacts.min_free"])


def _enable_by_hand(firing: Any, spec: Any, runtime: Any) -> dict[str, int]:
    """`enable` needs a live source to hold the tracepoints open for its duration: dyntel action opens one, applies
    the grant, and keeps it open (counting what arrives, per event) until the grant ends or ^C."""
    import signal
    import threading

    from dyntel.runtime.scheduler import run_actions
    from dyntel.sources.enabler import PerfEnabler
    from dyntel.sources.perf.live import PerfLiveSource
    from dyntel.sources.perf.tracefs import find_tracefs

    tracefs = find_tracefs()
    source = PerfLiveSource([], tracefs=tracefs)
    enabler = PerfEnabler(source, tracefs, log=runtime.context.log)
    runtime.context.services = {**runtime.context.services, "enabler": enabler}
    worker = threading.Thread(target=run_actions, args=(firing, [spec], runtime), daemon=True)
    seen: dict[str, int] = {}

    def on_idle() -> None:
        if enabler.armed:
            enabler.poll()
        if not worker.is_alive() and not enabler.armed:
            source.stop()  # the grant has ended (or was refused)

    old = signal.signal(signal.SIGINT, lambda *_: source.stop())
    source.on_idle = on_idle
    try:
        source.open()
        worker.start()
        for event in source.events():
            key = f"{event.provider}:{event.name}"
            seen[key] = seen.get(key, 0) + 1
            on_idle()
    finally:
        enabler.close()
        source.close()
        signal.signal(signal.SIGINT, old)
        worker.join(5)
    return seen


def _default_timeout(action_type: str) -> float:
    from dyntel.runtime.limits import DEFAULT, DEFAULT_LIMITS

    return DEFAULT_LIMITS.get(action_type, DEFAULT).timeout_s
