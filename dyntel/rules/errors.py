"""Rule-file errors: each one a place (file:line:column) and what was expected there."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dyntel.errors import DyntelError
from dyntel.rules.model import Position, RuleWarning

__all__ = ["RuleError", "RuleErrors", "RuleWarning", "unique_sorted"]


@dataclass(frozen=True, slots=True)
class RuleError:
    position: Position
    message: str

    def __str__(self) -> str:
        return f"{self.position}: {self.message}"

    def to_json(self) -> dict[str, object]:
        p = self.position
        return {"file": p.file, "line": p.line, "column": p.column, "message": self.message}


class RuleErrors(DyntelError):
    """Everything wrong with a set of rule files, all at once: fixing one error per run is slow going."""

    def __init__(self, errors: Iterable[RuleError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def unique_sorted(errors: Iterable[RuleError], file_order: Iterable[str] = ()) -> list[RuleError]:
    """Errors without repeats, by file (in the order the files were given), line and column.

    A macro is checked wherever it is used, so one mistake in it would otherwise be reported once per rule.
    """
    rank = {f: i for i, f in enumerate(file_order)}
    seen: dict[tuple[Position, str], RuleError] = {}
    for e in errors:
        seen.setdefault((e.position, e.message), e)
    return sorted(seen.values(), key=lambda e: (rank.get(e.position.file, len(rank)), e.position.file,
                                               e.position.line, e.position.column))
