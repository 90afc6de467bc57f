"""The action runtime: artifact quota and retention, per-type limits, deadlines, the worker pool, the action log, and
the dump and stacks actions run from rules and by hand on a real process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from support import ROOT, CaptureTarget

from dyntel.actions.artifacts import ArtifactStore
from dyntel.event import Event
from dyntel.firing import OK, SKIPPED, ActionOutcome, Firing
from dyntel.rules.model import ActionSpec
from dyntel.runtime.action_log import ActionLog
from dyntel.runtime.limits import ActionGate, TypeLimits, parse_limit
from dyntel.runtime.pool import PooledScheduler
from dyntel.runtime.scheduler import ActionRuntime, run_actions


def dyntel(*argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dyntel.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def firing_for(pid: int | None, rule: str = "r", t: int = 0) -> Firing:
    return Firing(rule, t, {}, Event("Svc", "Req", pid=pid, tid=pid, time=t))


# --- artifact store ------------------------------------------------------------------------------------------------

def test_store_makes_a_private_directory_and_private_files(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "arts", max_total=10 << 20, min_free=0)
    r = store.reserve("dump", ".dmp", pid=7, rule="a rule/with slashes")
    assert not isinstance(r, str)
    with r:
        r.file.write(b"x" * 1000)
    assert stat.S_IMODE((tmp_path / "arts").stat().st_mode) == 0o700
    assert stat.S_IMODE(r.path.stat().st_mode) == 0o600
    assert r.path.name.startswith("dyntel-dump-a_rule_with_slashes-7-") and r.path.suffix == ".dmp"
    assert store.used() == 1000 and store.stats.created == 1


def test_quota_is_a_hard_limit_shared_by_concurrent_writers_and_nothing_is_deleted_for_room(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_total=300 << 10, min_free=0)
    first = store.reserve("dump", ".dmp")
    assert not isinstance(first, str) and first.limit == 300 << 10
    second = store.reserve("dump", ".dmp")  # the first holds the whole quota while it writes
    assert isinstance(second, str) and second.startswith("quota:")
    with first:
        first.file.write(b"a" * (100 << 10))
    third = store.reserve("dump", ".dmp")
    assert not isinstance(third, str) and third.limit == 200 << 10
    with third:
        third.file.write(b"b" * (200 << 10))
    full = store.reserve("dump", ".dmp")
    assert isinstance(full, str) and "quota" in full and str(tmp_path) in full
    assert first.path.exists() and third.path.exists()  # kept: the quota skips, it does not evict
    assert store.stats.skipped_quota == 2 and store.used() <= store.max_total


def test_retention_deletes_the_oldest_first_and_counts_them(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_total=1 << 30, keep=3, min_free=0)
    paths = []
    for i in range(5):
        r = store.reserve("stacks", ".json")
        assert not isinstance(r, str)
        with r:
            r.file.write(b"%d" % i)
        os.utime(r.path, (1000 + i, 1000 + i))  # distinct ages whatever the clock's resolution
        paths.append(r.path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in paths[2:]) and store.stats.deleted == 2
    (tmp_path / "notes.txt").write_text("not an artifact")
    aged = ArtifactStore(tmp_path, max_total=1 << 30, keep=100, max_age_s=60, min_free=0)
    r = aged.reserve("stacks", ".json")
    assert not isinstance(r, str)
    r.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([r.path.name, "notes.txt"])
    assert aged.stats.deleted == 3


def test_a_disk_short_of_min_free_skips_rather_than_fills(tmp_path: Path) -> None:
    disk = os.statvfs(tmp_path)
    store = ArtifactStore(tmp_path, max_total=1 << 50, min_free=disk.f_bavail * disk.f_frsize + (1 << 30))
    reason = store.reserve("dump", ".dmp")
    assert isinstance(reason, str) and "kept free" in reason


def test_a_planted_file_or_link_is_never_written_through(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_total=1 << 20, min_free=0)
    r = store.reserve("dump", ".dmp", stem="dyntel-dump-fixed")
    assert not isinstance(r, str)
    r.finish()
    with pytest.raises(FileExistsError):
        store.reserve("dump", ".dmp", stem="dyntel-dump-fixed")


# --- limits ---------------------------------------------------------------------------------------------------------

def test_gate_counts_concurrency_and_a_sliding_rate() -> None:
    gate = ActionGate({"dump": TypeLimits(concurrent=1, count=2, per_s=0.3)})
    assert gate.enter("dump") is None
    busy = gate.enter("dump")
    assert busy is not None and busy.startswith("busy:")
    gate.leave("dump")
    assert gate.enter("dump") is None
    gate.leave("dump")
    over = gate.enter("dump")
    assert over is not None and over.startswith("limit: 2 dump action(s) per 300ms")
    time.sleep(0.35)
    assert gate.enter("dump") is None
    gate.leave("dump")


def test_parse_limit() -> None:
    assert parse_limit("dump=3/1h") == ("dump", {"count": 3, "per_s": 3600.0})
    assert parse_limit("stacks=concurrent:2,timeout:10s") == ("stacks", {"concurrent": 2, "timeout_s": 10.0})
    assert parse_limit("dump=none") == ("dump", {"count": None})
    with pytest.raises(ValueError, match="TYPE=COUNT/DURATION"):
        parse_limit("dump")
    with pytest.raises(ValueError, match="'soon' is not"):
        parse_limit("dump=soon")


# --- the pool -------------------------------------------------------------------------------------------------------

@pytest.fixture
def slow_action(monkeypatch: pytest.MonkeyPatch) -> None:
    """An action type that sleeps for its `s` option: the runtime's scheduling, not an action, is under test."""
    mod = types.ModuleType("dyntel.actions.nap")
    mod.TYPE = "nap"  # type: ignore[attr-defined]

    def run(spec: ActionSpec, firing: Firing, context: object) -> ActionOutcome:
        deadline = getattr(context, "deadline", None)
        end = time.monotonic() + float(spec.options.get("s", 0))
        while time.monotonic() < end:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("nap ran past its deadline")
            time.sleep(0.005)
        return ActionOutcome("nap", OK, {"slept": spec.options.get("s", 0),
                                          "thread": threading.current_thread().name})

    mod.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dyntel.actions.nap", mod)
    from dyntel.actions import registry
    monkeypatch.setattr(registry, "_found", {})


