"""perf.data held whole (file mode, or pipe mode in memory), through every path that reads it:

- the Python record loop (`dyntel decode`, `dyntel replay`): it yields events and counts malformed records, each
  with a byte offset inside the file, or refuses the file with a DecodeError/UnsupportedFormat that names one;
- the native JSON writer (dyntel._speedups via perf_fast.write_samples): it writes exactly what the Python path
  writes, or declines having written nothing;
- the native pre-filter (dyntel._prefilter, used when rules filter a replay): it keeps exactly the samples the
  record loop keeps under the same event filter, and with field tests, the ones whose fields pass them.

Any other outcome is a finding.

    python -m fuzz.perf_file [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.perf_file --run FILE...                          run inputs once
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from fuzz.common import Finding, drain, entry

MODULES = ["dyntel.sources.recordings", "dyntel.sources.perf.data", "dyntel.sources.perf.records",
           "dyntel.sources.perf.fast",
           "dyntel.sources.files.interceptor_dat", "dyntel.sources.etw.etl", "dyntel.sources.files.jsonl",
           "dyntel.event_json"]
NAME = "fuzz.data"


def _open(data: bytes) -> Any:
    """The source, or None when the file is refused as documented (an error naming a byte offset)."""
    from dyntel.errors import DecodeError, UnsupportedFormat
    from dyntel.sources.recordings import open_recording_bytes

    try:
        return open_recording_bytes(data, NAME)
    except UnsupportedFormat:
        return None
    except DecodeError as e:
        if e.offset is None:
            raise Finding(f"DecodeError without a byte offset: {e}") from e
        return None


def decode(data: bytes, **settings: Any) -> tuple[list[str], Any] | None:
    """Each event as JSON, and the source (its stats checked); None when refused."""
    source = _open(data)
    if source is None:
        return None
    for k, v in settings.items():
        setattr(source, k, v)
    lines = drain(source, len(data))
    return lines, source


def _fast(data: bytes, lines: list[str]) -> None:
    from dyntel.event_json import format_event  # noqa: F401 - the Python path's output is `lines`
    from dyntel.sources.perf import fast as perf_fast
    from dyntel.sources.perf.data import PerfDataSource

    source = _open(data)
    if not isinstance(source, PerfDataSource):
        return
    events = source.events()
    fd = os.memfd_create("fuzz-fast")
    try:
        written = perf_fast.write_samples(source, fd)
        size = os.lseek(fd, 0, os.SEEK_END)
        if written is None:
            if size:
                raise Finding(f"the native writer declined after writing {size} bytes")
            return
        os.lseek(fd, 0, os.SEEK_SET)
        out = os.read(fd, size) if size else b""
    finally:
        os.close(fd)
        events.close()
    expected = "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")
    if out != expected:
        raise Finding(f"the native writer wrote {written} samples that differ from the Python decoder's "
                      f"{len(lines)} events:\n native {out[:300]!r}\n python {expected[:300]!r}")


def _keep(provider: str, name: str, level: int | None) -> bool:
    return (len(provider) + len(name)) % 2 == 0


def _tests_from(events: list[Any]) -> dict[tuple[str, str], tuple[tuple[str, str, tuple[int, ...]], ...]]:
    """Per event type, one field test the first event of the type passes (>=) and others may not."""
    tests: dict[tuple[str, str], tuple[tuple[str, str, tuple[int, ...]], ...]] = {}
    for e in events:
        key = (e.provider, e.name)
        if key in tests:
            continue
        for k, v in e.fields.items():
            if type(v) is int:
                tests[key] = ((k, ">=", (v,)),)
                break
    return tests


def _passes(event: Any, tests: tuple[tuple[str, str, tuple[int, ...]], ...] | None) -> bool:
    if not tests:
        return True
    fields = event.fields
    return all(type(fields.get(k)) is not int or fields[k] >= vs[0] for k, _op, vs in tests)


def _prefilter(data: bytes) -> None:
    from dyntel.event_json import format_event
    from dyntel.sources.perf.data import PerfDataSource

    slow = decode(data, want=_keep, native_filter=False)
    fast = decode(data, want=_keep, native_filter=True)
    if slow is None or fast is None or not isinstance(slow[1], PerfDataSource):
        return
    if fast[0] != slow[0] or fast[1].stats.bad != slow[1].stats.bad:
        raise Finding(f"the native pre-filter kept {len(fast[0])} events ({fast[1].stats.bad} bad), the record "
                      f"loop {len(slow[0])} ({slow[1].stats.bad} bad):\n native {fast[0][:3]}\n python "
                      f"{slow[0][:3]}")
    # Field tests: the native filter applies them; the record loop does not, so compare with its events filtered
    # in Python. Only files the record loop reads without a problem: the pre-filter declines others.
    if slow[1].stats.bad:
        return
    source = _open(data)
    assert isinstance(source, PerfDataSource)
    everything = list(source.events())
    tests = _tests_from(everything)
    if not tests:
        return
    filtered = decode(data, want=_keep, native_filter=True,
                      field_filter=lambda p, n: [tests[(p, n)]] if (p, n) in tests else None)
    assert filtered is not None
    expected = [format_event(e) for e in everything
                if _keep(e.provider, e.name, e.level) and _passes(e, tests.get((e.provider, e.name)))]
    # The tests are necessary conditions: the filter may keep more, never fewer.
    missing = Counter(expected) - Counter(filtered[0])
    if missing:
        raise Finding(f"with field tests {tests} the native pre-filter dropped {sum(missing.values())} events "
                      f"that pass them, e.g. {next(iter(missing))}")


def run(data: bytes) -> None:
    decoded = decode(data)
    if decoded is None:
        return
    _fast(data, decoded[0])
    _prefilter(data)


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
