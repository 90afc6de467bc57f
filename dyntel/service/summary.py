"""The exit summary's common part, for people (stderr): what was lost or refused on the way, wherever it was.

`dyntel run` and `dyntel replay` end with it, and `dyntel status` shows the same queues live: rule exceptions,
the kernel's losses, every queue's in, out and drops by reason (dyntel.queues), and what the alert senders
delivered. Nothing dropped is left out; a run that dropped nothing says so in one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dyntel.engine.stats import EngineStats
from dyntel.queues import QueueRegistry, format_queues


def rule_error_lines(engine: EngineStats, indent: str = "  ", max_rules: int = 10) -> list[str]:
    """Events on which a rule's code raised (the rule skipped them), by rule, with the last error."""
    failing = sorted(((name, s) for name, s in engine.rules.items() if s.errors), key=lambda item: -item[1].errors)
    if not failing:
        return []
    total = sum(s.errors for _, s in failing)
    lines = [f"{indent}rule errors: {total} event(s) on which a rule raised (the rule skipped them):"]
    for name, s in failing[:max_rules]:
        lines.append(f"{indent}  {name}: {s.errors} (last: {s.last_error})")
    if len(failing) > max_rules:
        lines.append(f"{indent}  ... and {len(failing) - max_rules} more rules")
    return lines


def kernel_lost(source_stats: Any) -> int | None:
    """Samples the kernel dropped for a full ring (live perf sources), None when the source cannot lose any."""
    lost = getattr(source_stats, "lost", None)
    return lost if isinstance(lost, int) else None


def source_line(source_stats: Any) -> str:
    """Records read, events handed on, records not turned into events by reason, kernel losses."""
    st = source_stats
    parts = [f"{st.records} record(s) read", f"{st.events} event(s) decoded"]
    skipped = {k: v for k, v in sorted(st.skipped.items()) if k != "LOST" and v}
    if skipped:
        parts.append("not decoded: " + ", ".join(f"{n} {reason}" for reason, n in skipped.items()))
    parts.append(f"{st.bad} malformed")
    lost = kernel_lost(st)
    if lost is not None:
        parts.append(f"{lost} sample(s) lost by the kernel (full ring)")
    return ", ".join(parts)


def exit_summary(head: str, *, source_stats: Any = None, engine: EngineStats | None = None,
                 queues: QueueRegistry | None = None, delivery: Iterable[str] = ()) -> str:
    """`head` (`dyntel run: 3 firing(s)`), then the source's counts, rule errors, queues and deliveries."""
    lines = [head + (f"; {source_line(source_stats)}" if source_stats is not None else "")]
    if engine is not None:
        lines += rule_error_lines(engine)
    if queues is not None:
        lines += format_queues(queues.to_json())
    lines += [f"  {line}" for line in delivery]
    return "\n".join(lines) + "\n"
