"""The action log: one JSON line per action outcome, appended as each action ends, for ops and for machines.

A line holds when it was written, the firing (rule, its time, group, the event's identity and process), the
action's type, status and outputs or reason, and how long it ran:

    {"time": "2026-11-25T10:00:00.123456789Z", "rule": "http-5xx-burst", "firing_time": 1732528800000000000,
     "group": {"pid": 42}, "provider": "MyService", "event": "Request", "pid": 42, "tid": 42,
     "type": "dump", "status": "ok", "path": "...", "size": 1048576, "duration_ms": 84.2}

The file is created 0600 (outcomes name paths and processes) and written whole lines at a time from any thread.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, TextIO

from dyntel.firing import ActionOutcome, Firing
from dyntel.formatting import format_time, json_value


def outcome_record(firing: Firing, outcome: ActionOutcome, duration_s: float) -> dict[str, Any]:
    e = firing.event
    record: dict[str, Any] = {"time": format_time(time.time_ns()), "rule": firing.rule, "firing_time": firing.time,
                              "group": {k: json_value(v) for k, v in firing.group.items()}}
    if e is not None:
        record.update(provider=e.provider, event=e.name, pid=e.pid, tid=e.tid)
    record.update(outcome.to_json())
    record["duration_ms"] = round(duration_s * 1000.0, 3)
    return record


class ActionLog:
    def __init__(self, path: str | os.PathLike[str] | None = None, stream: TextIO | None = None) -> None:
        self.path = path
        self._stream = stream
        self._lock = threading.Lock()
        self.lines = 0

    def _open(self) -> TextIO:
        if self._stream is None:
            assert self.path is not None
            # Made on the first outcome, so a run that never acts leaves no directory behind.
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._stream = os.fdopen(fd, "a", encoding="utf-8")
        return self._stream

    def write(self, firing: Firing, outcome: ActionOutcome, duration_s: float) -> None:
        line = json.dumps(outcome_record(firing, outcome, duration_s), default=str, ensure_ascii=False) + "\n"
        with self._lock:
            stream = self._open()
            stream.write(line)
            stream.flush()
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._stream is not None and self.path is not None:
                self._stream.close()
                self._stream = None
