"""A tiny OTLP/HTTP logs receiver for the demo: it accepts POST /v1/logs (ExportLogsServiceRequest, protobuf) and
keeps the log records, so the demo can show an alert arriving without a collector installed."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class DemoReceiver:
    def __init__(self) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
            ExportLogsServiceResponse,
        )

        self.records: list[dict[str, Any]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/logs":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportLogsServiceRequest.FromString(body)
                with lock:
                    for rl in request.resource_logs:
                        for sl in rl.scope_logs:
                            for r in sl.log_records:
                                outer.records.append({
                                    "severity": r.severity_text, "body": r.body.string_value,
                                    "attributes": {a.key: a.value.string_value or a.value.int_value
                                                   for a in r.attributes}})
                reply = ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="demo-otlp", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
