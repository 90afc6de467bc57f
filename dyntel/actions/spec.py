"""What a rule asks of an action: the type and the options as written, and where. The rules compile into these;
the action runtime and the actions read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dyntel.errors import Position


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action of a rule: its type (`dump`, `log`, ...) and its options as written (placeholders unexpanded)."""

    type: str
    options: dict[str, Any]
    position: Position | None = None
