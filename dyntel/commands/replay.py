"""`dyntel replay --rules RULES... EVENTS`: rules over a recording or JSON lines of EVENTs, firings out.

Standard output has the firings only (one JSON object each with `--format json`, as the contract says; a line each
otherwise), so it can be piped; the summary, the progress bar and the `log` action's lines go to standard error.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import Any, TextIO

from dyntel.commands import utf8_out
from dyntel.commands._action_flags import add_action_flags


def register(sub: Any) -> None:
    r = sub.add_parser("replay", help="run rules over a recording or a JSON-lines file of events, in time order",
                       description="Run rules over a recording (perf.data, pipe-mode perf, interceptor .dat) or a "
                                   "JSON-lines file of EVENTs, in event-time order, and print the firings.")
    r.add_argument("--rules", nargs="+", action="extend", required=True, metavar="RULES",
                   help="rule files (YAML); may be given more than once")
    r.add_argument("events", nargs="?", metavar="EVENTS",
                   help="the recording or JSON-lines file; - reads standard input")
    r.add_argument("--dry-run", action="store_true",
                   help="record each firing's actions (status dry-run, options expanded) without running them")
    r.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: a line per firing (default); json: one JSON object per firing")
    r.add_argument("--explain", metavar="RULE",
                   help="for each event that met RULE's match, say why it did or did not fire (stdout in text "
                        "format, stderr with --format json)")
    r.add_argument("--hold", type=int, default=None, metavar="N",
                   help="events held back to put them in time order (default 4096; 0: the source's order)")
    r.add_argument("--no-filter", action="store_true",
                   help="decode every event, even those no rule can match (for comparison)")
    r.add_argument("--no-native", action="store_true",
                   help="filter perf.data samples and decode EventHeader payloads in Python instead of the native "
                        "code (for comparison)")
    r.add_argument("-q", "--quiet", action="store_true", help="no summary and no progress bar on stderr")
    r.add_argument("--metrics", metavar="FILE",
                   help="write dyntel's own metrics at the end, in the Prometheus text format (as /metrics shows "
                        "them live)")
    add_action_flags(r, live=False)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dyntel.commands._action_flags import forwarder_from_settings, runtime_from_settings, settings_from_args
    from dyntel.errors import DyntelError
    from dyntel.replay import DEFAULT_HOLD, ReplayOptions, replay
    from dyntel.rules.errors import RuleErrors
    from dyntel.rules.loader import load_rules
    from dyntel.rules.trust import check_rule_files

    rules_paths: list[str] = list(args.rules)
    events_path: str | None = args.events
    if events_path is None:
        # `--rules a.yaml b.yaml events.jsonl`: argparse gives every name to --rules; the last one is EVENTS.
        if len(rules_paths) < 2:
            print("dyntel replay: no EVENTS file given (usage: dyntel replay --rules RULES... EVENTS)",
                  file=sys.stderr)
            return 2
        events_path = rules_paths.pop()
    err = sys.stderr
    # Only `run` refuses rule files others could write; a replay of a recording warns (its actions are real, but
    # it runs by hand, not as the sidecar).
    check_rule_files(rules_paths, refuse=False, log=err, command="dyntel replay")
    try:
        settings = settings_from_args(args)
        rules = load_rules(rules_paths)
    except RuleErrors as e:
        for error in e.errors:
            print(error, file=err)
        return 1
    for warning in rules.warnings:
        print(warning, file=err)
    if args.explain is not None and args.explain not in {r.name for r in rules.rules}:
        print(f"dyntel replay: --explain {args.explain}: no rule of that name in {', '.join(rules_paths)}",
              file=err)
        return 1
    from dyntel.queues import QueueRegistry

    queues = QueueRegistry()  # every queue of the replay registers here: the summary and --metrics read it
    try:
        forwarder = forwarder_from_settings(settings, lambda line: print(f"dyntel replay: {line}", file=err),
                                            queues=queues)
    except RuleErrors as e:
        for error in e.errors:
            print(error, file=err)
        return 1
    out = utf8_out(None)
    made: list[Any] = []
    delivery: list[str] = []

    def make_runtime(log: TextIO | None) -> Any:
        made.append(runtime_from_settings(settings, dry_run=args.dry_run, log=log, live=False, queues=queues))
        return made[-1]

    options = ReplayOptions(dry_run=args.dry_run, explain=args.explain,
                            hold=DEFAULT_HOLD if args.hold is None else args.hold, filter=not args.no_filter,
                            native=not args.no_native,
                            progress=None if args.quiet else err, log=err,
                            runtime=make_runtime, forwarder=forwarder)
    on_firing = _json_firing(out) if args.format == "json" else _text_firing(out)
    explain_to = err if args.format == "json" else out
    try:
        result = replay(rules, events_path, on_firing, options,
                        on_explain=lambda record, source: _write_line(explain_to, record.line()))
    except DyntelError as e:
        print(f"dyntel replay: {e}", file=err)
        return 1
    finally:
        out.flush()
        if isinstance(out, io.TextIOWrapper):
            out.detach()  # standard output stays open for whoever runs this in-process
        # Alerts and forwarded events still queued for a collector go now (or stay spooled for the next run); what
        # they sent and dropped is in their queues' counts, which the summary and --metrics show.
        if forwarder is not None:
            forwarder.close(timeout=5.0)
        from dyntel.actions import deliver_queued

        delivery = deliver_queued(timeout=5.0)
    from dyntel.queues import format_queues

    queue_lines = format_queues(queues.to_json())
    if not args.quiet:
        err.write(summary(result))
    if queue_lines and (not args.quiet or queues.total_dropped()):
        # Drops are never silent: -q leaves out the rest of the summary, not what was lost.
        err.write("\n".join(queue_lines) + "\n")
    if not args.quiet:
        err.write("".join(f"  {line}\n" for line in delivery))
    if args.metrics:
        from dyntel.service.metrics import Observed, exposition, registry_for

        observed = Observed(source_stats=result.source_stats, engine_stats=result.engine,
                            runtime=made[0] if made else None, queues=queues,
                            extra={"otlp_spool_depth": ("alerts waiting in the OTLP spools (all collectors)",
                                                        lambda: queues.size_of_kind("spool"))})
        with open(args.metrics, "wb") as f:
            f.write(exposition(registry_for(observed)))
    return 0


def _write_line(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        from dyntel.event_json import format_uuid

        return format_uuid(bytes(v)) if len(v) == 16 else v.hex()
    return str(v)


def firing_json(firing: Any, field_tags: bool = False) -> str:
    """A firing in the contract's shape, its EVENT exactly as `dyntel decode` shows that event."""
    from dyntel.event_json import format_event

    event = "null" if firing.event is None else format_event(firing.event, field_tags)
    group = json.dumps(firing.group, ensure_ascii=False, separators=(",", ":"), default=_jsonable)
    actions = json.dumps([a.to_json() for a in firing.actions], ensure_ascii=False, separators=(",", ":"),
                         default=_jsonable)
    return (f'{{"rule":{json.dumps(firing.rule, ensure_ascii=False)},"time":{firing.time},"group":{group},'
            f'"event":{event},"actions":{actions}}}')


