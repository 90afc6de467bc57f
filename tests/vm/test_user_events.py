"""user_events against the real kernel ABI: registration, the enable bit, events reaching perf and dyntel's decoder,
pre-registration, malformed payloads. Run in the VM by tests/test_vm_harness.py (see tests/vm/conftest.py)."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from producer import EVENT_ID, EVENT_NAME, EVENT_TAG, EVENT_VERSION, MALFORMED_KINDS, expected_fields
from vmhelpers import WAIT, PerfRecord, Producer, dyntel_decode, tracepoint_exists, wait_for

from dyntel.sources.perf import user_events as ue

N = 1000
Producers = Callable[[str], Producer]
PerfRecords = Callable[[str, Path], PerfRecord]


def _unique(stem: str) -> str:
    # Tracepoints outlive a failed test while anything holds them; a fresh name per run keeps tests independent.
    return f"Dyntel{stem}{os.getpid()}_L5K1"


def _ticks(events: list[dict[str, object]], provider: str) -> list[dict[str, object]]:
    return [e for e in events if e.get("n") == f"{provider}:{EVENT_NAME}"]


def test_ioctl_numbers_match_the_kernel_header() -> None:
    # _IOWR('*', 0, struct user_reg *) and _IOW('*', 1|2, ...) on a 64-bit machine.
    assert (ue.DIAG_IOCSREG, ue.DIAG_IOCSDEL, ue.DIAG_IOCSUNREG) == (0xC0082A00, 0x40082A01, 0x40082A02)


def test_register_write_unregister_without_listener() -> None:
    name = _unique("Plain")
    with ue.UserEventsData() as data:
        tp = data.register_eventheader(name)
        assert tp.command == f"{name} u8 eventheader_flags; u8 version; u16 id; u16 tag; u8 opcode; u8 level"
        assert tracepoint_exists(name)
        fmt = Path(f"/sys/kernel/tracing/events/user_events/{name}/format").read_text()
        for field in ("eventheader_flags", "version", "id", "tag", "opcode", "level"):
            assert f" {field};" in fmt, fmt
        assert not tp.is_enabled and tp.enable_word == 0
        assert data.register_eventheader(name) is tp
        assert tp.write(b"\0" * 8) is False  # nobody listens: no system call at all
        # Written anyway, the kernel says the same thing: EBADF while the tracepoint is disabled.
        with pytest.raises(OSError) as e:
            os.writev(data.fd, [struct.pack("=i", tp.write_index), b"\0" * 8])
        assert e.value.errno == errno.EBADF
        assert name in Path("/sys/kernel/tracing/user_events_status").read_text()
    # Closing the only file that referred to it deletes the event.
    wait_for("deleted after close", lambda: not tracepoint_exists(name))


def test_clear_errors() -> None:
    name = _unique("Clash")
    with ue.UserEventsData() as data:
        data.register_eventheader(name)
        with pytest.raises(ue.UserEventsError) as e:
            data.register(f"{name} u32 other")
        assert e.value.errno == errno.EADDRINUSE and "other fields" in str(e.value)
        with pytest.raises(ue.UserEventsError) as e:
            ue.delete_event(name)
        assert e.value.errno == errno.EBUSY and "still in use" in str(e.value)
        with pytest.raises(ue.UserEventsError) as e:
            data.register("bad:flag u32 x")
        assert e.value.errno == errno.EINVAL
    with pytest.raises(ValueError, match="not an EventHeader tracepoint name"):
        ue.eventheader_command("NoLevel")
    with pytest.raises(ue.UserEventsUnavailable, match="does not exist"):
        ue.UserEventsData(Path("/nonexistent/user_events_data"))


def test_persistent_event_is_deleted_with_diag_iocsdel() -> None:
    name = _unique("Persist")
    with ue.UserEventsData() as data:
        data.register_eventheader(name, flags=ue.USER_EVENT_REG_PERSIST)
    assert tracepoint_exists(name)  # outlives its last reference, as asked
    ue.delete_event(name, busy_wait=WAIT)
    assert not tracepoint_exists(name)
    with pytest.raises(ue.UserEventsError) as e:
        ue.delete_event(name)
    assert e.value.errno == errno.ENOENT


def test_enable_bit_follows_perf_and_all_events_decode(producers: Producers, perf_records: PerfRecords,
                                                       tmp_path: Path) -> None:
    name = _unique("Ticks")
    provider = name.rsplit("_", 1)[0]
    producer = producers(name)
    assert not producer.enabled_at_start and not producer.enabled
    assert producer.write(5) == 0  # no listener: nothing is written

    recording = tmp_path / "ticks.perf.data"
    perf = perf_records(name, recording)
    wait_for("enabled by perf record", lambda: producer.enabled)
    assert producer.write(N) == N
    perf.stop()
    wait_for("disabled once perf stopped", lambda: not producer.enabled)
    assert producer.write(5) == 0
    producer.quit()

    events, err, status = dyntel_decode(recording)
    assert status == 0, err
    ticks = _ticks(events, provider)
    assert len(ticks) == N, (len(ticks), err, events[:3])
    pid = producer.proc.pid
    for seq, event in enumerate(ticks, start=5):  # the 5 written while disabled took sequence numbers 0..4
        want = expected_fields(seq)
        assert {k: event[k] for k in want} == want
        meta = event["meta"]
        assert isinstance(meta, dict)
        assert meta["pid"] == pid and meta["tid"] == pid
        assert meta["level"] == 5 and meta["id"] == EVENT_ID and meta["version"] == EVENT_VERSION
        assert meta["tag"] == f"0x{EVENT_TAG:X}" and meta["keyword"] == "0x1", meta


def test_preregistration_lets_a_listener_enable_a_name_before_its_producer(
        producers: Producers, perf_records: PerfRecords, tmp_path: Path) -> None:
    name = _unique("Early")
    provider = name.rsplit("_", 1)[0]
    assert not tracepoint_exists(name)
    with ue.Registration([name]) as registration:
        assert tracepoint_exists(name)  # perf can now name it, though no producer exists
        assert not registration.is_enabled(name)
        recording = tmp_path / "early.perf.data"
        perf = perf_records(name, recording)
        wait_for("enabled by perf record", lambda: registration.is_enabled(name))

        producer = producers(name)
        assert producer.enabled_at_start  # its bit was set at registration: the listener came first
        assert producer.write(N) == N
        perf.stop()
        wait_for("disabled once perf stopped", lambda: not producer.enabled)
        assert not registration.is_enabled(name)
        producer.quit()
        assert tracepoint_exists(name)  # dyntel still holds it
    wait_for("deleted once the registration was released", lambda: not tracepoint_exists(name))

    events, err, status = dyntel_decode(recording)
    assert status == 0, err
    assert [e["seq"] for e in _ticks(events, provider)] == list(range(N))


def test_malformed_payloads_are_counted_not_fatal(producers: Producers, perf_records: PerfRecords,
                                                   tmp_path: Path) -> None:
    name = _unique("Bad")
    provider = name.rsplit("_", 1)[0]
    producer = producers(name)
    recording = tmp_path / "bad.perf.data"
    perf = perf_records(name, recording)
    wait_for("enabled by perf record", lambda: producer.enabled)
    assert producer.write(10) == 10
    for kind in MALFORMED_KINDS:
        assert producer.bad(kind) == 1, kind
    assert producer.write(10) == 10
    perf.stop()
    producer.quit()

    events, err, status = dyntel_decode(recording)
    assert status == 0, err  # bad records are reported, and fail the run only with --strict
    assert [e["seq"] for e in _ticks(events, provider)] == list(range(20))
    # A payload that contradicts its metadata is a counted problem naming the event; events whose header is not
    # EventHeader at all are shown as plain tracefs fields, as the reference decoder shows them.
    assert "1 bad record" in err and f"{provider}:{EVENT_NAME}" in err, err
    plain = [e for e in events if e.get("n") == f"user_events:{name}"]
    assert len(plain) == 2, events
    _, _, strict = dyntel_decode(recording, "--strict")
    assert strict == 2


def test_enable_word_lives_in_this_process() -> None:
    name = _unique("Word")
    with ue.UserEventsData() as data:
        tp = data.register_eventheader(name)
        enable = Path(f"/sys/kernel/tracing/events/user_events/{name}/enable")
        enable.write_text("1")  # ftrace is a listener too
        try:
            wait_for("enabled through ftrace", lambda: tp.is_enabled, timeout=WAIT)
            assert tp.enable_word == 1
            assert ctypes.c_uint32.from_address(ctypes.addressof(tp._word)).value == 1
        finally:
            enable.write_text("0")
        wait_for("disabled through ftrace", lambda: not tp.is_enabled)
        tp.unregister()
        enable.write_text("1")
        try:
            # Unregistered: the kernel no longer touches the word, though the event is still there.
            assert tracepoint_exists(name)
            assert tp.enable_word == 0
        finally:
            enable.write_text("0")
