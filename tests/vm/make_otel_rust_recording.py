"""Not a test of its own (no test_ prefix: pytest collects it only when named): run by
scripts/make-otel-rust-recording.sh in the VM to record the Rust exporters' workload into the results export, from
where the script copies it to tests/data/otel-rust/ and dyntel/data/."""

from __future__ import annotations

from pathlib import Path

from otelrust import record

RESULTS = Path("/tmp/vm-results")  # the writable export scripts/vm/guest-init.sh mounts


def test_make_the_recording() -> None:
    assert RESULTS.is_dir(), "run by scripts/make-otel-rust-recording.sh in the VM"
    _, _, summary = record(RESULTS / "otel-rust")
    (RESULTS / "otel-rust" / "summary.json").write_text(__import__("json").dumps(summary) + "\n")
