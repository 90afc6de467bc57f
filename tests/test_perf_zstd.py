"""zstd-compressed recordings (perf record -z): PERF_RECORD_COMPRESSED decoded in file and pipe mode, by both
paths, to the events `perf script` lists; and what cannot be read is counted and reported with its offset.

tests/data/zstd.perf.data and zstd-pipe.perf.data were made by this machine's perf (tests/data/make-recordings.sh).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zstandard
from recordings import DATA
from test_perf_data import (
    ST_TRACE,
    attr_bytes,
    finished_round,
    perf_file,
    perf_pipe,
    record,
    sample,
    sys_enter_raw,
    tracing_blob,
)

from dyntel.sources.perf import abi
from dyntel.sources.perf import data as perf_data
from dyntel.sources.perf.zstd import RECORD_COMPRESSED2

ZSTD_FILES = ["zstd.perf.data", "zstd-pipe.perf.data"]
_SCRIPT_LINE = re.compile(r"^\s*(-?\d+)/(-?\d+)\s+\[(\d+)\]\s+(\S+):\s*$")


def _need_perf() -> None:
    if shutil.which("perf") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("perf is not installed (.ci/run installs linux-perf)")
        pytest.skip("needs perf")


def perf_script_events(path: Path) -> list[tuple[str, int, int, int]]:
    """(name, pid, tid, cpu) of each sample as `perf script` lists them (tid -1 as the u32 perf stores)."""
    pipe = path.read_bytes()[8:16] == struct.pack("<Q", 16)
    with path.open("rb") as f:
        proc = subprocess.run(["perf", "script", "-i", "-" if pipe else str(path), "-F", "pid,tid,cpu,event"],
                              stdin=f if pipe else subprocess.DEVNULL, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = []
    for line in proc.stdout.splitlines():
        m = _SCRIPT_LINE.match(line)
        assert m, f"unexpected perf script line {line!r}"
        out.append((m.group(4), int(m.group(1)) & 0xFFFFFFFF, int(m.group(2)) & 0xFFFFFFFF, int(m.group(3))))
    return out


def dyntel_events(path: Path, *args: str) -> list[tuple[str, int, int, int]]:
    import json

    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl", "--order", "round",
                           "--strict", *args, str(path)], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = []
    for line in proc.stdout.splitlines():
        e = json.loads(line)
        m = e["meta"]
        out.append((e["n"], m["pid"], m["tid"], m["cpu"]))
    return out


@pytest.mark.parametrize("name", ZSTD_FILES)
@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_zstd_recording_lists_the_events_perf_script_lists(name: str, native: bool) -> None:
    _need_perf()
    path = DATA / name
    expected = perf_script_events(path)
    assert len(expected) > 200
    got = dyntel_events(path, *([] if native else ["--no-native"]))
    assert got == expected


@pytest.mark.kernel
@pytest.mark.parametrize("pipe", [False, True], ids=["file", "pipe"])
def test_a_fresh_zstd_recording_lists_the_events_perf_script_lists(pipe: bool, tmp_path: Path) -> None:
    """Recorded now with this machine's perf -z (so a perf that writes COMPRESSED2 is covered when there is one)."""
    _need_perf()
    if os.geteuid() != 0:
        pytest.fail("the kernel tests run as root") if os.environ.get("CI") == "true" else pytest.skip("needs root")
    out = tmp_path / "z.data"
    cmd = ["perf", "record", "-q", "-z", "-e", "sched:sched_switch", "-e", "sched:sched_process_exit",
           "-e", "sched:sched_process_fork", "-o", "-" if pipe else str(out), "--", sys.executable,
           str(DATA / "workload.py")]
    with out.open("ab") as sink:
        proc = subprocess.run(cmd, stdout=sink if pipe else subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-500:]
    head = out.read_bytes()
    assert struct.pack("<IHH", abi.RECORD_COMPRESSED, 0, 0)[:4] in head or struct.pack(
        "<I", RECORD_COMPRESSED2) in head
    expected = perf_script_events(out)
    assert len(expected) > 20  # 4 forks, 4 exits, and the workload's sleeps at the least
    assert dyntel_events(out) == expected


