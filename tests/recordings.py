"""Every recording the decode tests run through dyntel: the corpus, the committed test recordings of tests/data
(made by tests/data/make-recordings.sh on the host and scripts/vm/make-eventheader-recordings.sh in the
user_events VM) and the bundled demo recording."""

from __future__ import annotations

from pathlib import Path

from support import CORPUS, ROOT, corpus_file

DATA = ROOT / "tests" / "data"
DEMO = ROOT / "dyntel" / "data" / "demo.perf.data"
CORPUS_RECORDINGS = ("linuxtracepoints/perf.data", "linuxtracepoints/EventHeaderInterceptorLE64.dat")


def committed_recordings() -> list[Path]:
    """The committed recordings: tests/data/**/*.perf.data (the OpenTelemetry Rust exporters' in otel-rust/) and
    the demo."""
    return [*sorted(DATA.glob("**/*.perf.data")), DEMO]


def recording_ids() -> list[str]:
    """Test ids: corpus:NAME for the corpus files (resolved in the test, so a missing corpus fails or skips
    there), else the file name."""
    return [f"corpus:{c}" for c in CORPUS_RECORDINGS] + [p.name for p in committed_recordings()]


def resolve(rid: str) -> Path:
    if rid.startswith("corpus:"):
        return corpus_file(rid.removeprefix("corpus:"))
    for p in committed_recordings():
        if p.name == rid:
            return p
    raise LookupError(rid)


def is_pipe_mode(path: Path) -> bool:
    head = path.read_bytes()[:16]
    return head[:8] in (b"PERFILE2", b"2ELIFREP") and int.from_bytes(head[8:16], "little" if head[:1] == b"P"
                                                                       else "big") == 16


__all__ = ["CORPUS", "DATA", "DEMO", "committed_recordings", "is_pipe_mode", "recording_ids", "resolve"]
