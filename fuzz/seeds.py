"""Seed inputs for each target, made from the reference corpus (../shared/corpus, or DYNTEL_CORPUS), the project's
own recordings and rule files, and the recordings the tests build byte by byte. Nothing here is committed: seeds
are made into a directory when the runner starts.

Large recordings are cut down to their metadata and first records, so that each fuzz execution stays short and
mutations land on the bytes that matter.

    python -m fuzz.seeds OUT_DIR [TARGET...]
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from fuzz.common import ROOT

Seeds = Iterator[bytes]


def corpus_dir() -> Path | None:
    """As tests/support.py finds it: DYNTEL_CORPUS, else ../shared/corpus beside the checkout."""
    if "DYNTEL_CORPUS" in os.environ:
        return Path(os.environ["DYNTEL_CORPUS"])
    beside = ROOT.parent / "shared" / "corpus"
    return beside if beside.exists() else None


def _corpus(rel: str) -> bytes | None:
    base = corpus_dir()
    if base is None or not (base / rel).exists():
        return None
    return (base / rel).read_bytes()


def _test_module(name: str) -> object:
    """A test module of tests/ (for the recordings its builders make)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import importlib

    return importlib.import_module(name)


# ---------------------------------------------------------------------------------------------------------------
# perf.data, cut down

_FILE_HEADER = struct.Struct("<8sQQ2Q2Q2Q4Q")


def _records(data: bytes, pos: int, end: int) -> Iterator[tuple[int, bytes]]:
    while pos + 8 <= end:
        rtype, _misc, size = struct.unpack_from("<IHH", data, pos)
        if size < 8 or pos + size > end:
            return
        yield rtype, data[pos : pos + size]
        pos += size


def _cut_records(records: Iterator[tuple[int, bytes]], samples: int) -> bytes:
    """The records up to the `samples`-th SAMPLE, ending with a FINISHED_ROUND."""
    out = []
    n = 0
    for rtype, rec in records:
        out.append(rec)
        if rtype == 9:
            n += 1
            if n >= samples:
                break
    out.append(struct.pack("<IHH", 68, 0, 8))
    return b"".join(out)


