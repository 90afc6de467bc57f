"""Tracepoint patterns, tracefs listings, the perf ABI as ctypes lays it out, and the setup messages' wording.

None of this needs a kernel: the messages for machine states this machine is not in (paranoid 3, a seccomp refusal)
are produced from the same function the live source calls, with the state passed in.
"""

from __future__ import annotations

import ctypes
import errno

import pytest

from dyntel.sources.perf import event as pe
from dyntel.sources.perf import tracefs as tfs
from dyntel.sources.perf.live import default_ring_pages
from dyntel.sources.selection import parse_pattern, resolve

AVAILABLE = [("sched", "sched_switch"), ("sched", "sched_wakeup"), ("raw_syscalls", "sys_enter"),
             ("raw_syscalls", "sys_exit"), ("user_events", "MyService_L4K1"), ("user_events", "Other_L4K1"),
             ("syscalls", "sys_enter_read")]


@pytest.mark.parametrize(("pattern", "expected"), [
    ("sched:sched_switch", [("sched", "sched_switch")]),
    ("raw_syscalls:*", [("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit")]),
    ("user_events:MyService_*", [("user_events", "MyService_L4K1")]),
    ("*:sys_enter*", [("raw_syscalls", "sys_enter"), ("syscalls", "sys_enter_read")]),
    ("sched:sched_w?keup", [("sched", "sched_wakeup")]),
    ("sched:sched_[sw]*", [("sched", "sched_switch"), ("sched", "sched_wakeup")]),
    ("SCHED:*", []),
    ("user_events:Nobody_*", []),
])
def test_patterns_resolve_against_available_events(pattern: str, expected: list[tuple[str, str]]) -> None:
    assert resolve([parse_pattern(pattern)], AVAILABLE) == expected


def test_pattern_kinds() -> None:
    assert parse_pattern("sched:sched_switch").is_literal
    p = parse_pattern("user_events:MyService_*")
    assert p.system_is_literal and not p.is_literal
    assert not parse_pattern("*:x").system_is_literal
    assert parse_pattern(" sched:x ").text == "sched:x"


@pytest.mark.parametrize(("text", "why"), [
    ("sched_switch", "no ':'"),
    (":x", "both a system and an event"),
    ("sched:", "both a system and an event"),
    ("a:b:c", "more than one ':'"),
    ("sched:sched switch", "contains"),
    ("sched/sched_switch", "no ':'"),
])
def test_bad_patterns_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_pattern(text)


def test_available_events_and_cpu_lists_parse() -> None:
    assert tfs.parse_available_events("sched:sched_switch\nbad line\n\nuser_events:A_L1K1\n") == [
        ("sched", "sched_switch"), ("user_events", "A_L1K1")]
    assert tfs.online_cpus("0-3,6,8-9\n") == [0, 1, 2, 3, 6, 8, 9]
    assert tfs.online_cpus("0\n") == [0]


def test_tracefs_mounts_from_proc_mounts() -> None:
    text = ("sysfs /sys sysfs rw 0 0\n"
            "none /sys/kernel/tracing tracefs rw,relatime 0 0\n"
            "tracefs /mnt/my\\040trace tracefs rw 0 0\n"
            "debugfs /sys/kernel/debug debugfs rw 0 0\n")
    assert tfs.tracefs_mounts(text) == ["/sys/kernel/tracing", "/mnt/my trace"]


def test_capabilities_and_user_namespaces_from_proc() -> None:
    status = "Name:\tx\nCapInh:\t0\nCapEff:\t0000004000000000\n"
    caps = tfs.effective_capabilities(status)
    assert tfs.has_capability(tfs.CAP_PERFMON, caps) and not tfs.has_capability(tfs.CAP_SYS_ADMIN, caps)
    assert tfs.can_trace(paranoid=2, caps=caps)
    assert not tfs.can_trace(paranoid=2, caps=0) and not tfs.can_trace(paranoid=0, caps=0)
    assert tfs.can_trace(paranoid=-1, caps=0)
    assert not tfs.in_user_namespace("         0          0 4294967295\n")
    assert tfs.in_user_namespace("         0       1000          1\n")


