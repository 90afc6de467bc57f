"""Running a firing's actions: in order, each with its placeholders expanded, each outcome recorded on the firing.

`ActionRuntime` is what every scheduler runs actions with: the `ActionContext` actions see (log, artifact stores,
services), the per-type limits (dyntel.runtime.limits), the action log and the outcome counts. Two
schedulers share it:
- `Scheduler` runs a firing's actions before `submit` returns: what a replay and `dyntel test` want (outcomes are on
  the firing when the engine hands it back).
- `PooledScheduler` (dyntel.runtime.pool) runs them on a bounded pool of workers, off the event path: `dyntel run`.

Per action:
- dry run: nothing is executed; the action is recorded with status "dry-run" and its expanded options.
- a type with no module in this build: "skipped" with the reason.
- over a limit of its type (busy, or too many in the window): "skipped" with the limit, never queued for later.
- otherwise its module runs with a deadline (`timeout` option, else its type's default); an action that raises, or
  reports failure, is "failed" with the reason, and the firing's next action still runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from dyntel.actions import ActionContext, LogWriter
from dyntel.actions.artifacts import DEFAULT_ARTIFACT_DIR, ArtifactStores, StoreSettings
from dyntel.actions.placeholders import expand
from dyntel.actions.registry import UnknownAction, find_action
from dyntel.actions.spec import ActionSpec
from dyntel.firing import DRY_RUN, FAILED, SKIPPED, ActionOutcome, Firing
from dyntel.queues import QueueRegistry
from dyntel.runtime.action_log import ActionLog
from dyntel.runtime.limits import ActionGate, TypeLimits
from dyntel.units import parse_duration


class ActionRuntime:
    def __init__(self, *, dry_run: bool = False, log: TextIO | None = None,
                 services: Mapping[str, Any] | None = None, artifacts: StoreSettings | None = None,
                 limits: Mapping[str, TypeLimits] | None = None, action_log: ActionLog | None = None,
                 allow_exec: bool = False, queues: QueueRegistry | None = None) -> None:
        stores = ArtifactStores(artifacts or StoreSettings(Path(DEFAULT_ARTIFACT_DIR)))
        self.context = ActionContext(log=LogWriter(log), dry_run=dry_run, services=dict(services or {}),
                                     artifacts=stores, allow_exec=allow_exec, queues=queues or QueueRegistry())
        self.gate = ActionGate(dict(limits or {}))
        self.action_log = action_log
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (type, status) -> count
        self.seconds: dict[str, float] = {}  # type -> time spent running

    @property
    def dry_run(self) -> bool:
        return self.context.dry_run

    def record(self, firing: Firing, outcome: ActionOutcome, duration_s: float) -> None:
        self.outcomes[(outcome.type, outcome.status)] += 1
        self.seconds[outcome.type] = self.seconds.get(outcome.type, 0.0) + duration_s
        if self.action_log is not None:
            self.action_log.write(firing, outcome, duration_s)

    def close(self) -> None:
        if self.action_log is not None:
            self.action_log.close()


def run_actions(firing: Firing, actions: Sequence[ActionSpec], runtime: ActionRuntime) -> None:
    """Run (or, in a dry run, only expand) a firing's actions in order, appending one outcome each."""
    outputs: dict[str, dict[str, Any]] = {}
    for spec in actions:
        start = time.monotonic()
        outcome = _run_one(spec, firing, runtime, outputs)
        firing.actions.append(outcome)
        runtime.record(firing, outcome, time.monotonic() - start)
        # The latest action of a type is what `{actions.TYPE.KEY}` reads.
        outputs[spec.type] = {"status": outcome.status, **outcome.detail}


def _timeout(options: Mapping[str, Any], default: float) -> float:
    value = options.get("timeout")
    if value is None:
        return default
    return parse_duration(value) / 1e9 if isinstance(value, str) else float(value)


def _run_one(spec: ActionSpec, firing: Firing, runtime: ActionRuntime,
             outputs: Mapping[str, Mapping[str, Any]]) -> ActionOutcome:
    context = runtime.context
    try:
        options = expand(spec.options, firing, outputs)
    except Exception as e:  # an odd value in a field must not stop the firing's other actions
        return ActionOutcome(spec.type, FAILED, {"reason": f"placeholders: {type(e).__name__}: {e}"})
    if context.dry_run:
        return ActionOutcome(spec.type, DRY_RUN, {"options": options})
    if context.allowed is not None and spec.type not in context.allowed:
        how = "pass --allow-exec or add exec" if spec.type == "exec" else f"add {spec.type}"
        return ActionOutcome(spec.type, SKIPPED, {"reason": f"{spec.type} actions are not allowed by the config "
                                                            f"(actions.allow: {', '.join(context.allowed)}; "
                                                            f"{how} to actions.allow to run them)"})
    try:
        module = find_action(spec.type).module
    except UnknownAction as e:
        return ActionOutcome(spec.type, SKIPPED, {"reason": e.reason})
    try:
        timeout = _timeout(options, runtime.gate.limits_for(spec.type).timeout_s)
    except ValueError as e:
        return ActionOutcome(spec.type, FAILED, {"reason": f"timeout: {e}"})
    refused = runtime.gate.enter(spec.type)
    if refused is not None:
        return ActionOutcome(spec.type, SKIPPED, {"reason": refused})
    try:
        mine = _with_deadline(context, time.monotonic() + timeout)
        outcome = module.run(ActionSpec(spec.type, options, spec.position), firing, mine)
    except TimeoutError as e:
        return ActionOutcome(spec.type, FAILED, {"reason": f"timeout: {e or f'took longer than {timeout:g}s'}"})
    except Exception as e:
        return ActionOutcome(spec.type, FAILED, {"reason": f"{type(e).__name__}: {e}"})
    finally:
        runtime.gate.leave(spec.type)
    if not isinstance(outcome, ActionOutcome):
        return ActionOutcome(spec.type, FAILED, {"reason": f"the {spec.type} action returned {type(outcome).__name__}"})
    return outcome


_CONTEXT_FIELDS = tuple(f.name for f in dataclasses.fields(ActionContext))


def _with_deadline(context: ActionContext, deadline: float) -> ActionContext:
    """A copy of `context` with its deadline: dataclasses.replace does the same in 10 us, a third of a signal's."""
    mine = object.__new__(ActionContext)
    for name in _CONTEXT_FIELDS:
        object.__setattr__(mine, name, getattr(context, name))
    mine.deadline = deadline
    return mine


class Scheduler:
    """The synchronous scheduler: runs each firing's actions before `submit` returns."""

    def __init__(self, *, dry_run: bool = False, log: TextIO | None = None,
                 services: Mapping[str, Any] | None = None, runtime: ActionRuntime | None = None,
                 on_done: Callable[[Firing], None] | None = None) -> None:
        self.runtime = runtime or ActionRuntime(dry_run=dry_run, log=log, services=services)
        self.on_done = on_done

    @property
    def context(self) -> ActionContext:
        return self.runtime.context

    @property
    def dry_run(self) -> bool:
        return self.runtime.dry_run

    def submit(self, firing: Firing, actions: Sequence[ActionSpec]) -> None:
        run_actions(firing, actions, self.runtime)
        if self.on_done is not None:
            self.on_done(firing)

    def close(self) -> None:
        self.runtime.close()
