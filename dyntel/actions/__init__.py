"""Actions: what a firing does. One module per action type, `dyntel.actions.<type>`; adding an action is adding a
module (dyntel.actions.registry says what it declares: TYPE, OPTIONS, run).

`spec.options` arrive at `run` with their placeholders already expanded (dyntel.actions.placeholders). `run` returns
an `ActionOutcome` whose `detail` holds its outputs (`{"path": ...}`), which later actions of the same firing read
as `{actions.<type>.<key>}`; it may raise, and the scheduler records the failure and goes on with the next action.

Besides its module, a type runs under the default config only when it is named in `dyntel.config.DEFAULT_ALLOW`:
what may act on the machine is the operator's choice, not the code's.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dyntel.actions.artifacts import DEFAULT_ARTIFACT_DIR, ArtifactStores, StoreSettings
from dyntel.queues import QueueRegistry
from dyntel.security import DEFAULT_PATTERNS as DEFAULT_REDACT


class LogWriter:
    """dyntel's own log: one line per call, to stderr or a file, whole lines even from several threads."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        text = " ".join(line.splitlines()) + "\n"
        with self._lock:
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(text)
            stream.flush()


@dataclass(slots=True)
class ActionContext:
    """What an action may use besides its options and the firing; shared by all firings of a scheduler."""

    log: Callable[[str], None] = field(default_factory=LogWriter)
    dry_run: bool = False
    # Engine services later actions need (the flight recorder for `record`, the provider enabler for `enable`), by
    # name; an action that finds its service missing reports itself skipped.
    services: Mapping[str, Any] = field(default_factory=dict)
    # Where files go (dumps, stack reports): quota and retention per directory.
    artifacts: ArtifactStores = field(default_factory=lambda: ArtifactStores(StoreSettings(Path(DEFAULT_ARTIFACT_DIR))))
    # time.monotonic() by which this action must be done (set per action by the scheduler). Actions honour it
    # themselves: a capture stops writing and releases the target, a child process is killed.
    deadline: float | None = None
    # Names of environment variables and options whose values are secrets, redacted in dumps and alerts
    # (dyntel.security); empty turns redaction off.
    redact: tuple[str, ...] = DEFAULT_REDACT
    # `exec` runs commands only when the operator said so (`--allow-exec`): a rule file alone must not be able to.
    allow_exec: bool = False
    # The action types the config allows (actions.allow); None: every type (exec still needs allow_exec).
    allowed: tuple[str, ...] | None = None
    # The run's queues (dyntel.queues): an action that queues work for later (otlp's sender and spool) registers
    # its queue here, so its drops show in the metrics and the exit summary.
    queues: QueueRegistry = field(default_factory=QueueRegistry)

    def remaining(self, default: float = 30.0) -> float:
        """Seconds left before the deadline (at least a little, so a late action fails fast, not never)."""
        if self.deadline is None:
            return default
        return max(0.001, self.deadline - time.monotonic())


def deliver_queued(timeout: float) -> list[str]:
    """Let actions that send in the background (otlp alerts) deliver what they queued, before the process ends.
    Returns what they did, a line per collector for the exit summary (exported, refused, dropped, left in the
    spool). Nothing to do, and nothing imported, when no such action ran."""
    if "dyntel.otel.exporter" in sys.modules:
        from dyntel.otel.exporter import close_all, delivery_lines

        return delivery_lines(close_all(timeout=timeout))
    return []
