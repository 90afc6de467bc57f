"""What `dyntel demo` does, in order:

1. starts a stand-in service (dyntel.demo.service: a Python process with named worker threads) and a tiny OTLP
   receiver on 127.0.0.1 (dyntel.demo.receiver), so that nothing needs to be installed or running;
2. replays the bundled recording (dyntel/data/demo.perf.data: a shell "service" that opens missing files, starts
   `cat` over and over and kills a process) through the bundled rule pack (rules/) plus the demo's own rule, which
   on the SIGKILL takes the service's stacks and a minidump and sends an OTLP alert naming them;
3. replays the bundled recording of an OpenTelemetry application (dyntel/data/otel-rust.perf.data: the OpenTelemetry
   Rust SDK with its user_events logs, trace and metrics exporters, tests/peers/otel-rust, recorded in the
   user_events VM by scripts/make-otel-rust-recording.sh) through the rule pack's OpenTelemetry rules, which fire
   on its log attributes and severity, its spans' status and duration and a metric's value; their alerts go to the
   demo's receiver and their stacks are taken of the demo service, as if it were the application;
4. prints each firing as it happens with its actions' outcomes, then a summary: what fired, what the actions did,
   where the artifacts are, what the receiver got.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from dyntel.firing import Firing
from dyntel.formatting import format_group

PACKAGE = Path(__file__).resolve().parent.parent
RECORDING = PACKAGE / "data" / "demo.perf.data"
OTEL_RECORDING = PACKAGE / "data" / "otel-rust.perf.data"
# The rule pack's alerts go to a collector on the default OTLP/HTTP port; the demo's go to its own receiver.
PACK_ENDPOINT = "http://127.0.0.1:4318"
RULE_PACK = PACKAGE.parent / "rules"  # beside the package in a checkout (the README's editable install)


@dataclass(slots=True)
class Style:
    on: bool

    def __call__(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text


@dataclass(slots=True)
class DemoResult:
    firings: list[Firing] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    alerts: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    artifacts_dir: str = ""


def _firing_text(firing: Firing, style: Style) -> str:
    e = firing.event
    what = f"{e.provider}:{e.name} pid {e.pid}" if e is not None else "absence"
    group = f" {format_group(firing.group)}" if firing.group else ""
    lines = [f"{style('1;33', '▶ ' + firing.rule)}{group}  {style('2', what)}"]
    for a in firing.actions:
        mark = {"ok": style("32", "✓"), "failed": style("31", "✗"), "skipped": style("33", "–")}.get(a.status, "·")
        d = a.detail
        if a.type == "dump" and a.status == "ok":
            info = f"{d['path']}  ({d['size']} bytes, {d['threads']} threads, target paused {d['pause_ms']} ms)"
        elif a.type == "stacks" and a.status == "ok":
            info = f"{d['text_path']}  ({d['threads']} threads{', Python frames' if d.get('python') else ''})"
        elif a.type == "log" and a.status == "ok":
            info = str(d.get("message", ""))
        elif a.type == "otlp" and a.status == "ok":
            info = f"alert {d.get('delivery', 'sent')} to {d.get('endpoint', '')}"
        else:
            info = str(d.get("reason", "")) or ", ".join(f"{k}={v}" for k, v in d.items())
        lines.append(f"    {mark} {a.type:<7} {info}")
    return "\n".join(lines)


def run_demo(out: TextIO, *, artifacts: str | None = None, color: bool | None = None) -> DemoResult:
    from dyntel.actions import deliver_queued
    from dyntel.actions.artifacts import StoreSettings
    from dyntel.demo.receiver import DemoReceiver
    from dyntel.replay import ReplayOptions, replay
    from dyntel.rules.loader import load_rules
    from dyntel.runtime.scheduler import ActionRuntime

    style = Style(out.isatty() if color is None else color)
    started = time.monotonic()
    result = DemoResult()
    art_dir = Path(artifacts or "dyntel-demo").resolve()
    result.artifacts_dir = str(art_dir)
    out.write(style("1", "dyntel demo") + ": rules over a recording, with real actions on a live process\n\n")
    service = subprocess.Popen([sys.executable, "-m", "dyntel.demo.service"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    receiver = DemoReceiver()
    try:
        assert service.stdout is not None
        pid = int(service.stdout.readline())
        out.write(f"  service    pid {pid} (python -m dyntel.demo.service: request-handler, upstream-client, "
                  f"idle-worker threads)\n")
        out.write(f"  collector  {receiver.endpoint} (an OTLP/HTTP receiver inside this demo)\n")
        out.write(f"  recording  {RECORDING}\n")
        paths = []
        if RULE_PACK.is_dir():
            paths.append(str(RULE_PACK))
            out.write(f"  rules      {RULE_PACK}/ (the bundled rule pack) + the demo's capture rule\n\n")
        else:
            out.write("  rules      the demo's capture rule (the rule pack is not beside this install)\n\n")
        with tempfile.TemporaryDirectory(prefix="dyntel-demo-") as tmp:
            overlay = Path(tmp) / "demo-rules.yaml"
            text = (Path(__file__).parent / "rules.yaml").read_text(encoding="utf-8")
            overlay.write_text(text.replace("@DEMO_PID@", str(pid)).replace("@OTLP_ENDPOINT@", receiver.endpoint),
                               encoding="utf-8")
            paths.append(str(overlay))
            rules = load_rules(paths)
            devnull = open(os.devnull, "w")  # noqa: SIM115 - the log action's lines are shown with the firing
            try:
                def runtime(log: TextIO | None) -> ActionRuntime:
                    settings = StoreSettings(art_dir, max_total=1 << 30, min_free=64 << 20)
                    r = ActionRuntime(log=devnull, artifacts=settings)
                    r.context.services = {"otlp_spool_dir": str(art_dir / "spool")}
                    return r

                def on_firing(firing: Firing, source: object) -> None:
                    result.firings.append(firing)
                    out.write(_firing_text(firing, style) + "\n")
                    out.flush()

                replay(rules, str(RECORDING), on_firing, ReplayOptions(runtime=runtime))
                if RULE_PACK.is_dir() and OTEL_RECORDING.is_file():
                    out.write("\n" + style("1", "An OpenTelemetry application") + f": {OTEL_RECORDING}\n"
                              "  the OpenTelemetry Rust SDK writing logs, spans and metrics through its user_events "
                              "exporters;\n  the rule pack's OpenTelemetry rules, their alerts to the receiver above "
                              "and their stacks of the demo service\n\n")
                    otel_rules = load_rules(_otel_pack(Path(tmp), pid, receiver.endpoint))
                    replay(otel_rules, str(OTEL_RECORDING), on_firing, ReplayOptions(runtime=runtime))
            finally:
                devnull.close()
        deliver_queued(timeout=10.0)  # the queued alert, before reading what the receiver got
        result.alerts = list(receiver.records)
    finally:
        receiver.close()
        if service.stdin is not None:
            service.stdin.close()
        service.wait(timeout=10)
    for f in result.firings:
        for a in f.actions:
            for key in ("path", "text_path"):
                value = a.detail.get(key)
                if a.status == "ok" and isinstance(value, str):
                    result.artifacts.append(value)
    result.seconds = time.monotonic() - started
    _summary(out, result, style)
    return result


def _otel_pack(tmp: Path, pid: int, endpoint: str) -> list[str]:
    """The rule pack, with its alerts sent to the demo's receiver and its stacks taken of the demo service (the
    recorded application's pid belongs to the VM it was recorded in), written to `tmp`."""
    paths = []
    for source in sorted(RULE_PACK.glob("*.yaml")):
        text = source.read_text(encoding="utf-8")
        text = text.replace(PACK_ENDPOINT, endpoint).replace("stacks: {}", f"stacks: {{pid: {pid}}}")
        target = tmp / f"otel-{source.name}"
        target.write_text(text, encoding="utf-8")
        paths.append(str(target))
    return paths


def _summary(out: TextIO, result: DemoResult, style: Style) -> None:
    out.write("\n" + style("1", "Summary") + f" ({result.seconds:.1f} s)\n")
    by_rule: dict[str, int] = {}
    for f in result.firings:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    out.write(f"  {len(result.firings)} firing(s): " + ", ".join(f"{r} x{n}" for r, n in by_rule.items()) + "\n")
    outcomes: dict[str, int] = {}
    for f in result.firings:
        for a in f.actions:
            key = f"{a.type} {a.status}"
            outcomes[key] = outcomes.get(key, 0) + 1
    out.write("  actions: " + ", ".join(f"{k} x{n}" for k, n in outcomes.items()) + "\n")
    out.write(f"  artifacts in {result.artifacts_dir}:\n")
    for path in result.artifacts:
        out.write(f"    {path}\n")
    out.write(f"  alerts the collector received: {len(result.alerts)}\n")
    for alert in result.alerts:
        out.write(f"    [{alert['severity']}] {alert['body']}\n")
    out.write("\nNext: `dyntel action stacks --pid PID` on a process of yours; `dyntel run --rules rules/` live "
              "(root); docs/rules.md to write rules.\n")