def _json_firing(out: TextIO) -> Any:
    def on_firing(firing: Any, source: Any) -> None:
        out.write(firing_json(firing, source.field_tags) + "\n")

    return on_firing


def firing_line(firing: Any) -> str:
    """`TIME RULE {group} provider:event pid N: action status, ...` for people."""
    from dyntel.formatting import format_group, format_time

    parts = [format_time(firing.time), firing.rule]
    if firing.group:
        parts.append(format_group(firing.group))
    e = firing.event
    if e is not None:
        parts.append(f"{e.provider}:{e.name}")
        if e.pid is not None:
            parts.append(f"pid {e.pid}")
    actions = ", ".join(_outcome_text(a) for a in firing.actions)
    return " ".join(parts) + (f": {actions}" if actions else "")


def _outcome_text(outcome: Any) -> str:
    detail = outcome.detail
    note = ""
    if outcome.status in ("failed", "skipped") and "reason" in detail:
        note = f" ({detail['reason']})"
    elif outcome.status == "ok":
        shown = [f"{k}={v}" for k, v in detail.items() if isinstance(v, str | int | float) and k != "options"]
        if shown:
            note = " (" + ", ".join(shown[:3]) + ")"
    return f"{outcome.type} {outcome.status}{note}"


def _text_firing(out: TextIO) -> Any:
    def on_firing(firing: Any, source: Any) -> None:
        out.write(firing_line(firing) + "\n")

    return on_firing


def summary(result: Any, max_rules: int = 20, max_problems: int = 10) -> str:
    """The end-of-run report: what was read, filtered, matched and fired, per rule; bad records with offsets."""
    stats = result.source_stats
    engine = result.engine
    lines = [
        f"dyntel replay: {result.source}: {stats.records} records, {stats.events + result.filtered} events: "
        f"{result.filtered} filtered before decoding (no rule could match them), {engine.events} to the rules "
        f"({engine.candidates} rule candidates); {result.firings} firing(s)"
    ]
    busy = sorted(((name, s) for name, s in engine.rules.items() if s.candidates or s.fired or s.errors),
                  key=lambda item: (-item[1].fired, -item[1].matched, -item[1].candidates, item[0]))
    if busy:
        width = max(4, *(len(name) for name, _ in busy[:max_rules]))
        lines.append(f"  {'rule':<{width}}  {'candidates':>10}  {'matched':>8}  {'fired':>6}  {'held':>6}  errors")
        for name, s in busy[:max_rules]:
            held = s.suppressed_cooldown + s.suppressed_limit
            lines.append(f"  {name:<{width}}  {s.candidates:>10}  {s.matched:>8}  {s.fired:>6}  {held:>6}  "
                         f"{s.errors}" + (f" ({s.last_error})" if s.errors else ""))
        if len(busy) > max_rules:
            lines.append(f"  ... and {len(busy) - max_rules} more rules that saw events")
    idle = result.rules - len(busy)
    if idle:
        lines.append(f"  {idle} rule(s) saw no events")
    lost_records = stats.skipped.get("LOST", 0)
    if lost_records:
        lines.append(f"  {lost_records} LOST record(s): the kernel lost samples while this was recorded (full ring)")
    if result.late:
        lines.append(f"  {result.late} event(s) came later than the reorder buffer holds (--hold); they were seen "
                     f"at the latest time before them")
    if stats.bad:
        lines.append(f"  {stats.bad} bad record(s) skipped:")
        for problem in stats.problems[:max_problems]:
            lines.append(f"    {result.source}: {problem}")
        if stats.bad > max_problems:
            lines.append(f"    ... and {stats.bad - max_problems} more")
    return "\n".join(lines) + "\n"