def file_parts(data: bytes) -> tuple[list[tuple[bytes, list[int]]], dict[int, bytes], bytes] | None:
    """A little-endian file-mode perf.data as (attrs with their ids, feature sections by bit, data section)."""
    if len(data) < _FILE_HEADER.size or data[:8] != b"PERFILE2":
        return None
    (_m, _size, attr_size, attrs_off, attrs_size, data_off, data_size, _eo, _es,
     *flags) = _FILE_HEADER.unpack_from(data)
    attrs = []
    for p in range(attrs_off, attrs_off + attrs_size, attr_size):
        attr = data[p : p + attr_size - 16]
        ids_off, ids_size = struct.unpack_from("<QQ", data, p + attr_size - 16)
        ids = list(struct.unpack_from(f"<{ids_size // 8}Q", data, ids_off))
        attrs.append((attr, ids))
    features = {}
    table = data_off + data_size
    bits = [b for b in range(256) if flags[b // 64] >> (b % 64) & 1]
    for i, bit in enumerate(bits):
        off, size = struct.unpack_from("<QQ", data, table + 16 * i)
        features[bit] = data[off : off + size]
    return attrs, features, data[data_off : data_off + data_size]


def cut_perf_file(data: bytes, samples: int) -> tuple[bytes, bytes] | None:
    """(file mode, pipe mode) recordings with the metadata of `data` and its first `samples` samples."""
    parts = file_parts(data)
    if parts is None:
        return None
    attrs, features, section = parts
    body = _cut_records(_records(section, 0, len(section)), samples)
    tpd = _test_module("test_perf_data")
    file_mode: bytes = tpd.perf_file(False, attrs, body, features)  # type: ignore[attr-defined]
    tracing = features.pop(17, None)  # HEADER_TRACING_DATA travels as its own record in pipe mode
    pipe_mode: bytes = tpd.perf_pipe(False, attrs, body, features, tracing)  # type: ignore[attr-defined]
    return file_mode, pipe_mode


def _real_recordings(samples: int = 24) -> list[tuple[bytes, bytes]]:
    out = []
    for data in (_corpus("linuxtracepoints/perf.data"), (ROOT / "dyntel/data/demo.perf.data").read_bytes()):
        if data is not None:
            cut = cut_perf_file(data, samples)
            if cut is not None:
                out.append(cut)
    return out


def _built_recordings(pipe: bool) -> Seeds:
    tpd = _test_module("test_perf_data")
    abi = tpd.abi  # type: ignore[attr-defined]
    build: Callable[..., bytes] = tpd.sys_enter_recording  # type: ignore[attr-defined]
    st = tpd.ST_TRACE  # type: ignore[attr-defined]
    for be in (False, True):
        yield build(be, pipe=pipe, st=st)
        yield build(be, pipe=pipe, st=st | abi.SAMPLE_CALLCHAIN | abi.SAMPLE_IDENTIFIER, clock=False)
        yield build(be, pipe=pipe, st=st | abi.SAMPLE_ID | abi.SAMPLE_STREAM_ID | abi.SAMPLE_ADDR)
        yield build(be, pipe=pipe, st=st | abi.SAMPLE_READ, read_format=abi.FORMAT_GROUP | abi.FORMAT_ID)


def perf_file() -> Seeds:
    for file_mode, _ in _real_recordings():
        yield file_mode
    yield from _built_recordings(pipe=False)


def perf_pipe() -> Seeds:
    for _, pipe_mode in _real_recordings():
        yield pipe_mode
    yield from _built_recordings(pipe=True)


def _data_sections() -> Iterator[tuple[int, bytes]]:
    """(sample_type, data section) of the built recordings and the cut real ones (those with one sample layout)."""
    for data in [*_built_recordings(pipe=False), *(f for f, _ in _real_recordings())]:
        parts = file_parts(data)
        if parts is None:
            continue
        attrs, _, section = parts
        types = {struct.unpack_from("<Q", a, 24)[0] for a, _ in attrs}
        if len(types) == 1:
            yield types.pop(), section


def native_speedups() -> Seeds:
    from fuzz.native_speedups import params_of

    # sys_enter's fields as the tests' format describes them: common_type, id, args[6]
    fields = [(2, 0, 0, 2, 2), (3, 0, 8, 8, 8), (1, 1, 16, 48, 8)]
    for sample_type, section in _data_sections():
        yield params_of(sample_type, fields) + section
        yield params_of(sample_type, [(4, 0, 8, 0, 1), (0, 2, 4, 4, 1)], wall=False) + section


def native_prefilter() -> Seeds:
    from fuzz.native_prefilter import params_of

    for sample_type, section in _data_sections():
        yield params_of(sample_type) + section


# ---------------------------------------------------------------------------------------------------------------
# EventHeader


def _dat_records(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "little")
        if size < 5 or pos + size > len(data):
            return
        yield data[pos : pos + size]
        pos += size


def interceptor_dat() -> Seeds:
    data = _corpus("linuxtracepoints/EventHeaderInterceptorLE64.dat")
    if data is None:
        return
    records = list(_dat_records(data))
    for i in range(0, len(records), 8):
        yield b"".join(records[i : i + 8])


def eventheader() -> Seeds:
    """`tracepoint name NUL event bytes`: the interceptor's records without their size (the reference's test file
    holds an event of every EventHeader type)."""
    data = _corpus("linuxtracepoints/EventHeaderInterceptorLE64.dat")
    if data is not None:
        for rec in _dat_records(data):
            yield rec[4:]


# ---------------------------------------------------------------------------------------------------------------
# tracefs formats


def tracefs_format() -> Seeds:
    """`format text SEPARATOR raw sample bytes`: corpus format files, each with a raw buffer."""
    from fuzz.tracefs_format import SEPARATOR

    data = _corpus("formats/formats0.zip")
    tpd = _test_module("test_perf_data")
    yield tpd.SYS_ENTER_FORMAT.encode() + SEPARATOR + tpd.sys_enter_raw(False, 1, tpd.ARGS)  # type: ignore[attr-defined]
    if data is None:
        return
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = sorted(z.namelist())
        for name in names[:: max(1, len(names) // 120)]:
            text = z.read(name)
            yield text + SEPARATOR + bytes(range(64))


# ---------------------------------------------------------------------------------------------------------------
# ETL and TraceLogging

_ETL = ["etw/SelfDescribingSingleEvent.etl", "etw/primitive-types.etl.zip", "etw/gcevents.etl.zip",
        "etw/gcrundownevents.etl.zip", "etw/net.4.5.2.x64.etl.zip"]


def _etl_files() -> Iterator[bytes]:
    for rel in _ETL:
        data = _corpus(rel)
        if data is None:
            continue
        if rel.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                name = next(n for n in z.namelist() if n.endswith(".etl"))
                with z.open(name) as f:
                    data = f.read(2 * 65536)  # the first buffers: the walk is the same further on
        yield data


def etl() -> Seeds:
    yield from _etl_files()


def tracelogging() -> Seeds:
    """The arguments of each `decode_etw_event` call made while reading the corpus's ETL files, encoded as the
    tracelogging target reads them."""
    from dyntel.decoders import tracelogging as tl
    from dyntel.sources.etw import etl as etl_source
    from fuzz import tracelogging as target

    seen: list[bytes] = []
    real = etl_source.decode_etw_event

    def capture(header, extended, user_data, **kw):  # type: ignore[no-untyped-def]
        if len(seen) < 400:
            seen.append(target.encode(header, extended, user_data, kw.get("pointer_size", 8)))
        return real(header, extended, user_data, **kw)

    etl_source.decode_etw_event = capture  # type: ignore[assignment]
    try:
        for data in _etl_files():
            src = etl_source.EtlSource("seed.etl", io.BytesIO(data), tl.TypeCache())
            for _ in src.events():
                pass
    finally:
        etl_source.decode_etw_event = real  # type: ignore[assignment]
    yield from dict.fromkeys(seen)  # in order, without repeats


# ---------------------------------------------------------------------------------------------------------------
# YAML and JSON lines


def rules_yaml() -> Seeds:
    for path in sorted([*ROOT.glob("rules/*.yaml"), ROOT / "dyntel/demo/rules.yaml"]):
        yield path.read_bytes()


def config_yaml() -> Seeds:
    yield _test_module("test_config").CONFIG.encode()  # type: ignore[attr-defined]
    yield b"rules: [a.yaml, b/]\nsources: {}\nmetrics: {listen: 127.0.0.1:1}\n"


def jsonl() -> Seeds:
    for path in sorted(ROOT.glob("rules/tests/*/events.jsonl")):
        yield path.read_bytes()[:8192]


def otlp_metrics() -> Seeds:
    from fuzz import otlp_metrics as target

    yield from target.seeds()


SEEDS: dict[str, Callable[[], Seeds]] = {
    "perf_file": perf_file,
    "perf_pipe": perf_pipe,
    "native_speedups": native_speedups,
    "native_prefilter": native_prefilter,
    "interceptor_dat": interceptor_dat,
    "eventheader": eventheader,
    "tracefs_format": tracefs_format,
    "etl": etl,
    "tracelogging": tracelogging,
    "rules_yaml": rules_yaml,
    "config_yaml": config_yaml,
    "jsonl": jsonl,
    "otlp_metrics": otlp_metrics,
}


def write_seeds(target: str, out: Path) -> int:
    """Write the target's seeds into `out` (one file each, named by content); the number written."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for data in SEEDS[target]():
        (out / hashlib.sha1(data).hexdigest()).write_bytes(data)
        n += 1
    return n


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    for target in argv[1:] or list(SEEDS):
        print(f"{target}: {write_seeds(target, out / target)} seeds")


if __name__ == "__main__":
    main(sys.argv[1:])