@pytest.mark.parametrize("chunk", [8, 100, 4096])
def test_a_compressed_pipe_read_in_small_chunks(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records split across reads and across COMPRESSED records come out whole."""
    data = (DATA / "zstd-pipe.perf.data").read_bytes()
    whole = _decode(data)
    monkeypatch.setattr(perf_data, "CHUNK", chunk)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: the recording into the pipe, in small pieces
        os.close(r)
        for i in range(0, len(data), 997):
            os.write(w, data[i : i + 997])
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as stream:
        src = perf_data.open_source("pipe", stream, "file")
        streamed = [(e.name, e.pid, e.tid, e.cpu, tuple(map(str, e.values))) for e in src.events()]
    os.waitpid(pid, 0)
    assert src.stats.bad == 0
    assert streamed == whole and len(streamed) > 200


def _decode(data: bytes) -> list[tuple[Any, ...]]:
    src = perf_data.open_source("z", io.BytesIO(data), "file")
    out = [(e.name, e.pid, e.tid, e.cpu, tuple(map(str, e.values))) for e in src.events()]
    assert src.stats.bad == 0
    return out


def _compressed_records(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each COMPRESSED record of a recording (pipe mode, or file mode's data section)."""
    if data[8:16] == struct.pack("<Q", 16):
        pos, end = 16, len(data)
    else:
        pos, size = struct.unpack_from("<QQ", data, 40)
        end = pos + size
    out = []
    while pos + 8 <= end:
        rtype, _, size = struct.unpack_from("<IHH", data, pos)
        extra = struct.unpack_from("<I", data, pos + 8)[0] if rtype == abi.RECORD_HEADER_TRACING_DATA else 0
        if rtype == abi.RECORD_COMPRESSED:
            out.append((pos, size))
        pos += size + extra
    return out


@pytest.mark.parametrize("name", ZSTD_FILES)
def test_a_damaged_compressed_record_is_reported_with_its_offset(name: str, tmp_path: Path) -> None:
    data = bytearray((DATA / name).read_bytes())
    records = _compressed_records(bytes(data))
    assert len(records) >= 2
    pos, size = records[-1]
    data[pos + 8 : pos + size] = b"\xa5" * (size - 8)  # not zstd any more
    bad = tmp_path / name
    bad.write_bytes(bytes(data))
    for extra in ([], ["--no-native"]):
        cmd = [sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl", *extra, str(bad)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0  # decoded what it could, and said what it could not
        assert f"byte {pos}: COMPRESSED record of {size} bytes: its zstd data does not decompress" in proc.stderr
        assert 0 < proc.stdout.count("\n") < len(dyntel_events(DATA / name))
        strict = subprocess.run([*cmd[:4], "--strict", *cmd[4:]], capture_output=True, text=True, check=False)
        assert strict.returncode == 2, strict.stderr


def test_without_the_zstandard_package_the_compressed_records_are_a_problem(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import fails
    src = perf_data.open_source("z", io.BytesIO((DATA / "zstd.perf.data").read_bytes()), "file")
    assert list(src.events()) == [] or src.stats.bad
    assert src.stats.bad == 1
    assert "zstandard package is not installed" in src.stats.problems[0].message


# --- built recordings: the layouts perf writes, and problems located in the zstd data ----------------------------

def _samples(n: int) -> bytes:
    st = ST_TRACE | abi.SAMPLE_IDENTIFIER
    return b"".join(sample(False, st, {"id": 100, "ip": 1, "pid": 7, "tid": 7, "time": 10 + i, "cpu": 0,
                                       "period": 1, "raw": sys_enter_raw(False, i, (1, 2, 3, 4, 5, 6))})
                    for i in range(n))


def _attrs() -> list[tuple[bytes, list[int]]]:
    return [(attr_bytes(False, ST_TRACE | abi.SAMPLE_IDENTIFIER), [100])]


def _tracing() -> bytes:
    from test_perf_data import SYS_ENTER_FORMAT

    return tracing_blob(False, {"raw_syscalls": [SYS_ENTER_FORMAT]})


def _compressed(payload: bytes, v2: bool = False) -> bytes:
    if v2:
        body = struct.pack("<Q", len(payload)) + payload
        body += b"\0" * ((-len(body)) % 8)
        return record(False, RECORD_COMPRESSED2, body)
    return record(False, abi.RECORD_COMPRESSED, payload)


@pytest.mark.parametrize("v2", [False, True], ids=["COMPRESSED", "COMPRESSED2"])
@pytest.mark.parametrize("pipe", [False, True], ids=["file", "pipe"])
def test_a_record_split_across_two_compressed_records(v2: bool, pipe: bool) -> None:
    """perf compresses each ring buffer copy on its own; where the ring wrapped, a record starts in one COMPRESSED
    record and ends in the next, and one zstd context reads across them."""
    plain = _samples(6)
    cut = len(plain) // 2 + 5  # inside a sample
    c = zstandard.ZstdCompressor()
    data = _compressed(c.compress(plain[:cut]), v2) + _compressed(c.compress(plain[cut:]), v2) + finished_round(False)
    features = {abi.HEADER_TRACING_DATA: _tracing(), abi.HEADER_COMPRESSED: b"\0" * 24}
    if pipe:
        rec = perf_pipe(False, _attrs(), data, {abi.HEADER_COMPRESSED: b"\0" * 24}, tracing=_tracing())
    else:
        rec = perf_file(False, _attrs(), data, features)
    src = perf_data.open_source("z", io.BytesIO(rec), "file")
    events = list(src.events())
    assert src.stats.bad == 0, src.stats.problems
    assert [e.values[0] for e in events] == list(range(6))  # sys_enter's id field, in order


def test_a_problem_inside_the_zstd_data_is_located_at_its_compressed_record() -> None:
    plain = _samples(2) + record(False, 3, b"")[:6] + struct.pack("<H", 4) + _samples(1)  # a record of size 4
    head = perf_pipe(False, _attrs(), b"", {abi.HEADER_COMPRESSED: b"\0" * 24}, tracing=_tracing())
    rec = head + _compressed(zstandard.ZstdCompressor().compress(plain))
    src = perf_data.open_source("z", io.BytesIO(rec), "file")
    events = list(src.events())
    assert len(events) == 3
    [problem] = src.stats.problems
    assert problem.offset == len(head)
    assert f"in the zstd data of the COMPRESSED record at byte {len(head)}: decompressed byte {len(_samples(2))}" \
        in problem.message


def test_a_compressed_record_the_header_does_not_announce_is_counted() -> None:
    """File mode expands only what HEADER_COMPRESSED announces; anything else is a problem, never a silent skip."""
    payload = zstandard.ZstdCompressor().compress(_samples(3))
    rec = perf_file(False, _attrs(), _samples(1) + _compressed(payload), {abi.HEADER_TRACING_DATA: _tracing()})
    src = perf_data.open_source("z", io.BytesIO(rec), "file")
    assert len(list(src.events())) == 1
    assert src.stats.bad == 1 and "does not say it is compressed" in src.stats.problems[0].message


def test_pipe_mode_tracing_data_record_of_perf_6_1() -> None:
    """perf 6.1 writes pipe mode's tracing data as a HEADER_TRACING_DATA record with a 16-byte header (type, size,
    u32 data size, 4 bytes of padding) followed by the data, which perf-decode does not read; dyntel does."""
    data = (DATA / "escape-pipe.perf.data").read_bytes()
    pos = 16
    while True:
        rtype, _, size = struct.unpack_from("<IHH", data, pos)
        if rtype == abi.RECORD_HEADER_TRACING_DATA:
            break
        pos += size
    assert size == 16 and struct.unpack_from("<I", data, pos + 8)[0] > 1000
    src = perf_data.open_source("p", io.BytesIO(data), "file")
    events = list(src.events())
    assert src.stats.bad == 0 and len(events) > 100
    switch = next(e for e in events if e.name == "sched_switch")
    assert switch.provider == "sched" and switch.schema.names[:2] == ("prev_comm", "prev_pid")
