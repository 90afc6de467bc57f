"""benchmarks/latency_user_events.py's path in the VM: an EventHeader probe (tests/peers/eventheader-writer's
eh-latency, LinuxTracepoints' eventheader_dynamic crate) writes an event to user_events, `dyntel run`'s rule with
`condition: pid == PROBE` answers it with SIGUSR1, and every probe gets its signal, while another eh-latency process
writes the same event as background load (1000 a second). A few samples and no timing assertion: the figures are the
benchmark's (docs/rules.md, "How soon a rule acts"); this keeps the path working.
"""

from __future__ import annotations

import sys
from pathlib import Path

from peers import rust_peer

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.latency import measure, parser  # noqa: E402
from benchmarks.latency_user_events import workload  # noqa: E402

SAMPLES = 5


def test_every_probe_gets_its_signal(tmp_path: Path) -> None:
    binary = rust_peer("eventheader-writer", "eh-latency")
    # A generous timeout: the VM is emulated, and a late signal is still an answer (speed is the benchmark's).
    args = parser().parse_args(["--samples", str(SAMPLES), "--timeout", "10", "--interval", "0.1"])
    result = measure(1000.0, args, tmp_path, workload(binary))
    assert "ERROR" not in result.note, result.note
    assert result.missed == 0 and len(result.latencies_ms) == SAMPLES, result.line("signal")
    assert result.made > 0, f"the background load wrote nothing: {result.line('signal')}"
    assert len(result.action_ms.get("signal", [])) >= SAMPLES, result.action_ms
