"""ETW providers as a live session enables them: by GUID or by TraceLogging name, with level and keywords."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from dyntel.encoders.tracelogging import provider_id

ALL_KEYWORDS = 0xFFFFFFFFFFFFFFFF
LEVEL_VERBOSE = 5


@dataclass(slots=True, frozen=True)
class ProviderSpec:
    """One provider to enable and how."""

    guid: bytes  # 16 bytes as stored
    name: str = ""
    level: int = LEVEL_VERBOSE
    match_any: int = ALL_KEYWORDS
    match_all: int = 0
    stack: bool = False

    @property
    def guid_text(self) -> str:
        return str(uuid.UUID(bytes_le=self.guid))


def provider(ident: str, *, level: int = LEVEL_VERBOSE, match_any: int = ALL_KEYWORDS, match_all: int = 0,
             stack: bool = False) -> ProviderSpec:
    """A provider by GUID ("{...}" or bare) or by TraceLogging provider name (its GUID derived from the name)."""
    text = ident.strip()
    try:
        guid = uuid.UUID(text.strip("{}")).bytes_le
        name = ""
    except ValueError:
        guid, name = provider_id(text), text
    if not 0 <= level <= 255:
        raise ValueError(f"level {level} is not 0..255")
    return ProviderSpec(guid, name, level, match_any & ALL_KEYWORDS, match_all & ALL_KEYWORDS, stack)
