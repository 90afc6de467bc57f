"""Freezing real processes with ptrace: every thread stopped and seen, registers and memory read, the target running
on afterwards, and each reason ptrace is refused named (uid, dumpable, another tracer, a vanished pid)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from support import ROOT, CaptureTarget, deadline

from dyntel.capture import permissions
from dyntel.capture.errors import NotPermitted, ProcessGone
from dyntel.capture.procfs import read_maps, thread_ids
from dyntel.capture.ptrace import USER_REGS, frozen

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: tests drop to uid nobody and back")


@pytest.fixture(scope="module")
def target() -> Iterator[CaptureTarget]:
    with CaptureTarget() as t:
        yield t


def test_user_regs_layout() -> None:
    assert len(USER_REGS) == 27
    assert USER_REGS[0] == "r15" and USER_REGS[-1] == "gs"
    assert USER_REGS.index("orig_rax") == 15 and USER_REGS.index("rip") == 16 and USER_REGS.index("rsp") == 19


def test_frozen_sees_every_thread(target: CaptureTarget) -> None:
    expected = {int(t["tid"]) for t in target.info["threads"]}  # type: ignore[attr-defined]
    with deadline(20), frozen(target.pid) as f:
        tids = [t.tid for t in f.threads]
        assert tids[0] == target.pid
        assert set(tids) == expected
        for thread in f.threads:
            assert len(thread.regs_raw) == 216 and len(thread.fpregs_raw) == 512
            assert thread.regs["rip"] != 0 and thread.regs["rsp"] != 0
            assert thread.name  # comm of the thread


def _syscall_file(pid: int, tid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{tid}/syscall") as f:
        return [int(v, 0) for v in f.read().split()]


def test_registers_agree_with_proc_syscall(target: CaptureTarget) -> None:
    reader = int(target.info["reader_tid"])  # type: ignore[call-overload]
    with deadline(20), frozen(target.pid) as f:
        # The kernel's own view of the stopped thread: "nr arg1..arg6 sp pc".
        fields = _syscall_file(target.pid, reader)
        state = next(t for t in f.threads if t.tid == reader)
    nr, args, sp, pc = fields[0], fields[1:7], fields[7], fields[8]
    assert nr == 0 == state.regs["orig_rax"]  # read(2)
    assert args[0] == state.regs["rdi"] and args[2] == state.regs["rdx"] == 1  # os.read(fd, 1)
    assert sp == state.regs["rsp"]
    assert pc == state.regs["rip"]


def test_read_gives_the_magic_value(target: CaptureTarget) -> None:
    address = int(target.info["magic_addr"])  # type: ignore[call-overload]
    with deadline(20), frozen(target.pid) as f:
        data = f.read(address, 8)
        buffer = bytearray(8)
        n = f.readinto(address, memoryview(buffer))
    assert int.from_bytes(data, "little") == target.info["magic_value"]
    assert n == 8 and bytes(buffer) == data


def test_read_stops_at_unreadable_memory(target: CaptureTarget) -> None:
    maps = read_maps(target.pid)
    # A readable mapping followed by a hole: a read across its end is short, one past it is empty.
    edge = next(m for i, m in enumerate(maps[:-1]) if m.readable and maps[i + 1].start > m.end and m.size >= 64)
    with deadline(20), frozen(target.pid) as f:
        assert len(f.read(edge.end - 16, 64)) == 16
        assert f.read(edge.end, 64) == b""
        assert f.read(8, 64) == b""  # page 0 is never mapped


def test_target_runs_on_and_pause_is_reported(target: CaptureTarget) -> None:
    target.mark()
    with deadline(20):
        with frozen(target.pid) as f:
            time.sleep(0.1)
            during = f.pause_ns
        after = f.pause_ns
        time.sleep(0.05)
        assert f.pause_ns == after  # fixed once resumed
        beat = target.heartbeat()
    assert 100e6 <= during <= after < 2e9
    # The heartbeat thread really stopped: one of its 1 ms sleeps took the whole freeze.
    assert float(beat["max_gap_ms"]) >= 90  # type: ignore[arg-type]
    target.mark()
    target.wait_beats(50)


# Chains of threads, each starting its successor and exiting: the threads that create are always the newest, the
# last ones a pass over /proc/PID/task reaches, so threads keep appearing while a freeze is under way.
SPAWNER = textwrap.dedent("""
    import threading, time
    def link():
        time.sleep(0.0005)
        threading.Thread(target=link, daemon=True).start()
    for _ in range(8):
        threading.Thread(target=link, daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


def test_thread_created_during_the_freeze_is_caught() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        every: set[int] = set()
        with deadline(60):
            for _ in range(50):
                with frozen(proc.pid) as f:
                    seen = sorted(t.tid for t in f.threads)
                    time.sleep(0.002)  # were a thread left running, its chain would start a new thread now
                    assert sorted(thread_ids(proc.pid)) == seen
                    assert all(t.regs["rip"] for t in f.threads)
                every.update(seen)
                time.sleep(0.002)
        assert len(every) > 100  # the chains ran between the freezes
    finally:
        proc.kill()
        proc.wait()


def test_vanished_pid_is_process_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessGone, match="shareProcessNamespace"):
        permissions.check(proc.pid)
    with pytest.raises(ProcessGone), frozen(proc.pid):
        pass
    assert "pid namespace" in permissions.explain(proc.pid, 3)  # ESRCH


