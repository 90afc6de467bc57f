"""OTLP/gRPC: LogsService/Export and TraceService/Export through opentelemetry-proto's generated stubs.

The channel is told to reconnect quickly (100 ms, at most 2 s between tries) instead of gRPC's default of up to two
minutes (each connection attempt keeps gRPC's default 20 s to complete its handshake), so that a collector that
comes back is used within the sender's own retry backoff. Status codes retriable
per the OTLP specification: CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE,
DATA_LOSS; anything else refuses the data.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from dyntel.otel.otlp_export import LOGS, METRICS, ExportError, ExportResult

_RETRIABLE = frozenset({grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE,
                        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})
# gRPC core also takes min_reconnect_backoff_ms as the least time a connection attempt may take (its handshake up to
# the server's HTTP/2 SETTINGS frame): at 100 ms, a collector on a loaded machine or under emulation that answers in
# 150 ms was never reached ("connection attempt timed out before receiving SETTINGS frame", seen with the real
# collector in the test VM). It stays at gRPC's default of 20 s; a refused connection still fails at once, and the
# export's own deadline still bounds each call.
_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 20_000),
            ("grpc.max_reconnect_backoff_ms", 2000), ("grpc.max_send_message_length", 64 << 20)]


def _identity(b: bytes) -> bytes:
    return b


class GrpcTransport:
    def __init__(self, endpoint: str) -> None:
        url = urlsplit(endpoint if "://" in endpoint else f"grpc://{endpoint}")
        if url.scheme not in ("http", "https", "grpc", "grpcs") or not url.hostname:
            raise ValueError(f"OTLP/gRPC endpoint {endpoint!r}: write HOST:PORT (or http://HOST:PORT)")
        self.endpoint = endpoint
        target = f"{url.hostname}:{url.port or 4317}"
        if url.scheme in ("https", "grpcs"):
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(target, options=_OPTIONS)
        # The generated stubs fix the method paths and response types; a channel view gives them a serializer that
        # hands on the request bytes already encoded, so a batch is never parsed back into messages.
        raw = _BytesChannel(self._channel)
        self._methods: dict[str, Any] = {"logs": logs_service_pb2_grpc.LogsServiceStub(raw).Export,  # type: ignore[no-untyped-call]
                                         "traces": trace_service_pb2_grpc.TraceServiceStub(raw).Export,  # type: ignore[no-untyped-call]
                                         "metrics": metrics_service_pb2_grpc.MetricsServiceStub(raw).Export}  # type: ignore[no-untyped-call]

    def export(self, signal: str, payload: bytes, timeout: float) -> ExportResult:
        try:
            response = self._methods[signal](payload, timeout=timeout)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = e.details() if isinstance(e, grpc.Call) else str(e)
            raise ExportError(f"OTLP/gRPC export to {self.endpoint}: {code.name}: {details}",
                              retriable=code in _RETRIABLE) from e
        p = response.partial_success
        rejected = (p.rejected_log_records if signal == LOGS else p.rejected_data_points if signal == METRICS
                    else p.rejected_spans)
        return ExportResult(int(rejected), str(p.error_message))

    def close(self) -> None:
        self._channel.close()


class _BytesChannel:
    """What a generated stub's constructor calls on a channel, with the request serializer replaced by identity."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    **kwargs: Any) -> Any:
        return self._channel.unary_unary(method, request_serializer=_identity,
                                         response_deserializer=response_deserializer, **kwargs)
