"""tracefs discovery and the setup messages, produced for real: as an unprivileged user (setpriv), with tracefs
unmounted in a private mount namespace (unshare -m), and inside a user namespace (unshare -U), as in a container.

Each case runs a small Python program in a subprocess and checks the message it prints; nothing here changes the
host (the namespaces are the subprocess's own). Needs root: skipped without it, failed under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from dyntel.sources.perf import tracefs as tfs

pytestmark = pytest.mark.kernel

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

FIND = """
from dyntel.sources.perf.tracefs import LiveSetupError, find_tracefs
import sys
try:
    t = find_tracefs(mount=sys.argv[1] == "mount")
    print("FOUND", t.path, len(t.available_events()))
except LiveSetupError as e:
    print("ERROR", e)
"""

PERF_OPEN = """
import sys
from dyntel.sources.perf import event as pe
from dyntel.sources.perf import tracefs
from dyntel.sources.perf.live import SAMPLE_TYPE
attr = pe.make_attr(pe.TYPE_TRACEPOINT, int(sys.argv[1]), SAMPLE_TYPE, flags=pe.ATTR_DISABLED, clockid=1)
try:
    pe.perf_event_open(attr, -1, 0)
    print("OPENED")
except OSError as e:
    print("ERROR", tracefs.explain_perf_error(e.errno, "raw_syscalls:sys_enter on CPU 0"))
"""


def _need(tool: str = "setpriv") -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "needs root (to become other users and make namespaces)"
    elif shutil.which(tool) is None:
        problem = f"needs {tool}"
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)


def run(prefix: list[str], code: str, *args: str, shell_before: str = "") -> str:
    """Run `code` with this checkout importable, under `prefix` (setpriv, unshare ...); its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-c", code, *args]
    if shell_before:
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
        argv = ["sh", "-c", f"{shell_before} && exec {quoted}"]
    proc = subprocess.run([*prefix, *argv], capture_output=True, text=True, env=env, cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def sys_enter_id() -> int:
    return tfs.find_tracefs(mount=False).event_id("raw_syscalls", "sys_enter")


def test_tracefs_is_found_and_read() -> None:
    _need()
    t = tfs.find_tracefs(mount=False)
    assert (t.path / "events").is_dir()
    events = t.available_events()
    assert ("sched", "sched_switch") in events and ("raw_syscalls", "sys_enter") in events
    assert t.event_id("sched", "sched_switch") == int((t.path / "events/sched/sched_switch/id").read_text())
    assert "sched_switch" in t.system_events("sched") and "enable" not in t.system_events("sched")
    assert t.system_events("no_such_system") == []
    assert t.format_text("sched", "sched_switch").startswith("name: sched_switch")
    assert tfs.perf_event_paranoid() == int(Path(tfs.PARANOID_FILE).read_text())


def test_an_unprivileged_user_is_told_how_to_read_tracefs() -> None:
    _need()
    out = run(AS_NOBODY, FIND, "mount")
    assert out.startswith("ERROR cannot read /sys/kernel/tracing as uid 65534: Permission denied")
    assert "run dyntel as root" in out and "mount -o remount,gid=GROUP,mode=0750 /sys/kernel/tracing" in out


def test_an_unprivileged_user_is_told_about_the_sysctl_and_the_capability() -> None:
    _need()
    paranoid = tfs.perf_event_paranoid()
    out = run(AS_NOBODY, PERF_OPEN, str(sys_enter_id()))
    if paranoid is not None and paranoid < 0:
        assert out == "OPENED"
        return
    assert out.startswith("ERROR perf_event_open for raw_syscalls:sys_enter on CPU 0 failed: Permission denied")
    assert "uid 65534) has neither CAP_PERFMON nor CAP_SYS_ADMIN" in out
    assert f"kernel.perf_event_paranoid is {paranoid}" in out
    assert "sysctl -w kernel.perf_event_paranoid=-1" in out and "--cap-add PERFMON" in out


def test_the_advice_works_cap_perfmon_alone_opens_the_event() -> None:
    _need()
    with_perfmon = [*AS_NOBODY, "--inh-caps", "+perfmon", "--ambient-caps", "+perfmon"]
    assert run(with_perfmon, PERF_OPEN, str(sys_enter_id())) == "OPENED"


def test_tracefs_missing_is_mounted_by_root_and_explained_to_others() -> None:
    _need("unshare")
    private = ["unshare", "-m", "--propagation", "private"]
    umount = "umount /sys/kernel/tracing"
    out = run(private, FIND, "no-mount", shell_before=umount)
    assert out.startswith("ERROR tracefs is not mounted") and "mounting was not allowed" in out
    assert "mount -t tracefs nodev /sys/kernel/tracing" in out
    assert "-v /sys/kernel/tracing:/sys/kernel/tracing" in out
    out = run(private, FIND, "mount", shell_before=umount)
    assert out.startswith("FOUND /sys/kernel/tracing ") and int(out.split()[2]) > 100
    as_nobody_there = [*private, "sh", "-c", f'{umount} && exec "$@"', "sh", *AS_NOBODY]
    out = run(as_nobody_there, FIND, "mount")
    assert out.startswith("ERROR tracefs is not mounted")
    assert "mounting it was refused (EPERM): that needs CAP_SYS_ADMIN (this process does not have it)" in out


def test_in_a_user_namespace_the_message_says_why_capabilities_are_not_enough() -> None:
    _need("unshare")
    # As in a rootless container: every capability, but in a user namespace; tracefs hidden under a tmpfs.
    out = run(["unshare", "-U", "-r", "-m", "--propagation", "private"], FIND, "mount",
              shell_before="mount -t tmpfs none /sys/kernel && mkdir /sys/kernel/tracing")
    assert out.startswith("ERROR tracefs is not mounted")
    assert "needs CAP_SYS_ADMIN in the host's user namespace; this process has it only in its own" in out


def test_user_events_missing_is_named_with_the_config_option() -> None:
    _need()
    t = tfs.find_tracefs(mount=False)
    if t.has_user_events():
        tfs.require_user_events(t)
        return
    with pytest.raises(tfs.LiveSetupError) as info:
        tfs.require_user_events(t)
    message = str(info.value)
    assert f"{t.path}/user_events_data is missing" in message and "CONFIG_USER_EVENTS=y" in message
    assert os.uname().release in message
