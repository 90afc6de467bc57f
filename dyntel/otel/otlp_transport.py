"""What the OTLP senders need of a transport (dyntel.otel.transports picks HTTP or gRPC for an endpoint).

A transport sends one already-encoded export request (bytes) for a signal (`logs`, `traces` or `metrics`) and
either returns what the collector rejected or raises ExportError saying whether trying again may help. Requests
travel as bytes so that a batch of records stored or encoded one by one is sent without being parsed back into
messages.
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


def default_endpoint(protocol: str) -> str:
    return DEFAULT_GRPC_ENDPOINT if protocol == GRPC else DEFAULT_HTTP_ENDPOINT


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTLP protocol {protocol!r}: write http/protobuf or grpc")
    return protocol
