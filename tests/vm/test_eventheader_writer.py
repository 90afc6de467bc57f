"""The EventHeader writer (tests/peers/eventheader-writer: LinuxTracepoints' eventheader_dynamic crate, every field
encoding and format) writing into user_events under `perf record`, in file and pipe mode, and dyntel's decoding of
those recordings compared with the Rust oracle (tests/peers/tracepoint-rs) in the VM.

The Rust programs are built on the host (scripts/peers/build-rust.sh, run by .ci/run) and found here in the host's
peer cache (the guest's root is the host's, read-only). When the job's results export has an `eh-recordings`
folder (scripts/vm/make-eventheader-recordings.sh makes one), the recordings are left there: that is how
tests/data/eh-writer*.perf.data were made.
"""

from __future__ import annotations

import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from vmhelpers import WAIT

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from oracle_rust import DIFFERENCES, comparable_pair, parse_line  # noqa: E402

KEEP = Path("/tmp/vm-results/eh-recordings")  # the results export's folder, when the maker asked for recordings
REPEAT = 3


def peer(name: str, binary: str) -> Path:
    """A Rust peer's binary from the host's cache, as scripts/peers/build-rust.sh --cached finds it."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    env = dict(os.environ, PATH=f"{home / '.cargo' / 'bin'}:{os.environ.get('PATH', '')}",
               RUSTUP_HOME=os.environ.get("DYNTEL_HOST_RUSTUP_HOME", str(home / ".rustup")),
               CARGO_HOME=str(home / ".cargo"),
               DYNTEL_PEERS_CACHE=os.environ.get("DYNTEL_HOST_PEERS_CACHE", str(home / ".cache/dyntel/peers")))
    done = subprocess.run([str(ROOT / "scripts/peers/build-rust.sh"), "--cached", name], capture_output=True,
                          text=True, env=env, check=False)
    if done.returncode != 0:
        pytest.fail(f"peer {name} is not built on the host (scripts/peers/build-rust.sh {name}): {done.stderr}")
    path = Path(done.stdout.strip().splitlines()[-1]) / binary
    assert path.is_file(), path
    return path


class Recorder:
    """`perf record -a` of the given user_events tracepoints into `out` (a file, or pipe mode into `out` with
    -o -), started with its events disabled and enabled through the control pipe, so that nothing written after
    the enable bit flips is lost (see vmhelpers.PerfRecord)."""

    def __init__(self, names: list[str], out: Path, pipe: bool) -> None:
        perf = shutil.which("perf")
        if perf is None:
            pytest.fail("perf not found")
        events = [a for n in names for a in ("-e", f"user_events:{n}")]
        ctl_r, ctl_w = os.pipe()
        ack_r, ack_w = os.pipe()
        self._sink: BinaryIO | None = out.open("wb") if pipe else None
        try:
            self.proc = subprocess.Popen(
                [perf, "record", "-q", *events, "-a", "-o", "-" if pipe else str(out), "-D", "-1",
                 "--control", f"fd:{ctl_r},{ack_w}", *([] if pipe else ["-k", "monotonic"])],
                stdout=self._sink or subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(ctl_r, ack_w))
        finally:
            os.close(ctl_r)
            os.close(ack_w)
        self._pipes = (ctl_w, ack_r)
        os.write(ctl_w, b"enable\n")
        answer = b""
        deadline = time.monotonic() + WAIT
        while b"ack" not in answer:
            ready, _, _ = select.select([ack_r], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(ack_r, 64) if ready else b""
            if not chunk:
                self.stop()
                pytest.fail("perf record never acknowledged 'enable'")
            answer += chunk

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=WAIT)
        for fd in self._pipes:
            os.close(fd)
        if self._sink is not None:
            self._sink.close()
        assert self.proc.returncode in (0, -signal.SIGINT), err


def decode(path: Path, *, stdin: bool = False) -> list[Any]:
    """What `dyntel decode --format jsonl --order file` prints (EventHeader samples go through the Python decoder,
    which is this), in this process: under emulation each interpreter start costs many seconds."""
    from dyntel.event_json import format_event
    from dyntel.sources.perf import data as perf_data
    with path.open("rb") as f:
        if stdin:  # a real pipe: the streaming reader
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                with os.fdopen(w, "wb") as sink:
                    sink.write(f.read())
                os._exit(0)
            os.close(w)
            with os.fdopen(r, "rb") as stream:
                src = perf_data.open_source(str(path), stream, "file")
                lines = [format_event(e, src.field_tags) for e in src.events()]
            os.waitpid(pid, 0)
        else:
            src = perf_data.open_source(str(path), f, "file")
            lines = [format_event(e, src.field_tags) for e in src.events()]
    assert src.stats.bad == 0, src.stats.problems[:5]
    return [parse_line(line.encode("utf-8", "surrogateescape")) for line in lines]


def oracle(path: Path, *, stdin: bool = False) -> list[Any]:
    cmd = [str(peer("tracepoint-rs", "tracepoint-json")), "--order", "file", "/proc/self/fd/0" if stdin else str(path)]
    with path.open("rb") as f:
        done = subprocess.run(cmd, stdin=f if stdin else subprocess.DEVNULL, capture_output=True, timeout=600,
                              check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return [parse_line(line) for line in done.stdout.splitlines()]


def test_writer_recordings_decode_as_the_rust_oracle_decodes_them(tmp_path: Path) -> None:
    writer = subprocess.Popen([str(peer("eventheader-writer", "eh-writer")), "--repeat", str(REPEAT)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    ready = writer.stdout.readline().split()
    assert ready and ready[0] == "ready", (ready, writer.stderr.read() if writer.stderr else "")
    names = ready[1:]
    for name in names:
        assert Path(f"/sys/kernel/tracing/events/user_events/{name}").is_dir(), name
    out = KEEP if KEEP.is_dir() else tmp_path
    file_rec, pipe_rec = out / "eh-writer.perf.data", out / "eh-writer-pipe.perf.data"
    recorders = [Recorder(names, file_rec, pipe=False), Recorder(names, pipe_rec, pipe=True)]
    try:
        stdout, stderr = writer.communicate("go\n", timeout=300)  # both perf sessions record now
    finally:
        for r in recorders:
            r.stop()
    assert writer.returncode == 0, stderr
    wrote = int(stdout.split()[-1])
    assert wrote == 18 * REPEAT
    seen: Counter[str] = Counter()
    for path, stdin in ((file_rec, False), (pipe_rec, True)):
        ours, theirs = decode(path, stdin=stdin), oracle(path, stdin=stdin)
        assert len(ours) == len(theirs) == wrote, (path, len(ours), len(theirs))
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            ca, cb = comparable_pair(a, b, seen, seen)
            assert ca == cb, f"{path.name} event {i}:\n dyntel: {a}\n   Rust: {b}"
    assert set(seen) <= set(DIFFERENCES)
    print(f"{wrote} events in each recording; forgiven differences: {dict(seen)}")
