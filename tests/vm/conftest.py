"""Fixtures of the user_events tests, which need a kernel with CONFIG_USER_EVENTS and root.

tests/test_vm_harness.py runs them in a VM that has both (scripts/vm/run-tests.py); on any other machine they run if
the kernel allows and are skipped otherwise, except inside that VM (DYNTEL_IN_VM=1), where a missing user_events is
a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vmhelpers import DATA, HERE, IN_VM, PerfRecord, Producer

# The host tests' helpers (tests/peers.py, tests/otel_expect.py) serve the VM tests too.
sys.path.insert(0, str(HERE.parent))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.user_events)


@pytest.fixture(autouse=True)
def _needs_user_events() -> None:
    reason = None
    if not DATA.exists():
        reason = f"{DATA} missing: this kernel lacks CONFIG_USER_EVENTS (run them in the VM: docs/vm.md)"
    elif not os.access(DATA, os.W_OK):
        reason = f"{DATA} is not writable by this user (run as root)"
    if reason is not None:
        if IN_VM:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def producers() -> Iterator[Callable[[str], Producer]]:
    started: list[Producer] = []

    def start(name: str) -> Producer:
        p = Producer(name)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


@pytest.fixture
def perf_records() -> Iterator[Callable[[str, Path], PerfRecord]]:
    started: list[PerfRecord] = []

    def start(name: str, out: Path) -> PerfRecord:
        r = PerfRecord(name, out)
        started.append(r)
        return r

    yield start
    for r in started:
        r.kill()
