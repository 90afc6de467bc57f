"""Shared test helpers: where the reference corpus lives (and how its absence is treated), a hang guard."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _find_corpus() -> Path:
    """DYNTEL_CORPUS if set; else ../shared/corpus beside this checkout; else beside the checkout this one was
    cloned from (a local `git clone . /tmp/fresh` keeps finding the corpus of the repository it came from)."""
    if "DYNTEL_CORPUS" in os.environ:
        return Path(os.environ["DYNTEL_CORPUS"])
    beside = ROOT.parent / "shared" / "corpus"
    if beside.exists():
        return beside
    import subprocess

    url = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"], capture_output=True,
                         text=True, check=False).stdout.strip()
    origin = Path(url.removeprefix("file://"))
    if url and origin.is_absolute() and (origin.parent / "shared" / "corpus").exists():
        return origin.parent / "shared" / "corpus"
    return beside


CORPUS = _find_corpus()


def corpus_file(rel: str) -> Path:
    """A file of ../shared/corpus. Missing: a failure in CI (CI=true), a skip elsewhere."""
    path = CORPUS / rel
    if not path.exists():
        message = f"reference corpus file missing: {path} (set DYNTEL_CORPUS to the corpus folder)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def load_reference_json(path: Path) -> list[tuple[str, object]]:
    """The reference decoder's output as (label, events) pairs, duplicates and key order kept.

    The reference files start with a UTF-8 BOM, may lack the outer braces, and hold bytes that are not UTF-8
    (code points above U+10FFFF written in the old 5- and 6-byte forms); those bytes become surrogate escapes.
    """
    import json

    text = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape").strip()
    if not text.startswith("{"):
        text = "{" + text + "}"
    pairs: list[tuple[str, object]] = json.loads(text, object_pairs_hook=list)
    return pairs


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Turn a hang into a failure: SIGALRM after `seconds` raises TimeoutError in the code under test."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds}s: a hang")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class CaptureTarget:
    """tests/capture_target.py running as a child: its first JSON line in `info`, its heartbeat on demand."""

    def __init__(self, alloc_mb: int = 0) -> None:
        import json
        import subprocess
        import sys

        self._json = json
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "capture_target.py"),
                                      "--alloc-mb", str(alloc_mb)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.info: dict[str, object] = json.loads(self.proc.stdout.readline())
        self.pid = int(self.info["pid"])  # type: ignore[call-overload]

    def _command(self, word: str) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"capture target {self.pid} died (exit {self.proc.poll()})")
        result: dict[str, object] = self._json.loads(line)
        return result

    def mark(self) -> None:
        """Start measuring the heartbeat's gaps afresh."""
        self._command("mark")

    def heartbeat(self) -> dict[str, object]:
        """Gaps since mark(): beats, max_gap_ms, p99_gap_ms. Also proves the target is alive and answering."""
        return self._command("report")

    def wait_beats(self, beats: int, timeout: float = 30.0) -> dict[str, object]:
        """The heartbeat report once `beats` beats came since mark(): the target runs again. A hang guard, not a
        time limit: how soon it resumes is measured by benchmarks/capture.py, not asserted by the tests."""
        import time

        end = time.monotonic() + timeout
        while True:
            report = self.heartbeat()
            if int(report["beats"]) >= beats:  # type: ignore[call-overload]
                return report
            if time.monotonic() > end:
                raise AssertionError(f"the target did not run again: {report}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> CaptureTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def native_module(name: str) -> ModuleType:
    """An optional C extension (dyntel._speedups, dyntel._prefilter). Not built: a failure in CI, where the
    install must have built it (gcc and python3-dev are installed there), a skip elsewhere."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        message = f"{name} is not built ({e}): reinstall with a C compiler and the Python headers"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)


def untagged(value: object) -> object:
    """A decoded event (parsed with object_pairs_hook=list) with the EventHeader field tags taken out of its keys:
    "Struct20;tag=0xBEEF" -> "Struct20". The corpus's perf.data.linux.json was printed by a perf-decode that did
    not show tags (its .dat output and perf-decode 1.4 do); dyntel shows them, so that file is compared untagged
    and the tags themselves are checked against the .dat output and the Rust oracle (tests/test_oracle_rust.py)."""
    if isinstance(value, list):
        if value and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value):
            return [(k.split(";tag=0x", 1)[0], untagged(v)) for k, v in value]
        return [untagged(v) for v in value]
    return value


def tagged_keys(value: object, prefix: str = "") -> list[str]:
    """Every key path with a ";tag=0x" in it, in order: ["Struct20;tag=0xBEEF", "Struct20;tag=0xBEEF/hi;tag=0x12"]."""
    out: list[str] = []
    if isinstance(value, list):
        pairs = value and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value)
        for item in value:
            if pairs:
                k, v = item
                if ";tag=0x" in k:
                    out.append(prefix + k)
                out.extend(tagged_keys(v, prefix + k + "/"))
            else:
                out.extend(tagged_keys(item, prefix))
    return out
