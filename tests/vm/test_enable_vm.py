"""The `enable` action on real user_events: `dyntel run` listens to a provider's level-2 tracepoint only; a rule on
a level-2 event turns level 5 on for 2 s. The producer reads its own level-5 enable bit: it goes 1, then 0 two
seconds later, and the level-5 events it wrote while the bit was 1 reach the engine, none written while it was 0.

The producer writes its level-5 events whatever the bit says (straight writev, which the kernel refuses with EBADF
while nothing has the tracepoint enabled), so that "none outside the window" is tested rather than assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vmhelpers import HERE, DyntelRun, wait_for

S = 1_000_000_000
TRIGGER_SEQ = 100  # the level-2 event whose rule fires the enable: about 1 s after level 2 came on
RUN_S = 7.0  # how long the producer writes once level 2 is on

RULES = """\
version: 1
rules:
  - name: trigger
    match: {provider: PROV, event: Tick, level: 2}
    condition: fields.seq == TRIGGER
    limit: {actions: 1, per: 1h}
    actions:
      - enable: {provider: PROV, level: 5, for: 2s}
  - name: verbose
    match: {event: Tick}
    condition: provider == "PROV" and level == 5
"""

# Registers PROV_L2K1 and PROV_L5K1, waits for level 2 to be on, then every 10 ms writes one level-2 Tick (when
# its bit is on) and one level-5 Tick (always), noting each level-5 seq with its bit, and every bit change with its
# time. Prints one JSON document at the end.
PRODUCER = """\
import errno, json, os, sys, time
sys.path.insert(0, HERE)
from producer import tick
from dyntel.sources.perf.user_events import UserEventsData
prov, run_s = sys.argv[1], float(sys.argv[2])
data = UserEventsData()
l2 = data.register_eventheader(prov + "_L2K1")
l5 = data.register_eventheader(prov + "_L5K1")
print("ready", flush=True)
deadline = time.monotonic() + 60
while not l2.is_enabled:
    if time.monotonic() > deadline:
        print(json.dumps({"error": "level 2 never came on"}), flush=True)
        sys.exit(1)
    time.sleep(0.01)
changes = {"l2": [[time.time_ns(), 1]], "l5": [[time.time_ns(), int(l5.is_enabled)]]}
l5_written = []
seq2 = seq5 = 0
end = time.monotonic() + run_s
while time.monotonic() < end:
    for name, tp in (("l2", l2), ("l5", l5)):
        bit = int(tp.is_enabled)
        if changes[name][-1][1] != bit:
            changes[name].append([time.time_ns(), bit])
    if l2.write(tick(2, seq2)):
        seq2 += 1
    bit = int(l5.is_enabled)
    try:
        os.writev(data.fd, (l5._index, tick(5, seq5)))
        accepted = 1
    except OSError as e:
        if e.errno != errno.EBADF:  # what the kernel answers while nothing has the tracepoint enabled
            raise
        accepted = 0
    l5_written.append([seq5, bit, accepted, time.time_ns()])
    seq5 += 1
    time.sleep(0.01)
data.close()
print(json.dumps({"changes": changes, "l5": l5_written, "l2_written": seq2}), flush=True)
"""




def test_enable_turns_level_5_on_for_two_seconds(tmp_path: Path) -> None:
    prov = f"DyntelEnable{os.getpid()}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("PROV", prov).replace("TRIGGER", str(TRIGGER_SEQ)))
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER.replace("HERE", repr(str(HERE))), prov,
                                 str(RUN_S)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert producer.stdout is not None
    assert producer.stdout.readline().strip() == "ready", producer.stderr.read() if producer.stderr else ""
    run = DyntelRun(rules, "--artifacts", str(tmp_path / "artifacts"))
    out = perr = missed = ""
    try:
        out, perr = producer.communicate(timeout=RUN_S + 90)
        try:
            wait_for("the trigger fired", lambda: bool(run.of("trigger")), timeout=10)
        except AssertionError as e:
            missed = str(e)
        time.sleep(1.0)  # the last events on their way through the live source
    finally:
        producer.kill()
        status, err = run.stop()
    summary = f"producer: {out[-600:]!r} {perr[-2000:]!r}\ndyntel run ({status}): {err[-3000:]}\n{run.firings[:3]}"
    assert producer.returncode == 0 and status == 0 and not missed, f"{missed}\n{summary}"
    report = json.loads(out.strip().splitlines()[-1])
    changes = report["changes"]

    # Level 2 was on the whole time: the rules' tracepoint is never turned off by the enable ending.
    assert [bit for _, bit in changes["l2"]] == [1], changes["l2"]
    # Level 5: off, on once, off again about 2 s later.
    assert [bit for _, bit in changes["l5"]] == [0, 1, 0], changes["l5"]
    on_at, off_at = changes["l5"][1][0], changes["l5"][2][0]
    window = (off_at - on_at) / S
    # Never shorter than asked; later only by how slow the emulated guest is at the moment (the end is a timer in
    # dyntel's process, not a kernel deadline): a hang guard, not a speed test.
    assert 1.8 <= window <= 6.0, window

    trigger = run.of("trigger")
    assert len(trigger) == 1, err
    outcome = trigger[0]["actions"][0]
    assert outcome["status"] == "ok", outcome
    assert outcome["opened"] == [f"user_events:{prov}_L5K1"], outcome
    assert f"user_events:{prov}_L2K1" in outcome["tracepoints"]  # covered, but the rules had it open already

    written_on = {seq for seq, bit, _, _ in report["l5"] if bit}
    written_off = {seq for seq, bit, _, _ in report["l5"] if not bit}
    accepted = {seq for seq, _, ok, _ in report["l5"] if ok}
    seen = [f["event"]["seq"] for f in run.of("verbose")]
    assert len(seen) == len(set(seen))
    assert not set(seen) & written_off, sorted(set(seen) & written_off)
    assert set(seen) <= written_on and set(seen) <= accepted
    # At each edge a write can race the perf events' enable and disable (the bit is set at open, before the
    # events are enabled; it clears at close, after they are disabled): at most a couple lost a side.
    missing = written_on - set(seen)
    assert len(missing) <= 4, (sorted(missing), min(written_on), max(written_on))
    # How many were written in the window depends on how fast the guest runs (a write every 10 ms: ~200 on a quiet
    # host, 69 seen once at load 8); completeness is what `missing` checks, this only that the window carried events.
    assert len(seen) >= 10, len(seen)
    print(f"\nlevel-5 bit on {on_at} off {off_at} ({window:.3f} s); level-5 written while on {len(written_on)}, "
          f"seen {len(seen)}, missing {sorted(missing)}; written while off {len(written_off)} (accepted by the "
          f"kernel {len(accepted & written_off)}), seen 0; "
          f"level-2 written {report['l2_written']}")
