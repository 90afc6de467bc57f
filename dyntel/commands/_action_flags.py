"""The flags `dyntel run` and `dyntel replay` share for running actions and for the config file: where artifacts
go, the quota and retention, the action log, per-type limits, which actions may run. (Not a verb: the leading
underscore keeps it out of VERBS.)

Every flag defaults to "not given" (None), so that the merged settings (dyntel.config: defaults < config file <
DYNTEL_* variables < flags) can tell a flag the user typed from a default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dyntel.actions.artifacts import DEFAULT_ARTIFACT_DIR

if TYPE_CHECKING:
    from dyntel.config import Settings
    from dyntel.runtime.scheduler import ActionRuntime


def add_action_flags(parser: argparse.ArgumentParser, *, live: bool) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="a dyntel config file (YAML; default $DYNTEL_CONFIG); flags and DYNTEL_* variables "
                             "override it; `dyntel config show` prints the merged result")
    g = parser.add_argument_group("actions")
    g.add_argument("--artifacts", metavar="DIR",
                   help="where dumps and stack reports go, unless an action's dir says otherwise (made 0700; "
                        f"default ./{DEFAULT_ARTIFACT_DIR}; $DYNTEL_ARTIFACTS_DIR)")
    g.add_argument("--quota", metavar="SIZE",
                   help="most bytes all artifacts of a directory may take; past it, actions are skipped "
                        "(reason quota), nothing is deleted to make room (default 2GB)")
    g.add_argument("--keep", metavar="N", type=int,
                   help="retention: keep this many newest artifacts a directory, delete older ones (default 50)")
    g.add_argument("--min-free", metavar="SIZE",
                   help="leave at least this much free on the artifacts' disk (default 256MB)")
    g.add_argument("--action-log", metavar="FILE",
                   help="append one JSON line per action outcome" +
                        (" (default: actions.jsonl in the artifacts directory)" if live else ""))
    g.add_argument("--action-limit", metavar="TYPE=LIMIT", action="append",
                   help="a limit on one action type, whatever rule fires it: dump=3/1h (at most 3 started an "
                        "hour), dump=concurrent:1, stacks=timeout:10s, dump=none (no rate limit); repeatable. "
                        "Defaults: dump 5/1h one at a time, stacks 120/1h one at a time")
    g.add_argument("--allow-exec", action="store_true", default=None,
                   help="let rules' exec actions run commands (off by default: they are skipped)")
    if live:
        g.add_argument("--record-memory", metavar="SIZE", default="64MB",
                       help="most memory the flight recorder of record actions holds, all providers together "
                            "(default 64MB; used only when a rule has a record action)")
        g.add_argument("--action-workers", metavar="N", type=int,
                       help="actions running at once, over all types (default 2)")
        g.add_argument("--action-queue", metavar="N", type=int,
                       help="firings waiting for a worker; past it, their actions are skipped (default 64)")


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings keys the user set by flag (dyntel.config.KEYS names), from this module's flags and run's."""
    from dyntel.units import parse_size

    a = vars(args)
    flags: dict[str, Any] = {
        "artifacts.dir": a.get("artifacts"),
        "artifacts.quota": parse_size(a["quota"]) if a.get("quota") else None,
        "artifacts.keep": a.get("keep"),
        "artifacts.min_free": parse_size(a["min_free"]) if a.get("min_free") else None,
        "actions.log": a.get("action_log"),
        "actions.workers": a.get("action_workers"),
        "actions.queue": a.get("action_queue"),
        "metrics.listen": a.get("metrics_listen"),
        # (replay's positional EVENTS is a file name, not run's --events patterns)
        "sources.events": a.get("events") if isinstance(a.get("events"), list) and a.get("events") else None,
        "sources.register": a.get("register") or None,
        "sources.callchain": a.get("callchain"),
        "rules": a.get("rules") or None,
    }
    if a.get("action_limit"):
        from dyntel.runtime.limits import parse_limit

        limits = {}
        for text in a["action_limit"]:
            kind, _ = parse_limit(text)  # checked here, so a typo fails before anything starts
            limits[kind] = text.partition("=")[2]
        flags["actions.limits"] = limits
    return flags


def settings_from_args(args: argparse.Namespace) -> Settings:
    from dyntel.config import resolve

    settings = resolve(getattr(args, "config", None), flags=given_flags(args))
    # --allow-exec adds exec to the allow list wherever that list came from, never widening it otherwise.
    if args.allow_exec and "exec" not in settings["actions.allow"]:
        settings.values["actions.allow"] = [*settings["actions.allow"], "exec"]
        settings.origin["actions.allow"] += " + --allow-exec"
    return settings


def forwarder_from_settings(settings: Settings, log: Callable[[str], None], queues: Any = None) -> Any:
    """The Forwarder of the config's `forward:` section (dyntel.forwarding), or None, its queue registered with
    `queues` (the run's dyntel.queues.QueueRegistry). The section is read again from the file for its positions
    in errors; raises RuleErrors."""
    if not settings.config_file or settings["forward"] is None:
        return None
    from dyntel.forwarding import Forwarder, load_forward

    config = load_forward(settings.config_file)
    return Forwarder(config, log=log, queues=queues) if config is not None else None


def runtime_from_settings(settings: Settings, *, dry_run: bool, log: TextIO | None, live: bool,
                          queues: Any = None) -> ActionRuntime:
    from dyntel.actions.artifacts import StoreSettings
    from dyntel.runtime.action_log import ActionLog
    from dyntel.runtime.limits import ActionGate, parse_limit
    from dyntel.runtime.scheduler import ActionRuntime
    from dyntel.security import DEFAULT_PATTERNS

    art_dir = Path(settings["artifacts.dir"])
    store = StoreSettings(art_dir, max_total=settings["artifacts.quota"], keep=settings["artifacts.keep"],
                          min_free=settings["artifacts.min_free"])
    path = settings["actions.log"]
    if path is None and live and not dry_run:
        path = str(art_dir / "actions.jsonl")
    allowed = tuple(settings["actions.allow"])
    runtime = ActionRuntime(dry_run=dry_run, log=log, artifacts=store, action_log=ActionLog(path) if path else None,
                            allow_exec="exec" in allowed, queues=queues)
    runtime.context.allowed = allowed
    runtime.context.redact = tuple(settings["security.redact"] or DEFAULT_PATTERNS)
    if settings["actions.otlp.endpoint"] or settings["actions.otlp.protocol"]:
        runtime.context.services = {**runtime.context.services, "otlp_defaults": {
            "endpoint": settings["actions.otlp.endpoint"], "protocol": settings["actions.otlp.protocol"]}}
    gate: ActionGate = runtime.gate
    for kind, spec in dict(settings["actions.limits"]).items():
        action_type, changes = parse_limit(f"{kind}={spec}")
        gate.set(action_type, **changes)
    return runtime
