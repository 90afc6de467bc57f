"""Actions: what a firing does. One module per action type, found by name as `dyntel.actions.<type>`.

An action module exposes

    TYPE = "dump"                     # the type name rules write
    def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome: ...

`spec.options` arrive with their placeholders already expanded (dyntel.actions.placeholders). `run` returns an
`ActionOutcome` whose `detail` holds its outputs (`{"path": ...}`), which later actions of the same firing read as
`{actions.<type>.<key>}`; it may raise, and the scheduler records the failure and goes on with the next action.

The runtime finds a module by its type name (`find_action`), but rule files are checked against a fixed list, so
adding an action type takes, besides its module here: its name in `dyntel.rules.schema.ACTION_TYPES` and its
options model in `ACTION_OPTIONS` (without them a rule naming it is refused as an unknown action), and, for it to
run under the default config, its name in `dyntel.config.DEFAULT_ALLOW`.
"""

from __future__ import annotations

import importlib
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TextIO, cast

from dyntel.actions.artifacts import DEFAULT_ARTIFACT_DIR, ArtifactStores, StoreSettings
from dyntel.firing import ActionOutcome, Firing
from dyntel.queues import QueueRegistry
from dyntel.rules.model import ActionSpec
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


class ActionModule(Protocol):
    TYPE: str

    def run(self, spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome: ...


def deliver_queued(timeout: float) -> list[str]:
    """Let actions that send in the background (otlp alerts) deliver what they queued, before the process ends.
    Returns what they did, a line per collector for the exit summary (exported, refused, dropped, left in the
    spool). Nothing to do, and nothing imported, when no such action ran."""
    if "dyntel.otel.exporter" in sys.modules:
        from dyntel.otel.exporter import close_all, delivery_lines

        return delivery_lines(close_all(timeout=timeout))
    return []


_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_found: dict[str, ActionModule | str] = {}


def unavailable_reason(action_type: str) -> str:
    return f"the {action_type} action is not available in this build"


def find_action(action_type: str) -> ActionModule | str:
    """The module of an action type, or the reason there is none (a string)."""
    found = _found.get(action_type)
    if found is not None:
        return found
    result: ActionModule | str
    if not _TYPE_NAME.fullmatch(action_type):
        result = f"{action_type!r} is not an action type name"
    else:
        name = f"{__name__}.{action_type}"
        try:
            module: ModuleType | None = importlib.import_module(name)
        except ModuleNotFoundError as e:
            module = None
            # Only the module itself missing means "not in this build"; a dependency it lacks is worth naming.
            result = unavailable_reason(action_type) if e.name == name else f"{unavailable_reason(action_type)}: {e}"
        if module is not None:
            if getattr(module, "TYPE", None) != action_type or not callable(getattr(module, "run", None)):
                result = f"{name} is not an action module (it needs TYPE = {action_type!r} and run)"
            else:
                result = cast(ActionModule, module)
    _found[action_type] = result
    return result
