"""OTLP/HTTP with protobuf bodies: POST /v1/logs and /v1/traces on one kept-alive connection.

The status codes follow the OTLP specification: 200 is success (its body may report a partial success), 429, 502,
503 and 504 mean "try again" (honouring Retry-After), any other status means the collector refuses the data. A
connection that fails, or a request that times out, is retriable: the request may or may not have arrived, which is
why the alert records carry an id a receiver can drop a repeat by (docs/otlp.md).
"""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from dyntel.otel.otlp_export import LOGS, METRICS, ExportError, ExportResult
from dyntel.otel.otlp_proto import ExportLogsServiceResponse, ExportTraceServiceResponse

_RETRIABLE_STATUS = frozenset({429, 502, 503, 504})
_PATHS = {"logs": "/v1/logs", "traces": "/v1/traces", "metrics": "/v1/metrics"}


class HttpTransport:
    def __init__(self, endpoint: str) -> None:
        url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"OTLP/HTTP endpoint {endpoint!r}: write http://HOST:PORT (or https://)")
        self.endpoint = endpoint
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 4318)
        base = url.path.rstrip("/")
        # A signal path written in the endpoint is used as written (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT's rule);
        # otherwise /v1/<signal> is appended to the base.
        self._paths = {s: base if base.endswith(p) else base + p for s, p in _PATHS.items()}
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout)
        else:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        return self._conn

    def export(self, signal: str, payload: bytes, timeout: float) -> ExportResult:
        conn = self._connection(timeout)
        try:
            conn.request("POST", self._paths[signal], body=payload,
                         headers={"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()  # the connection's state is unknown: start a new one next time
            what = "timed out" if isinstance(e, socket.timeout | TimeoutError) else f"failed: {e}"
            raise ExportError(f"OTLP/HTTP POST to {self.endpoint}{self._paths[signal]} {what}", retriable=True) from e
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        if response.status == 200:
            return _partial(signal, body)
        retry_after = _retry_after(response.getheader("Retry-After"))
        text = body[:200].decode("utf-8", "replace").strip()
        raise ExportError(f"OTLP/HTTP POST to {self.endpoint}{self._paths[signal]}: HTTP {response.status} "
                          f"{response.reason}{': ' + text if text else ''}",
                          retriable=response.status in _RETRIABLE_STATUS, retry_after=retry_after)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _partial(signal: str, body: bytes) -> ExportResult:
    if not body:
        return ExportResult()
    try:
        if signal == LOGS:
            logs = ExportLogsServiceResponse.FromString(body).partial_success
            return ExportResult(int(logs.rejected_log_records), str(logs.error_message))
        if signal == METRICS:
            points = ExportMetricsServiceResponse.FromString(body).partial_success
            return ExportResult(int(points.rejected_data_points), str(points.error_message))
        traces = ExportTraceServiceResponse.FromString(body).partial_success
        return ExportResult(int(traces.rejected_spans), str(traces.error_message))
    except Exception:  # a collector's odd success body is still a success
        return ExportResult()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from collectors; the sender's own backoff applies