def test_pool_reports_firings_in_submission_order_off_the_submitting_thread(slow_action: None) -> None:
    runtime = ActionRuntime(limits={"nap": TypeLimits(concurrent=4)})
    done: list[str] = []
    pool = PooledScheduler(runtime, workers=3, on_done=lambda f: done.append(f.rule))
    start = time.monotonic()
    for i, s in enumerate([0.3, 0.0, 0.1, 0.0]):
        pool.submit(firing_for(1, rule=f"f{i}"), [ActionSpec("nap", {"s": s})])
    pool.submit(firing_for(1, rule="no-actions"), [])
    submitted = time.monotonic() - start
    pool.close()
    assert submitted < 0.1  # the engine's thread never waited for an action
    assert done == ["f0", "f1", "f2", "f3", "no-actions"]
    assert runtime.outcomes[("nap", OK)] == 4


def test_a_full_queue_skips_at_once_and_says_so(slow_action: None) -> None:
    runtime = ActionRuntime(limits={"nap": TypeLimits(concurrent=1)})
    firings = [firing_for(1, rule=f"f{i}") for i in range(6)]
    pool = PooledScheduler(runtime, workers=1, queue_size=2)
    pool.submit(firings[0], [ActionSpec("nap", {"s": 0.2})])
    deadline = time.monotonic() + 5
    while pool.pending() and time.monotonic() < deadline:  # the worker has taken it
        time.sleep(0.001)
    for f in firings[1:]:
        pool.submit(f, [ActionSpec("nap", {"s": 0.2})])
    pool.close()
    statuses = [f.actions[0].status for f in firings]
    assert statuses.count(OK) == 3 and statuses.count(SKIPPED) == 3  # one running, two queued
    skipped = [f.actions[0] for f in firings if f.actions[0].status == SKIPPED]
    assert all(a.detail["reason"].startswith("queue full: 2 firings") for a in skipped)
    assert pool.dropped == 3


