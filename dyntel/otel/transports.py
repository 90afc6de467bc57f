"""The one place that picks the OTLP transport for an endpoint: HTTP (dyntel.otel.otlp_http) or gRPC
(dyntel.otel.otlp_grpc). Apart from dyntel.otel.otlp_transport, which both transports import for what they share,
so that no two of the three import each other. gRPC is imported only when asked for: it is the heavy one.
"""

from __future__ import annotations

from dyntel.otel.otlp_http import HttpTransport
from dyntel.otel.otlp_transport import GRPC, Transport, check_protocol


def make_transport(endpoint: str, protocol: str) -> Transport:
    """A transport for `endpoint` (checked now, so a wrong address is an error at load time, not at export)."""
    if check_protocol(protocol) == GRPC:
        from dyntel.otel.otlp_grpc import GrpcTransport

        return GrpcTransport(endpoint)
    return HttpTransport(endpoint)
