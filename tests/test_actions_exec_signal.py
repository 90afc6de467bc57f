"""`exec` (off unless allowed, the firing in its environment, output kept within bounds, the process group killed at
the deadline) and `signal` (to a real child, refusals, the kernel's errors), on real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dyntel.event import Event
from dyntel.firing import ActionOutcome, Firing
from dyntel.rules.model import ActionSpec
from dyntel.runtime.scheduler import ActionRuntime, run_actions

PY = sys.executable


def _fire(specs: list[ActionSpec], *, allow_exec: bool = True, pid: int | None = 4242,
          tmp: Path | None = None) -> list[ActionOutcome]:
    runtime = ActionRuntime(allow_exec=allow_exec)
    event = Event("Svc", "Crash", time=1_700_000_000_000_000_000, pid=pid, tid=pid, level=2)
    firing = Firing("crash-rule", event.time or 0, {"pid": pid}, event)
    run_actions(firing, specs, runtime)
    return firing.actions


def test_exec_is_skipped_unless_allowed() -> None:
    (outcome,) = _fire([ActionSpec("exec", {"argv": ["/bin/true"]})], allow_exec=False)
    assert outcome.status == "skipped" and "--allow-exec" in outcome.detail["reason"]


def test_exec_env_holds_the_firing_and_earlier_results() -> None:
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    log, outcome = _fire([ActionSpec("log", {"message": "before exec"}),
                          ActionSpec("exec", {"argv": [PY, "-c", script]})])
    assert log.status == "ok" and outcome.status == "ok", outcome
    env = json.loads(outcome.detail["stdout"])
    assert env["DYNTEL_RULE"] == "crash-rule" and env["DYNTEL_PID"] == "4242"
    assert env["DYNTEL_PROVIDER"] == "Svc" and env["DYNTEL_EVENT"] == "Crash" and env["DYNTEL_LEVEL"] == "2"
    assert json.loads(env["DYNTEL_GROUP"]) == {"pid": 4242}
    assert env["DYNTEL_ACTIONS_LOG_MESSAGE"] == "before exec" and env["DYNTEL_ACTIONS_LOG_STATUS"] == "ok"
    assert json.loads(env["DYNTEL_EVENT_JSON"])["n"] == "Svc:Crash"
    # A minimal environment: nothing of dyntel's own besides PATH, LANG and HOME.
    assert {k for k in env if not k.startswith("DYNTEL_")} <= {"PATH", "LANG", "HOME", "LC_CTYPE"}
    assert outcome.detail["exit"] == 0


def test_exec_argv_is_not_a_shell_and_failures_say_why() -> None:
    (outcome,) = _fire([ActionSpec("exec", {"argv": [PY, "-c", "import sys; print(sys.argv[1:])", "$(id); rm -rf /"]})])
    assert outcome.detail["stdout"].strip() == "['$(id); rm -rf /']"
    (outcome,) = _fire([ActionSpec("exec", {"argv": [PY, "-c", "import sys; sys.stderr.write('no'); sys.exit(3)"]})])
    assert outcome.status == "failed" and outcome.detail["reason"] == "exit status 3"
    assert outcome.detail["stderr"] == "no"
    (outcome,) = _fire([ActionSpec("exec", {"argv": ["/nonexistent/tool"]})])
    assert outcome.status == "failed" and "No such file" in outcome.detail["reason"]


def test_exec_output_is_bounded() -> None:
    (outcome,) = _fire([ActionSpec("exec", {"argv": [PY, "-c", "import sys; sys.stdout.write('x' * 10_000_000)"]})])
    assert outcome.status == "ok"
    assert len(outcome.detail["stdout"]) == 8 << 10 and outcome.detail["output_truncated"] is True


def test_exec_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The command starts a grandchild that would outlive it, writes both pids, and sleeps past the timeout.
    script = (f"import os, subprocess, sys, time; g = subprocess.Popen([{PY!r}, '-c', 'import time; "
              f"time.sleep(60)']); open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{g.pid}}'); time.sleep(60)")
    start = time.monotonic()
    (outcome,) = _fire([ActionSpec("exec", {"argv": [PY, "-c", script], "timeout": "1s"})])
    took = time.monotonic() - start
    assert outcome.status == "failed" and outcome.detail["reason"].startswith("timeout"), outcome
    assert 0.9 <= took < 5, took
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid), f"pid {pid} of the group survived the timeout"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_signal_reaches_the_events_process() -> None:
    child = subprocess.Popen([PY, "-c", "import signal, sys; signal.signal(signal.SIGUSR1, lambda *a: sys.exit(7)); "
                              "print('ready', flush=True); signal.pause()"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        (outcome,) = _fire([ActionSpec("signal", {"signal": "USR1"})], pid=child.pid)
        assert outcome.status == "ok" and outcome.detail == {"pid": child.pid, "signal": "SIGUSR1"}
        assert child.wait(timeout=10) == 7
        (outcome,) = _fire([ActionSpec("signal", {"signal": 15})], pid=child.pid)  # reaped now: gone
        assert outcome.status == "failed" and outcome.detail["reason"].startswith("ESRCH"), outcome
    finally:
        child.kill()
        child.wait()


def test_signal_refuses_init_and_dyntel_unless_named() -> None:
    (outcome,) = _fire([ActionSpec("signal", {"signal": "TERM"})], pid=1)
    assert outcome.status == "skipped" and "init" in outcome.detail["reason"]
    (outcome,) = _fire([ActionSpec("signal", {"signal": "TERM"})], pid=os.getpid())
    assert outcome.status == "skipped" and "dyntel itself" in outcome.detail["reason"]
    # Named explicitly, with allow_special: dyntel's own pid gets a harmless signal.
    old = signal.signal(signal.SIGUSR2, lambda *a: None)
    try:
        (outcome,) = _fire([ActionSpec("signal", {"signal": "USR2", "pid": os.getpid(), "allow_special": True})])
        assert outcome.status == "ok", outcome
    finally:
        signal.signal(signal.SIGUSR2, old)
    (outcome,) = _fire([ActionSpec("signal", {"signal": "NOPE"})])
    assert outcome.status == "failed" and "TERM" in outcome.detail["reason"]


def test_signal_says_eperm_for_another_users_process() -> None:
    if os.geteuid() == 0:
        # Root may signal anything: drop to nobody in a child and have it signal a process of root's.
        code = ("import os, sys, json; "
                "from dyntel.firing import Firing; from dyntel.event import Event; "
                "from dyntel.actions.signal import run; from dyntel.actions import ActionContext; "
                "from dyntel.rules.model import ActionSpec; os.setgid(65534); os.setuid(65534); "
                "o = run(ActionSpec('signal', {'signal': 'USR1', 'pid': int(sys.argv[1])}), "
                "Firing('r', 0, {}, Event('P', 'E')), ActionContext()); print(json.dumps(o.to_json()))")
        target = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
        try:
            done = subprocess.run([PY, "-c", code, str(target.pid)], capture_output=True, text=True, timeout=30,
                                  check=False)
        finally:
            target.kill()
            target.wait()
        assert done.returncode == 0, done.stderr
        outcome = json.loads(done.stdout)
    else:
        (result,) = _fire([ActionSpec("signal", {"signal": "CONT", "pid": 1, "allow_special": True})])
        outcome = result.to_json()
    assert outcome["status"] == "failed" and outcome["reason"].startswith("EPERM"), outcome
    assert "CAP_KILL" in outcome["reason"]