def test_a_deadline_fails_the_action_and_the_next_one_runs(slow_action: None) -> None:
    runtime = ActionRuntime()
    f = firing_for(1)
    run_actions(f, [ActionSpec("nap", {"s": 5, "timeout": "100ms"}), ActionSpec("nap", {"s": 0})], runtime)
    assert f.actions[0].status == "failed" and f.actions[0].detail["reason"].startswith("timeout: nap ran past")
    assert f.actions[1].status == OK


def test_the_action_log_has_one_line_per_outcome(slow_action: None, tmp_path: Path) -> None:
    log = ActionLog(tmp_path / "sub" / "actions.jsonl")
    runtime = ActionRuntime(action_log=log)
    f = firing_for(42, rule="burst", t=5)
    f.group = {"pid": 42}
    run_actions(f, [ActionSpec("nap", {"s": 0}), ActionSpec("nosuch", {})], runtime)
    runtime.close()
    lines = [json.loads(x) for x in (tmp_path / "sub" / "actions.jsonl").read_text().splitlines()]
    assert [(x["type"], x["status"]) for x in lines] == [("nap", "ok"), ("nosuch", "skipped")]
    assert lines[0]["rule"] == "burst" and lines[0]["pid"] == 42 and lines[0]["group"] == {"pid": 42}
    assert lines[0]["firing_time"] == 5 and isinstance(lines[0]["duration_ms"], float)
    assert stat.S_IMODE((tmp_path / "sub" / "actions.jsonl").stat().st_mode) == 0o600


# --- dump and stacks on a real process -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def target() -> CaptureTarget:
    t = CaptureTarget()
    yield t  # type: ignore[misc]
    t.close()


def test_dump_action_writes_a_minidump_the_minidump_package_reads(target: CaptureTarget, tmp_path: Path) -> None:
    from minidump.minidumpfile import MinidumpFile

    runtime = ActionRuntime(artifacts=None)
    f = firing_for(target.pid, rule="crashy")
    target.mark()
    run_actions(f, [ActionSpec("dump", {"format": "minidump", "memory": "writable", "dir": str(tmp_path)}),
                    ActionSpec("log", {"message": "dump at {actions.dump.path}"})], runtime)
    dump, logged = f.actions
    assert dump.status == OK, dump.detail
    path = Path(dump.detail["path"])
    assert path.parent == tmp_path and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dump.detail["size"] == path.stat().st_size and dump.detail["threads"] == len(target.info["threads"])
    assert 0 < dump.detail["pause_ms"] <= dump.detail["duration_ms"]
    assert logged.detail["message"] == f"dump at {path}"
    md = MinidumpFile.parse(str(path))
    assert sorted(t.ThreadId for t in md.threads.threads) == sorted(t["tid"] for t in target.info["threads"])
    magic = md.get_reader().read(int(target.info["magic_addr"]), 8)
    assert int.from_bytes(magic, "little") == target.info["magic_value"]
    assert target.heartbeat()["beats"] > 0  # alive and still beating


def test_dump_past_its_timeout_releases_the_target(target: CaptureTarget, tmp_path: Path) -> None:
    runtime = ActionRuntime()
    f = firing_for(target.pid)
    target.mark()
    run_actions(f, [ActionSpec("dump", {"format": "core", "dir": str(tmp_path), "timeout": "1ms"})], runtime)
    assert f.actions[0].status == "failed" and f.actions[0].detail["reason"].startswith("timeout"), f.actions[0]
    assert list(tmp_path.iterdir()) == []  # a dump cut short by its deadline is not left half-written
    target.wait_beats(20)  # running again
    state = Path(f"/proc/{target.pid}/status").read_text()
    assert "TracerPid:\t0" in state


