"""Running a firing's actions: in order, each with its placeholders expanded, each outcome recorded on the firing.

The engine hands a firing and its rule's action specs to `Scheduler.submit` and goes on with the next event. The
scheduler here runs them synchronously, which is what a replay wants (outcomes are on the firing when `process`
returns). A live sidecar will want actions off the event path: a scheduler with a worker pool implements the same
`ActionScheduler` protocol (`submit`/`close`) and calls the same `run_actions` on its workers; outcomes then land
on the firing later.

Modes:
- dry run: nothing is executed; every action is recorded with status "dry-run" and its expanded options.
- normal: each action's module runs (`dyntel.actions.<type>`); a type with no module in this build is "skipped"
  with the reason, an action that raises or reports failure is "failed" with the reason, and the next action of
  the firing still runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TextIO

from dyntel.actions import ActionContext, LogWriter, find_action
from dyntel.engine.firing import DRY_RUN, FAILED, SKIPPED, ActionOutcome, Firing
from dyntel.engine.placeholders import expand
from dyntel.rules.model import ActionSpec


class ActionScheduler(Protocol):
    """What the engine needs of a scheduler."""

    def submit(self, firing: Firing, actions: Sequence[ActionSpec]) -> None: ...

    def close(self) -> None: ...


def run_actions(firing: Firing, actions: Sequence[ActionSpec], context: ActionContext) -> None:
    """Run (or, in a dry run, only expand) a firing's actions in order, appending one outcome each."""
    outputs: dict[str, dict[str, Any]] = {}
    for spec in actions:
        outcome = _run_one(spec, firing, context, outputs)
        firing.actions.append(outcome)
        # The latest action of a type is what `{actions.TYPE.KEY}` reads.
        outputs[spec.type] = {"status": outcome.status, **outcome.detail}


def _run_one(spec: ActionSpec, firing: Firing, context: ActionContext,
             outputs: Mapping[str, Mapping[str, Any]]) -> ActionOutcome:
    try:
        options = expand(spec.options, firing, outputs)
    except Exception as e:  # an odd value in a field must not stop the firing's other actions
        return ActionOutcome(spec.type, FAILED, {"reason": f"placeholders: {type(e).__name__}: {e}"})
    if context.dry_run:
        return ActionOutcome(spec.type, DRY_RUN, {"options": options})
    module = find_action(spec.type)
    if isinstance(module, str):
        return ActionOutcome(spec.type, SKIPPED, {"reason": module})
    try:
        outcome = module.run(ActionSpec(spec.type, options, spec.position), firing, context)
    except Exception as e:
        return ActionOutcome(spec.type, FAILED, {"reason": f"{type(e).__name__}: {e}"})
    if not isinstance(outcome, ActionOutcome):
        return ActionOutcome(spec.type, FAILED, {"reason": f"the {spec.type} action returned {type(outcome).__name__}"})
    return outcome


class Scheduler:
    """The synchronous scheduler: runs each firing's actions before `submit` returns."""

    def __init__(self, *, dry_run: bool = False, log: TextIO | None = None,
                 services: Mapping[str, Any] | None = None) -> None:
        self.context = ActionContext(log=LogWriter(log), dry_run=dry_run, services=dict(services or {}))

    @property
    def dry_run(self) -> bool:
        return self.context.dry_run

    def submit(self, firing: Firing, actions: Sequence[ActionSpec]) -> None:
        run_actions(firing, actions, self.context)

    def close(self) -> None:
        pass
