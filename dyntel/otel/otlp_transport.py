"""What the OTLP senders need of a transport, and the one place that picks HTTP or gRPC for an endpoint.

A transport sends one already-encoded export request (bytes) for a signal (`logs`, `traces` or `metrics`) and
either returns what the collector rejected or raises ExportError saying whether trying again may help. Requests
travel as bytes so that a batch of records stored or encoded one by one is sent without being parsed back into
messages. The names of that contract are defined in otlp_export and exported from here too.
"""

from __future__ import annotations

from dyntel.otel.otlp_export import (
    DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT,
    GRPC,
    HTTP,
    LOGS,
    METRICS,
    PROTOCOLS,
    TRACES,
    ExportError,
    ExportResult,
    Transport,
)

__all__ = [
    "DEFAULT_GRPC_ENDPOINT",
    "DEFAULT_HTTP_ENDPOINT",
    "GRPC",
    "HTTP",
    "LOGS",
    "METRICS",
    "PROTOCOLS",
    "TRACES",
    "ExportError",
    "ExportResult",
    "Transport",
    "check_protocol",
    "default_endpoint",
    "make_transport",
]


def default_endpoint(protocol: str) -> str:
    return DEFAULT_GRPC_ENDPOINT if protocol == GRPC else DEFAULT_HTTP_ENDPOINT


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTLP protocol {protocol!r}: write http/protobuf or grpc")
    return protocol


def make_transport(endpoint: str, protocol: str) -> Transport:
    """A transport for `endpoint` (checked now, so a wrong address is an error at load time, not at export)."""
    if check_protocol(protocol) == GRPC:
        # Imported on use (no cycle: the transports import only otlp_export): grpc costs a quarter of a second to
        # import, and the HTTP client and the protobuf messages are not needed by those that only read the names.
        from dyntel.otel.otlp_grpc import GrpcTransport

        return GrpcTransport(endpoint)
    from dyntel.otel.otlp_http import HttpTransport

    return HttpTransport(endpoint)