def test_fifty_firings_in_a_second_take_only_the_configured_dumps(target: CaptureTarget, tmp_path: Path) -> None:
    """From a recording through `dyntel replay`: 50 events of the target's pid in one second, a rule that dumps on
    each, the runtime's dump limit at 3: three dumps, 47 skipped with the limit named."""
    events = tmp_path / "burst.jsonl"
    with events.open("w") as out:
        for i in range(50):
            t = f"2026-11-25T10:00:00.{i * 20:03d}000000Z"
            out.write(json.dumps({"n": "Svc:Crash", "code": i, "meta": {"time": t, "pid": target.pid,
                                                                         "tid": target.pid}}) + "\n")
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - name: dump-on-crash\n    match: {provider: Svc, event: Crash}\n"
                     "    actions:\n      - dump: {format: minidump}\n")
    arts = tmp_path / "arts"
    log = tmp_path / "actions.jsonl"
    proc = dyntel("replay", "--rules", str(rules), str(events), "--format", "json", "-q", "--artifacts", str(arts),
                  "--action-limit", "dump=3/1m", "--action-log", str(log))
    assert proc.returncode == 0, proc.stderr
    firings = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(firings) == 50
    statuses = [f["actions"][0]["status"] for f in firings]
    assert statuses.count("ok") == 3 and statuses.count("skipped") == 47
    assert all(f["actions"][0]["reason"].startswith("limit: 3 dump action(s) per 1m")
               for f in firings if f["actions"][0]["status"] == "skipped")
    assert len(list(arts.iterdir())) == 3
    assert len(log.read_text().splitlines()) == 50


def test_a_full_quota_skips_with_quota_and_the_directory_stays_under_it(target: CaptureTarget,
                                                                         tmp_path: Path) -> None:
    runtime = ActionRuntime(limits={"dump": TypeLimits(concurrent=1, count=None)})
    quota = 200 << 10  # a stacks-only minidump of the target is about 60 KB
    statuses = []
    for _ in range(6):
        f = firing_for(target.pid)
        run_actions(f, [ActionSpec("dump", {"dir": str(tmp_path), "max_total": quota})], runtime)
        statuses.append((f.actions[0].status, f.actions[0].detail.get("reason", "")))
        assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= quota
    assert statuses[0][0] == OK
    assert any(s == SKIPPED and r.startswith("quota:") for s, r in statuses), statuses
    assert statuses[-1][0] == SKIPPED


def test_dump_of_a_process_that_is_gone_is_skipped_with_the_reason(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    f = firing_for(child.pid)
    run_actions(f, [ActionSpec("dump", {"dir": str(tmp_path)}), ActionSpec("stacks", {"dir": str(tmp_path)})],
                ActionRuntime())
    assert [a.status for a in f.actions] == [SKIPPED, SKIPPED]
    assert "no process" in f.actions[0].detail["reason"]
    nopid = firing_for(None)
    run_actions(nopid, [ActionSpec("dump", {"dir": str(tmp_path)})], ActionRuntime())
    assert nopid.actions[0].detail["reason"].startswith("the event carries no process id")


def test_zombie_is_gone_not_a_kernel_thread() -> None:
    from dyntel.capture.errors import ProcessGone
    from dyntel.capture.permissions import check

    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while "Z" not in Path(f"/proc/{child.pid}/stat").read_text().split()[2] and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ProcessGone):
        check(child.pid)
    child.wait()


