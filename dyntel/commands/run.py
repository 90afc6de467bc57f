"""`dyntel run --rules RULES...`: the live sidecar on this host's tracepoints and user_events."""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any

from dyntel.commands._action_flags import add_action_flags


def register(sub: Any) -> None:
    r = sub.add_parser("run", help="listen live to the tracepoints and user_events the rules name, and act",
                       description="Open the tracepoints and user_events the rules' match names (and --events), "
                                   "evaluate the rules on every event as it happens, run their actions. Rule files "
                                   "are reloaded on change and on SIGHUP. Needs root or CAP_PERFMON and tracefs.")
    r.add_argument("--rules", nargs="+", action="extend", metavar="RULES",
                   help="rule files or folders (YAML); default: the config file's rules")
    r.add_argument("--events", nargs="+", action="extend", metavar="PATTERN",
                   help="also open these tracepoints (system:event globs, e.g. 'raw_syscalls:*')")
    r.add_argument("--dry-run", action="store_true", help="record each firing's actions without running them")
    r.add_argument("--format", choices=("text", "json"), default="text", help="how firings are printed")
    r.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: until ^C)")
    r.add_argument("--callchain", action="store_true", default=None,
                   help="capture each event's kernel and user call chain")
    r.add_argument("--no-reload", action="store_true", help="do not watch the rule files")
    r.add_argument("--register", nargs="+", action="extend", metavar="NAME",
                   help="register these EventHeader user_events (e.g. MyService_L4K1) before listening, held until "
                        "dyntel exits, so they are on before their producers start")
    r.add_argument("--insecure-rules", action="store_true",
                   help="load rule files that others could have written (group/other-writable, or owned by another "
                        "user), with a warning; for development only")
    r.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="serve /metrics (Prometheus), /healthz, /readyz and /status there, e.g. 127.0.0.1:9464 "
                        "(default: off; $DYNTEL_METRICS_LISTEN)")
    add_action_flags(r, live=True)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dyntel.commands import utf8_out
    from dyntel.commands._action_flags import forwarder_from_settings, runtime_from_settings, settings_from_args
    from dyntel.commands.replay import firing_json, firing_line
    from dyntel.live import RunOptions, run_live
    from dyntel.rules.errors import RuleErrors
    from dyntel.rules.loader import load_rules
    from dyntel.rules.trust import check_rule_files
    from dyntel.units import parse_size

    try:
        settings = settings_from_args(args)
    except RuleErrors as e:
        for error in e.errors:
            print(error, file=sys.stderr)
        return 1
    rule_paths = [str(p) for p in settings["rules"]]
    if not rule_paths:
        print("dyntel run: no rules: give --rules FILES, or rules: in the config file", file=sys.stderr)
        return 2
    # Rules and the config steer a process that may ptrace, dump and exec: refuse files others could have written,
    # before anything is opened. UntrustedFileError is a DyntelError: the CLI prints it and exits 1.
    trusted = [*rule_paths, *([settings.config_file] if settings.config_file else [])]
    check_rule_files(trusted, refuse=not args.insecure_rules, command="dyntel run")
    try:
        rules = load_rules(rule_paths)
    except RuleErrors as e:
        for error in e.errors:
            print(error, file=sys.stderr)
        return 1
    for warning in rules.warnings:
        print(warning, file=sys.stderr)
    runtime = runtime_from_settings(settings, dry_run=args.dry_run, log=sys.stderr, live=True)
    try:
        forwarder = forwarder_from_settings(settings, lambda line: print(f"dyntel run: {line}", file=sys.stderr),
                                            queues=runtime.context.queues)
    except RuleErrors as e:
        for error in e.errors:
            print(error, file=sys.stderr)
        return 1
    out = utf8_out(None)

    def on_firing(firing: Any) -> None:
        out.write((firing_json(firing) if args.format == "json" else firing_line(firing)) + "\n")
        out.flush()

    options = RunOptions(events=list(settings["sources.events"]), dry_run=args.dry_run, duration=args.duration,
                         callchain=bool(settings["sources.callchain"]), reload=not args.no_reload,
                         latency=settings["sources.latency"],
                         max_wait=None if settings["sources.max_wait"] is None else settings["sources.max_wait"] / 1e9,
                         register=list(settings["sources.register"]),
                         runtime=runtime,
                         action_workers=settings["actions.workers"], action_queue=settings["actions.queue"],
                         metrics_listen=settings["metrics.listen"], forwarder=forwarder,
                         insecure_rules=args.insecure_rules,
                         metrics_otlp=settings["metrics.otlp.endpoint"],
                         metrics_interval=settings["metrics.otlp.interval"] / 1e9,
                         record_memory=parse_size(args.record_memory))
    try:
        result = run_live(rules, rule_paths, on_firing, options)
    finally:
        out.flush()
        if isinstance(out, io.TextIOWrapper):
            out.detach()  # standard output stays open for an in-process caller
    sys.stderr.write(result.summary)
    return 0
