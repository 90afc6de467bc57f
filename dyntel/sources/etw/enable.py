"""The `enable` action's service on Windows: providers turned on in dyntel's running ETW session for a while."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from time import time_ns
from typing import Protocol

from dyntel.sources.enabler import ALL_KEYWORDS as GRANT_ALL_KEYWORDS
from dyntel.sources.enabler import EnableBook, EnableError, EnableResult, Grant
from dyntel.sources.etw.providers import ALL_KEYWORDS, ProviderSpec, provider
from dyntel.sources.perf.tracefs import LiveSetupError


class EtwSession(Protocol):
    """What the enabler needs of a live session (dyntel.sources.etw.live.EtwLiveSource)."""

    providers: dict[bytes, ProviderSpec]

    def add(self, spec: ProviderSpec) -> None: ...

    def remove(self, ident: bytes | str) -> bool: ...

    def set_provider(self, ident: bytes | str, *, level: int | None = None, match_any: int | None = None,
                     match_all: int | None = None, stack: bool | None = None) -> ProviderSpec: ...


class EtwEnabler:
    """The `enable` action's service on Windows (dyntel.sources.enabler.ProviderEnabler): a grant turns a provider
    on in the running session at the merged level and keywords of its live grants (EnableTraceEx2 through
    `set_provider`), and when the last grant of a provider ends it goes back to how rules or the command line had
    it, or off. EnableTraceEx2 may be called from any thread, so `enable` applies at once; `poll` (the engine
    thread, between events and when idle, while `armed`) applies expiries.
    """

    def __init__(self, source: EtwSession, *, log: Callable[[str], None] | None = None) -> None:
        self.source = source
        self.log = log
        self.book = EnableBook()
        self.armed = False
        self._lock = threading.Lock()
        self._base: dict[bytes, ProviderSpec | None] = {}  # how each granted provider was before its first grant
        self._closed = False

    def enable(self, provider_name: str, level: int, keyword: int, until_ns: int, *, event: str | None = None,
               timeout: float = 5.0) -> EnableResult:
        if event is not None:
            raise EnableError(f"event {event!r}: an ETW provider is enabled by level and keyword, not by event name")
        if not 0 <= level <= 255:
            raise EnableError(f"level {level} is not 0-255")
        if keyword < 0 or keyword >= 1 << 64:
            raise EnableError(f"keyword {keyword:#x} is not a 64-bit mask")
        try:
            spec = provider(provider_name)
        except ValueError as e:
            raise EnableError(f"provider {provider_name!r}: {e}") from None
        with self._lock:
            if self._closed:
                raise EnableError("dyntel is stopping: nothing more is turned on")
            opened = spec.guid not in self.source.providers
            self._base.setdefault(spec.guid, self.source.providers.get(spec.guid))
            self.book.add(Grant(provider_name, level, keyword, until_ns))
            try:
                self._apply(provider_name, spec.guid)
            except LiveSetupError as e:
                raise EnableError(str(e)) from None
            self.armed = True
            merged = self.book.merged(provider_name)
            name = spec.name or spec.guid_text
            return EnableResult(names=[name], opened=[name] if opened else [],
                                until_ns=merged.until_ns if merged is not None else until_ns)

    def _apply(self, provider_name: str, guid: bytes) -> None:
        """Set the provider to its base merged with its live grants, or back to its base when none is left."""
        merged = self.book.merged(provider_name)
        base = self._base.get(guid)
        if merged is None:
            self._base.pop(guid, None)
            if base is None:
                self.source.remove(guid)
            else:
                self.source.add(base)
            return
        grant_any = ALL_KEYWORDS if merged.keyword == GRANT_ALL_KEYWORDS else merged.keyword
        if base is None:
            self.source.set_provider(provider_name, level=merged.level, match_any=grant_any, match_all=0)
        else:
            self.source.add(replace(base, level=max(base.level, merged.level), match_any=base.match_any | grant_any,
                                    match_all=0))

    def poll(self) -> None:
        if self.book.next_expiry() <= time_ns():
            self.apply()

    def apply(self, now_ns: int | None = None) -> None:
        """End the grants that are over by `now_ns` and put their providers back."""
        with self._lock:
            gone = self.book.expire(time_ns() if now_ns is None else now_ns)
            for name in dict.fromkeys(g.provider for g in gone):
                try:
                    self._apply(name, provider(name).guid)
                except (LiveSetupError, ValueError) as e:
                    if self.log is not None:
                        self.log(f"dyntel: enable: {name}: {e}")
            self.armed = bool(self.book.grants)

    def close(self) -> None:
        """Put every granted provider back (at exit, on the engine thread) and refuse new grants."""
        with self._lock:
            self._closed = True
        self.apply(now_ns=1 << 127)
