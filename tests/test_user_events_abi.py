"""dyntel.sources.perf.user_events where no kernel support is needed: the ABI's numbers and layouts, command strings,
and the errors a machine without user_events gives. The kernel behaviour is tested in the VM (tests/vm)."""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path

import pytest

from dyntel.sources.perf import user_events as ue


def test_abi_numbers_and_layouts() -> None:
    # _IOWR('*', 0, struct user_reg *), _IOW('*', 1, char *), _IOW('*', 2, struct user_unreg *): pointer-sized.
    assert (ue.DIAG_IOCSREG, ue.DIAG_IOCSDEL, ue.DIAG_IOCSUNREG) == (0xC0082A00, 0x40082A01, 0x40082A02)
    assert ctypes.sizeof(ue._UserReg) == 28 and ue._UserReg.write_index.offset == 24
    assert ue._UserReg.enable_addr.offset == 8 and ue._UserReg.name_args.offset == 16
    assert ctypes.sizeof(ue._UserUnreg) == 16 and ue._UserUnreg.disable_addr.offset == 8


def test_eventheader_command() -> None:
    assert ue.eventheader_command("MyProvider_L5K1Gmsft") == (
        "MyProvider_L5K1Gmsft u8 eventheader_flags; u8 version; u16 id; u16 tag; u8 opcode; u8 level")
    for bad in ("NoAttributes", "Provider_K1", "Provider_L5", "Provider_L5K1g", "Pro vider_L5K1", "a:b_L5K1"):
        with pytest.raises(ValueError, match="not an EventHeader tracepoint name"):
            ue.eventheader_command(bad)


def test_missing_user_events_data_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ue.UserEventsUnavailable, match="does not exist") as e:
        ue.UserEventsData(tmp_path / "user_events_data")
    assert e.value.errno == errno.ENOENT and isinstance(e.value, OSError)
    if not Path("/sys/kernel/tracing/user_events_data").exists() and Path("/sys/kernel/tracing/events").is_dir():
        with pytest.raises(ue.UserEventsUnavailable, match="without CONFIG_USER_EVENTS"):
            ue.find_user_events_data()
        with pytest.raises(ue.UserEventsUnavailable):
            ue.Registration(["Provider_L5K1"])


def test_refused_registration_frees_its_enable_word(tmp_path: Path) -> None:
    # Any file that is not user_events_data refuses the ioctl (ENOTTY): a clean error, and no word left behind.
    fake = tmp_path / "user_events_data"
    fake.write_bytes(b"")
    before = len(ue._LIVE_WORDS)
    with ue.UserEventsData(fake) as data, pytest.raises(ue.UserEventsError, match="DIAG_IOCSREG") as e:
        data.register_eventheader("Provider_L5K1")
    assert e.value.errno == errno.ENOTTY
    assert len(ue._LIVE_WORDS) == before
    with ue.UserEventsData(fake) as data, pytest.raises(ue.UserEventsError, match="bad user_events command"):
        data.register("x" * ue.MAX_COMMAND)
