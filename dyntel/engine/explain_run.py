"""`explain_rule`: a whole event stream through an engine, and the records of why one rule did or did not fire.

Apart from dyntel.engine.explain, which the engine itself imports for the records, so that neither module
imports the other from inside a function.
"""

from __future__ import annotations

from collections.abc import Iterable

from dyntel.engine.engine import Engine
from dyntel.engine.explain import ExplainRecord
from dyntel.engine.windows import DEFAULT_MAX_GROUPS
from dyntel.event import Event
from dyntel.rules.model import RuleSet


def explain_rule(rules: RuleSet, events: Iterable[Event], rule_name: str, *, end_ns: int | None = None,
                 max_groups: int | None = None) -> list[ExplainRecord]:
    """Replay `events` (in time order) through an engine that runs no actions (the records do not show them) and
    return the named rule's records.

    `end_ns`: the end of the recording, so absence timers that ran out by then are explained too.
    """
    engine = Engine(rules, None, explain=rule_name,
                    max_groups=max_groups if max_groups is not None else DEFAULT_MAX_GROUPS)
    for event in events:
        engine.process(event)
    if end_ns is not None:
        engine.finish(end_ns)
    return engine.explanations
