"""A soak of the live sidecar: `dyntel run` for 10 minutes against a steady 50k events/s, its rules reloaded every
30 s, an OTLP alert every 10,000 events, and the collector stopped for 20 s twice. Reports RSS over time and what was
lost: events (the generator's exact count against the engine's matches of its pid) and alerts (firings against
what the collector received, each alert once).

    python benchmarks/soak.py                 # 10 minutes
    python benchmarks/soak.py --minutes 2     # a shorter look

Needs root (perf_event_open). The load is a child calling getppid(2) at a paced rate (syscalls:sys_enter_getppid).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psutil  # noqa: E402
from otlp_receiver import Receiver, free_port  # noqa: E402

RULES = """\
version: 1
rules:
  - name: soak-alert
    match: {{provider: syscalls, event: sys_enter_getppid}}
    condition: pid == {pid}
    window: {{count: {count}, within: 1h}}
    actions:
      - otlp: {{endpoint: "{endpoint}", severity: WARN, body: "soak {{rule}} generation {generation}"}}
"""

# The generator: getppid at a paced rate, in batches of 500 between clock checks; prints its exact count at the end.
GENERATOR = r"""
import os, sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
sys.stdin.readline()
n = 0
start = time.monotonic()
end = start + seconds
g = os.getppid
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - start) * rate)
    if n >= due:
        time.sleep(0.0005)
        continue
    for _ in range(500):
        g()
    n += 500
print(n, flush=True)
"""


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=50_000.0, help="events per second")
    parser.add_argument("--alert-every", type=int, default=10_000, help="events per alert")
    args = parser.parse_args()
    seconds = args.minutes * 60
    tmp = Path(tempfile.mkdtemp(prefix="dyntel-soak-"))
    port = free_port()
    metrics_port = free_port()
    receiver = Receiver(http_port=port, count_only=True).start()
    generator = subprocess.Popen([sys.executable, "-c", GENERATOR, str(args.rate), str(seconds)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rules = tmp / "rules.yaml"

    def write_rules(generation: int) -> None:
        text = RULES.format(pid=generator.pid, count=args.alert_every, endpoint=receiver.http_endpoint,
                            generation=generation)
        rules.write_text(text)
        rules.chmod(0o644)

    write_rules(0)
    config = tmp / "dyntel.yaml"
    config.write_text(f"rules: [{rules}]\nmetrics: {{listen: '127.0.0.1:{metrics_port}'}}\n"
                      f"artifacts: {{dir: {tmp / 'artifacts'}}}\n")
    config.chmod(0o644)
    run = subprocess.Popen([sys.executable, "-m", "dyntel.cli", "run", "--config", str(config), "--duration",
                            str(seconds + 20)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           cwd=tmp)
    base = f"http://127.0.0.1:{metrics_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    proc = psutil.Process(run.pid)
    assert generator.stdin is not None
    generator.stdin.write("go\n")
    generator.stdin.close()
    start = time.monotonic()
    rss: list[tuple[float, int]] = []
    reloads = 0
    outages = [seconds / 3, 2 * seconds / 3]
    down_until = 0.0
    print(f"soak: {args.minutes:g} min, {args.rate:,.0f} events/s, alert every {args.alert_every} events, "
          f"reload every 30 s, collector down 20 s at {outages[0]:.0f}s and {outages[1]:.0f}s", flush=True)
    next_reload = 30.0
    next_sample = 0.0
    while time.monotonic() - start < seconds:
        t = time.monotonic() - start
        if t >= next_sample:
            rss.append((t, proc.memory_info().rss))
            next_sample += 10.0
        if t >= next_reload:
            reloads += 1
            write_rules(reloads)
            next_reload += 30.0
        if down_until and t >= down_until:
            receiver.start()
            down_until = 0.0
            print(f"  {t:6.0f}s collector started again", flush=True)
        if outages and t >= outages[0] and not down_until:
            outages.pop(0)
            receiver.stop()
            down_until = t + 20.0
            print(f"  {t:6.0f}s collector stopped", flush=True)
        time.sleep(0.2)
    if down_until:
        receiver.start()
    assert generator.stdout is not None
    generated = int(generator.stdout.readline())
    generator.wait()
    time.sleep(2.0)
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    matched = metric(text, "dyntel_rule_matches_total", '{rule="soak-alert"}')
    fired = metric(text, "dyntel_rule_firings_total", '{rule="soak-alert"}')
    lost_kernel = metric(text, "dyntel_events_lost_total")
    reloads_seen = metric(text, "dyntel_reloads_total")
    run.send_signal(2)
    _, err = run.communicate(timeout=120)
    receiver.wait_for(logs=int(fired), timeout=30)
    received = receiver.log_count
    receiver.stop()
    warm = [r for t, r in rss if t >= 60] or [r for _, r in rss]
    growth = (warm[-1] - warm[0]) / (1 << 20)
    print(json.dumps({
        "minutes": args.minutes, "rate": args.rate, "events_generated": generated, "events_matched": int(matched),
        "events_lost": generated - int(matched), "kernel_lost": int(lost_kernel), "firings": int(fired),
        "alerts_received": received, "alerts_lost": int(fired) - received, "reloads_done": reloads,
        "reloads_seen": int(reloads_seen), "rss_mb_start": round(warm[0] / (1 << 20), 1),
        "rss_mb_end": round(warm[-1] / (1 << 20), 1), "rss_growth_mb_after_1min": round(growth, 1),
        "rss_mb_max": round(max(r for _, r in rss) / (1 << 20), 1), "exit": run.returncode}, indent=1))
    if run.returncode:
        print(err[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