TRACER = textwrap.dedent("""
    import ctypes, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    result = libc.ptrace(0x4206, int(sys.argv[1]), None, None)  # PTRACE_SEIZE: traced, not stopped
    print(result, ctypes.get_errno(), flush=True)
    time.sleep(60)
""")


def test_target_traced_by_another_tracer() -> None:
    with CaptureTarget() as t:
        tracer = subprocess.Popen([sys.executable, "-c", TRACER, str(t.pid)], stdout=subprocess.PIPE, text=True)
        try:
            assert tracer.stdout is not None and tracer.stdout.readline().split() == ["0", "0"]
            with pytest.raises(NotPermitted, match=f"already traced by process {tracer.pid} "):
                permissions.check(t.pid)
            with deadline(20), pytest.raises(NotPermitted, match="detach that debugger"), frozen(t.pid):
                pass
        finally:
            tracer.kill()
            tracer.wait()
        t.heartbeat()  # still alive and answering
        permissions.check(t.pid)  # the tracer's exit detached it


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
             "--bounding-set=-all"]

CHECKER = textwrap.dedent("""
    import json, sys
    from dyntel.capture import permissions
    from dyntel.capture.errors import CaptureError
    from dyntel.capture.ptrace import frozen
    pid = int(sys.argv[1])
    result = {}
    try:
        permissions.check(pid)
        result["check"] = "ok"
    except CaptureError as e:
        result["check"] = f"{type(e).__name__}: {e}"
    try:
        with frozen(pid) as f:
            result["frozen"] = f"ok {len(f.threads)}"
    except CaptureError as e:
        result["frozen"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result))
""")

SLEEPER = textwrap.dedent("""
    import ctypes, os, sys, time
    if sys.argv[1] == "undumpable":
        assert ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE 0
    print(os.getpid(), flush=True)
    time.sleep(60)
""")


