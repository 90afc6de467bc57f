"""Under CI (CI=true) a skip is a failure unless tests/ci_skips.txt allows it: a test that cannot run where CI
runs hides a gap, and nobody reads skip counts. The allowed skips are listed at the end of the run with why."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dyntel.sources.perf.live import PerfLiveSource

ALLOWLIST = Path(__file__).resolve().parent / "ci_skips.txt"
UNDER_CI = os.environ.get("CI", "").lower() == "true"


@dataclass(frozen=True)
class AllowedSkip:
    nodeid: str  # a glob over the test's node id
    reason: str  # a substring of the skip's reason
    why: str  # why this skip is right under CI
    line: int


def load_allowlist(path: Path = ALLOWLIST) -> list[AllowedSkip]:
    """`NODEID_GLOB :: REASON_SUBSTRING :: WHY` a line; # comments and blank lines ignored."""
    entries: list[AllowedSkip] = []
    if not path.exists():
        return entries
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        parts = [p.strip() for p in text.split("::")]
        # A node id holds "::" itself: the last two parts are the reason and the why, the rest the glob.
        if len(parts) < 3 or not parts[-1] or not parts[-2]:
            raise pytest.UsageError(f"{path}:{number}: expected 'NODEID_GLOB :: REASON_SUBSTRING :: WHY', got {raw!r}")
        entries.append(AllowedSkip("::".join(parts[:-2]), parts[-2], parts[-1], number))
    return entries


def _reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _allowed(nodeid: str, reason: str) -> AllowedSkip | None:
    for entry in _ENTRIES:
        if fnmatch.fnmatchcase(nodeid, entry.nodeid) and entry.reason in reason:
            return entry
    return None


_ENTRIES = load_allowlist()
_SEEN: list[tuple[str, str, AllowedSkip]] = []


def _judge(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not UNDER_CI or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _reason(report.longrepr)
    entry = _allowed(report.nodeid, reason)
    if entry is not None:
        _SEEN.append((report.nodeid, reason, entry))
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI and not allowed by {ALLOWLIST.name}: {reason}\n"
                       f"(make it run here, or add 'NODEID_GLOB :: REASON :: WHY' to tests/{ALLOWLIST.name})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    outcome = yield
    _judge(outcome.get_result())
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    _judge(outcome.get_result())
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not UNDER_CI:
        return
    terminalreporter.section(f"skips under CI ({len(_SEEN)}, each allowed by tests/{ALLOWLIST.name})")
    for nodeid, reason, entry in _SEEN:
        terminalreporter.write_line(f"{nodeid}: {reason} -- allowed (line {entry.line}): {entry.why}")


# --- shared fixtures ------------------------------------------------------------------------------------------------

def refuse(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def live() -> Iterator[list[PerfLiveSource]]:
    """Live sources a test made (closed after it); skips, or fails under CI, when this machine cannot trace."""
    from dyntel.sources.perf.live import PerfLiveSource
    from dyntel.sources.perf.tracefs import LiveSetupError

    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers here are x86-64's")
    try:
        PerfLiveSource().close()
        probe = PerfLiveSource()
        probe.open()
        probe.close()
    except LiveSetupError as e:
        refuse(f"live tracing refused here: {e}")
    made: list[PerfLiveSource] = []
    yield made
    for src in made:
        src.close()