def test_dyntel_action_by_hand(target: CaptureTarget, tmp_path: Path) -> None:
    proc = dyntel("action", "stacks", "--pid", str(target.pid), "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for thread in target.info["threads"]:
        assert thread["function"] in proc.stdout
    assert "stacks: ok" in proc.stderr
    proc = dyntel("action", "dump", "--pid", str(target.pid), "--format", "core", "--max-size", "5MB", "--dir",
                  str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["status"] == "ok" and outcome["truncated"] is True and outcome["size"] <= 5 << 20
    bad = dyntel("action", "dump", "--pid", str(target.pid), "--format", "elf")
    assert bad.returncode == 2 and "--format" in bad.stderr
    unknown = dyntel("action", "dumpp", "--pid", "1")
    assert unknown.returncode == 2 and "'dumpp' is not an action type" in unknown.stderr


def test_dyntel_action_by_hand_puts_artifacts_where_dyntel_run_does(target: CaptureTarget, tmp_path: Path) -> None:
    # $DYNTEL_ARTIFACTS (the image sets it), as for dyntel run: one place a pod keeps artifacts, whoever asked.
    env = {**os.environ, "DYNTEL_ARTIFACTS": str(tmp_path / "arts")}
    proc = dyntel("action", "stacks", "--pid", str(target.pid), "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert Path(outcome["path"]).parent == tmp_path / "arts"
    assert not (tmp_path / "dyntel-artifacts").exists()


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def test_only_cap_sys_ptrace_is_needed_and_its_absence_is_explained(target: CaptureTarget) -> None:
    """dyntel as an unprivileged user with CAP_SYS_PTRACE alone (as in a container with only that capability)
    dumps a root process; without it, the refusal names the capability."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start dyntel as another user with chosen capabilities")
    import shutil
    import tempfile

    # pytest's tmp_path sits in a 0700 directory of root's; nobody needs a way in.
    base = Path(tempfile.mkdtemp(prefix="dyntel-nobody-", dir="/tmp"))
    os.chmod(base, 0o755)
    arts = base / "arts"
    arts.mkdir()
    os.chown(arts, 65534, 65534)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(arts)}
    with_cap = [*AS_NOBODY, "--inh-caps=-all,+sys_ptrace", "--ambient-caps=-all,+sys_ptrace",
                "--bounding-set=-all,+sys_ptrace"]
    cmd = [sys.executable, "-m", "dyntel.cli", "action", "dump", "--pid", str(target.pid), "--dir", str(arts),
           "--json"]
    ok = subprocess.run(with_cap + cmd, capture_output=True, text=True, env=env, timeout=60)
    if "nobody" in ok.stderr and ok.returncode != 0 and "dump" not in ok.stdout:
        pytest.skip(f"cannot run as nobody here: {ok.stderr.strip()}")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "ok"
    without = subprocess.run([*AS_NOBODY, "--inh-caps=-all", "--bounding-set=-all", *cmd], capture_output=True,
                             text=True, env=env, timeout=60)
    shutil.rmtree(base)
    assert without.returncode == 1
    outcome = json.loads(without.stdout)
    assert outcome["status"] == "failed" and "CAP_SYS_PTRACE" in outcome["reason"], outcome


def test_secrets_in_environ_and_cmdline_are_redacted_in_dumps(tmp_path: Path) -> None:
    import struct as st

    child = subprocess.Popen([sys.executable, "-c", "input()", "--password=hunter2"],
                             stdin=subprocess.PIPE, env={"DB_PASSWORD": "s3cret", "PATH": "/usr/bin:/bin",
                                                         "PLAIN": "visible"})
    try:
        time.sleep(0.3)
        f = firing_for(child.pid)
        run_actions(f, [ActionSpec("dump", {"dir": str(tmp_path), "format": "minidump"}),
                        ActionSpec("dump", {"dir": str(tmp_path), "format": "core", "max_size": "2MB"})],
                    ActionRuntime())
        minidump, core = (Path(a.detail["path"]).read_bytes() for a in f.actions)
        # The minidump's Linux streams: find environ (0x47670007) and cmdline (0x47670006) in the directory.
        count, rva = st.unpack_from("<II", minidump, 8)
        streams = {}
        for i in range(count):
            kind, size, where = st.unpack_from("<III", minidump, rva + 12 * i)
            streams[kind] = minidump[where:where + size]
        assert b"DB_PASSWORD=[REDACTED]" in streams[0x47670007] and b"s3cret" not in streams[0x47670007]
        assert b"PLAIN=visible" in streams[0x47670007]
        assert b"--password=[REDACTED]" in streams[0x47670006] and b"hunter2" not in streams[0x47670006]
        # The notes come before the memory: the first command line in the core is NT_PRPSINFO's (the stack's own
        # copy of argv, further on, is memory and is not rewritten).
        first = core.index(b"--password=")
        assert core[first:first + 21] == b"--password=[REDACTED]"
        off = ActionRuntime()
        off.context.redact = ()
        g = firing_for(child.pid)
        run_actions(g, [ActionSpec("dump", {"dir": str(tmp_path), "format": "minidump"})], off)
        assert b"DB_PASSWORD=s3cret" in Path(g.actions[0].detail["path"]).read_bytes()
    finally:
        child.kill()
        child.wait()
