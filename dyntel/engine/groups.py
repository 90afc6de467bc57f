"""Groups: the tuple of a window's `group_by` values, made hashable, and the LRU map of groups with its cap that
every window kind (dyntel.engine.windows) keeps its state in. See windows.py for the choices (a missing value is
None, and None is a group of its own; past `max_groups`, expired groups go first, then the least recently matched).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from dyntel.engine.stats import RuleStats
from dyntel.event import Event
from dyntel.formatting import json_value
from dyntel.rules.model import GroupKeys, Window

GroupKey = tuple[Any, ...]

_SCALARS = (int, str, float, bool, bytes, type(None))


def _hashable(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    return repr(value)


Keyer = Callable[[Event], tuple[GroupKey, tuple[Any, ...]]]


def _no_group(event: Event) -> tuple[GroupKey, tuple[Any, ...]]:
    return (), ()


def make_keyer(keys: GroupKeys) -> Keyer:
    """A function giving the hashable key of an event's group and the raw values it was built from; one or no key
    (the usual group_by) skips the generic loop."""
    getters = keys.getters
    if not getters:
        return _no_group
    if len(getters) == 1:
        get = getters[0]

        def one(event: Event) -> tuple[GroupKey, tuple[Any, ...]]:
            v = get(event)
            raw = (v,)
            return (raw if isinstance(v, _SCALARS) else (_hashable(v),)), raw

        return one

    def several(event: Event) -> tuple[GroupKey, tuple[Any, ...]]:
        raw = tuple([g(event) for g in getters])
        return tuple([v if isinstance(v, _SCALARS) else _hashable(v) for v in raw]), raw

    return several


def group_dict(keys: GroupKeys, raw: tuple[Any, ...]) -> dict[str, Any]:
    return {name: json_value(v) for name, v in zip(keys.names, raw, strict=True)}


class Groups:
    """The LRU map of groups every window kind shares, with the cap."""

    __slots__ = ("groups", "key_of", "max_groups", "stats", "within")

    def __init__(self, within: int, max_groups: int, stats: RuleStats, keys: GroupKeys) -> None:
        self.groups: OrderedDict[GroupKey, Any] = OrderedDict()
        self.key_of = make_keyer(keys)
        self.within = within
        self.max_groups = max_groups
        self.stats = stats

    def _dead(self, g: Any, now: int) -> bool:
        return bool(g.last < now - self.within)

    def rebind(self, spec: Window) -> None:
        """Carry the state over to an equivalent window of a reloaded rule (same fingerprint), so the old rule's
        compiled code can go."""
        raise NotImplementedError

    def purge(self, now: int) -> None:
        """Drop groups whose every event has left the window (they would behave as new ones)."""
        groups = self.groups
        while groups:
            key = next(iter(groups))
            if not self._dead(groups[key], now):
                break
            del groups[key]

    def _insert(self, key: GroupKey, g: Any, now: int) -> None:
        groups = self.groups
        if len(groups) >= self.max_groups:
            self.purge(now)
            while len(groups) >= self.max_groups:
                groups.popitem(last=False)
                self.stats.groups_evicted += 1
        groups[key] = g

    def __len__(self) -> int:
        return len(self.groups)