NO_CAPS = 0
PERFMON = 1 << tfs.CAP_PERFMON


@pytest.mark.parametrize(("paranoid", "says"), [
    (3, "refuses every perf_event_open without CAP_PERFMON"),
    (2, "events on every CPU (which dyntel opens) need CAP_PERFMON at 1 or above"),
    (1, "events on every CPU (which dyntel opens) need CAP_PERFMON at 1 or above"),
    (0, "raw tracepoint samples (which dyntel reads) need CAP_PERFMON unless it is -1"),
])
def test_a_refused_perf_event_open_names_the_sysctl_and_the_capability(paranoid: int, says: str) -> None:
    message = tfs.explain_perf_error(errno.EACCES, "sched:sched_switch on CPU 0", paranoid, NO_CAPS)
    assert message.startswith("perf_event_open for sched:sched_switch on CPU 0 failed: Permission denied")
    assert f"kernel.perf_event_paranoid is {paranoid}" in message and says in message
    assert "sysctl -w kernel.perf_event_paranoid=-1" in message
    assert "--cap-add PERFMON" in message and "setcap cap_perfmon+ep" in message


def test_a_refusal_despite_the_capability_points_at_seccomp_or_a_security_module() -> None:
    message = tfs.explain_perf_error(errno.EPERM, "x", 2, PERFMON)
    assert "although this process has CAP_PERFMON" in message and "seccomp" in message


@pytest.mark.parametrize(("err", "says"), [
    (errno.EMFILE, "ulimit -n"),
    (errno.ENOSYS, "CONFIG_PERF_EVENTS"),
    (errno.ENOENT, "does not know this tracepoint id"),
])
def test_other_perf_errors(err: int, says: str) -> None:
    assert says in tfs.explain_perf_error(err, "x", 2, NO_CAPS)


def test_a_refused_ring_mapping_names_the_mlock_sysctl() -> None:
    message = tfs.explain_mmap_error(errno.EPERM, 2 << 20)
    assert "2048 KiB" in message and "kernel.perf_event_mlock_kb" in message and "CAP_IPC_LOCK" in message


def test_perf_event_attr_matches_the_kernel_layout() -> None:
    # offsets from include/uapi/linux/perf_event.h (PERF_ATTR_SIZE_VER8 = 136)
    assert pe.ATTR_SIZE == 136
    offsets = {name: getattr(pe.PerfEventAttr, name).offset for name, _ in pe.PerfEventAttr._fields_}
    assert offsets["config"] == 8 and offsets["sample_type"] == 24 and offsets["flags"] == 40
    assert offsets["wakeup"] == 48 and offsets["clockid"] == 92 and offsets["sample_max_stack"] == 108
    assert offsets["sig_data"] == 120 and offsets["config3"] == 128
    attr = pe.make_attr(pe.TYPE_TRACEPOINT, 443, 0x10486, flags=pe.ATTR_DISABLED, clockid=1, wakeup_watermark=4096)
    raw = bytes(attr)
    flags = int.from_bytes(raw[40:48], "little")
    assert flags == 1 | 1 << 14 | 1 << 25  # disabled, watermark, use_clockid
    assert int.from_bytes(raw[48:52], "little") == 4096 and int.from_bytes(raw[92:96], "little") == 1


def test_ioctl_numbers_are_the_kernels() -> None:
    assert (pe.IOC_ENABLE, pe.IOC_DISABLE, pe.IOC_SET_OUTPUT) == (0x2400, 0x2401, 0x2405)
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert (pe.IOC_SET_FILTER, pe.IOC_ID) == (0x40082406, 0x80082407)


@pytest.mark.parametrize(("cpus", "pages"), [(1, 1024), (2, 1024), (16, 1024), (24, 512), (64, 256), (128, 128),
                                             (1024, 128)])
def test_default_ring_size_shares_64_mib_between_cpus(cpus: int, pages: int) -> None:
    assert default_ring_pages(cpus, 4096) == pages