def _as_nobody(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([*AS_NOBODY, sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True,
                            env=env, cwd="/")


def _check_as_nobody(pid: int) -> dict[str, str]:
    checker = _as_nobody(CHECKER, str(pid))
    out, _ = checker.communicate(timeout=60)
    assert checker.returncode == 0, out
    result: dict[str, str] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def nobody_can_run_python() -> None:
    probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import dyntel.capture.ptrace"],
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd="/", capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"uid nobody cannot run {sys.executable} with dyntel: {probe.stderr.decode()[-300:]}")


def _sleeper_as_nobody(kind: str) -> subprocess.Popen[str]:
    proc = _as_nobody(SLEEPER, kind)
    assert proc.stdout is not None
    assert int(proc.stdout.readline()) == proc.pid  # setpriv execs: the pid is the python's
    return proc


@pytest.mark.usefixtures("nobody_can_run_python")
def test_same_uid_without_capabilities_may_trace() -> None:
    """The control for the two tests below: as the same unprivileged user, a dumpable target can be frozen."""
    target = _sleeper_as_nobody("dumpable")
    try:
        assert _check_as_nobody(target.pid) == {"check": "ok", "frozen": "ok 1"}
    finally:
        target.kill()
        target.wait()


@pytest.mark.usefixtures("nobody_can_run_python")
def test_undumpable_target_needs_cap_sys_ptrace() -> None:
    target = _sleeper_as_nobody("undumpable")
    try:
        result = _check_as_nobody(target.pid)
        permissions.check(target.pid)  # root, with CAP_SYS_PTRACE: allowed
    finally:
        target.kill()
        target.wait()
    for key in ("check", "frozen"):
        assert result[key].startswith("NotPermitted: "), result
        assert "is not dumpable" in result[key] and "CAP_SYS_PTRACE" in result[key]
        assert "runs as uid" not in result[key]  # same uid: that is not the reason


@pytest.mark.usefixtures("nobody_can_run_python")
def test_other_uid_needs_cap_sys_ptrace(target: CaptureTarget) -> None:
    result = _check_as_nobody(target.pid)
    for key in ("check", "frozen"):
        assert result[key].startswith("NotPermitted: "), result
        assert f"process {target.pid} (python" in result[key] and "runs as uid 0/0/0" in result[key]
        assert "dyntel as uid 65534" in result[key] and "SYS_PTRACE" in result[key]
    target.heartbeat()


def _facts(**changes: object) -> permissions.Facts:
    base = permissions.Facts(pid=100, name="app", our_pid=50, our_uid=1000, our_gid=1000, have_cap_sys_ptrace=False,
                             target_uids=(1000,) * 4, target_gids=(1000,) * 4, dumpable=True, tracer_pid=0,
                             tracer_name="", yama_scope=0, descendant=False, kernel_thread=False)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_yama_scopes() -> None:
    """This machine's kernel may lack Yama, so the decision over its scopes is tested on the facts themselves."""
    assert permissions.reasons(_facts()) == []
    assert permissions.reasons(_facts(yama_scope=1, descendant=True)) == []
    assert permissions.reasons(_facts(yama_scope=1, have_cap_sys_ptrace=True)) == []
    (one,) = permissions.reasons(_facts(yama_scope=1))
    assert "ptrace_scope is 1" in one and "descendants" in one and "CAP_SYS_PTRACE" in one
    (two,) = permissions.reasons(_facts(yama_scope=2, descendant=True))
    assert "ptrace_scope is 2" in two and "CAP_SYS_PTRACE" in two
    assert permissions.reasons(_facts(yama_scope=2, have_cap_sys_ptrace=True)) == []
    (three,) = permissions.reasons(_facts(yama_scope=3, have_cap_sys_ptrace=True))
    assert "is 3" in three and "reboot" in three


def test_yama_scope_is_read_when_present() -> None:
    facts = permissions.gather(os.getppid())
    assert facts is not None
    if os.path.exists(permissions.YAMA_SCOPE):
        with open(permissions.YAMA_SCOPE) as f:
            assert facts.yama_scope == int(f.read())
    else:
        assert facts.yama_scope is None


def test_kernel_thread_is_named() -> None:
    kthreads = [int(p) for p in os.listdir("/proc") if p.isdigit() and "Kthread:\t1" in _status(p)]
    if not kthreads:
        pytest.skip("no kernel thread visible in this pid namespace")
    with pytest.raises(NotPermitted, match="kernel thread"):
        permissions.check(kthreads[0])


def _status(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return f.read()
    except OSError:
        return ""
