"""A test OTLP receiver: opentelemetry-proto's own gRPC services and an HTTP server that parses the protobuf bodies.

Both record what arrived (each log record or span with its resource and scope), can be stopped and started again
on the same ports (a collector going down and coming back), and can be told to answer with an error status.
`GET /stats` on the HTTP port returns the counts as JSON, so a benchmark can run the receiver in another process:

    python tests/otlp_receiver.py --http-port 4318 --grpc-port 4317 [--count-only]
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attributes(kvs: Any) -> dict[str, Any]:
    """KeyValue list to a dict of plain values (protobuf's JSON mapping of AnyValue, unwrapped)."""
    return {kv.key: any_value(kv.value) for kv in kvs}


def any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return getattr(v, kind)


@dataclass
class Received:
    protocol: str  # "http" | "grpc"
    resource: dict[str, Any]
    scope: str
    record: Any  # a LogRecord or Span message

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.record.attributes)

    def as_dict(self) -> dict[str, Any]:
        return MessageToDict(self.record)


@dataclass
class Receiver:
    http_port: int = 0
    grpc_port: int = 0
    count_only: bool = False  # benchmarks: count records, keep nothing
    logs: list[Received] = field(default_factory=list)
    spans: list[Received] = field(default_factory=list)
    requests: int = 0
    log_count: int = 0
    span_count: int = 0
    # Answer the next N requests with this (HTTP status, gRPC code) instead of taking them.
    fail_next: int = 0
    fail_with: tuple[int, grpc.StatusCode] = (503, grpc.StatusCode.UNAVAILABLE)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _http: ThreadingHTTPServer | None = None
    _grpc: grpc.Server | None = None

    # --- what arrived ---

    def _take(self, protocol: str, request: Any, signal: str) -> bool:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return False
            self.requests += 1
            groups = request.resource_logs if signal == "logs" else request.resource_spans
            for rg in groups:
                resource = attributes(rg.resource.attributes) if not self.count_only else {}
                for sg in (rg.scope_logs if signal == "logs" else rg.scope_spans):
                    items = sg.log_records if signal == "logs" else sg.spans
                    if signal == "logs":
                        self.log_count += len(items)
                    else:
                        self.span_count += len(items)
                    if self.count_only:
                        continue
                    target = self.logs if signal == "logs" else self.spans
                    target.extend(Received(protocol, resource, sg.scope.name, item) for item in items)
            self._lock.notify_all()
            return True

    def wait_for(self, logs: int = 0, spans: int = 0, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.log_count < logs or self.span_count < spans:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def clear(self) -> None:
        with self._lock:
            self.logs.clear()
            self.spans.clear()
            self.log_count = self.span_count = self.requests = 0

    # --- servers ---

    def start(self) -> Receiver:
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), _handler(self))
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(self), server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), server)
        port = server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        if port == 0:
            raise OSError(f"cannot listen for gRPC on 127.0.0.1:{self.grpc_port}")
        self.grpc_port = port
        server.start()
        self._grpc = server
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
            self._grpc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(receiver: Receiver) -> Callable[..., BaseHTTPRequestHandler]:
    parsers = {"/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest,
                            logs_service_pb2.ExportLogsServiceResponse),
               "/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest,
                              trace_service_pb2.ExportTraceServiceResponse)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/x-protobuf") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/stats":
                with receiver._lock:
                    stats = {"logs": receiver.log_count, "spans": receiver.span_count,
                             "requests": receiver.requests}
                self._send(200, json.dumps(stats).encode(), "application/json")
            else:
                self._send(404, b"")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            found = parsers.get(self.path)
            if found is None:
                self._send(404, b"no such path")
                return
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self._send(415, b"expected application/x-protobuf")
                return
            signal, request_type, response_type = found
            try:
                request = request_type.FromString(body)
            except Exception:
                self._send(400, b"not a protobuf export request")
                return
            if receiver._take("http", request, signal):
                self._send(200, response_type().SerializeToString())
            else:
                self._send(receiver.fail_with[0], b"told to fail")

    return Handler


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not self.receiver._take("grpc", request, "logs"):
            context.abort(self.receiver.fail_with[1], "told to fail")
        return logs_service_pb2.ExportLogsServiceResponse()


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not self.receiver._take("grpc", request, "traces"):
            context.abort(self.receiver.fail_with[1], "told to fail")
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--count-only", action="store_true")
    args = parser.parse_args()
    receiver = Receiver(args.http_port, args.grpc_port, count_only=args.count_only).start()
    print(json.dumps({"http_port": receiver.http_port, "grpc_port": receiver.grpc_port}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":
    main()
