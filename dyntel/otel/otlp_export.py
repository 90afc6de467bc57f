"""What one OTLP export is: the signals and protocols, the result and the error of sending one request, and what the
senders need of a transport (`Transport`).

The transports (otlp_http, otlp_grpc) implement it and the picker (otlp_transport) chooses between them; all three
import it, and none imports another, so the transports form no cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

LOGS = "logs"
TRACES = "traces"
METRICS = "metrics"
HTTP = "http/protobuf"
GRPC = "grpc"
PROTOCOLS = (HTTP, GRPC)
DEFAULT_HTTP_ENDPOINT = "http://127.0.0.1:4318"
DEFAULT_GRPC_ENDPOINT = "127.0.0.1:4317"


class ExportError(Exception):
    """An export that did not succeed. `retriable`: the collector may take the same request later (it was down,
    overloaded, or the answer never came); otherwise it refused the data itself and resending cannot help."""

    def __init__(self, message: str, retriable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.retry_after = retry_after


@dataclass(slots=True)
class ExportResult:
    rejected: int = 0  # records the collector accepted the request for but dropped (partial success)
    message: str = ""


class Transport(Protocol):
    endpoint: str

    def export(self, signal: str, payload: bytes, timeout: float) -> ExportResult: ...

    def close(self) -> None: ...
