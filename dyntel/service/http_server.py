"""The sidecar's own HTTP endpoint (default 127.0.0.1:9464, `--metrics-listen`): for Prometheus and the kubelet.

- `/metrics`: the Prometheus text exposition (dyntel.service.metrics).
- `/healthz`: 200 while the event loop is alive: it has checked in within `stall_after` seconds (the loop checks
  in on every batch of events and on every idle tick, about ten times a second); 503 with the reason otherwise,
  so a wedged loop gets the pod restarted.
- `/readyz`: 200 once the sources are open and the rules are loaded; 503 before, and after the loop stopped.
- `/status`: each rule's state as JSON (dyntel.engine.status) and every queue's counts (dyntel.queues), what
  `dyntel status` prints.

A ThreadingHTTPServer on a daemon thread: a scrape never waits for the loop, and the loop never waits for a scrape.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.registry import CollectorRegistry

DEFAULT_LISTEN = "127.0.0.1:9464"


class Health:
    """What /healthz and /readyz answer from: the loop calls `beat()`; `ready`/`stopped` mark its life."""

    def __init__(self, stall_after: float = 30.0, progress: Callable[[], int] | None = None) -> None:
        self.stall_after = stall_after
        # A counter the loop advances anyway (events processed): movement counts as a beat, at no cost per event.
        self.progress = progress
        self._last_progress = progress() if progress is not None else 0
        self.ready = False
        self.stopped = False
        self.reason_not_ready = "starting: sources not open yet"
        self._last_beat = time.monotonic()

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    def healthy(self) -> tuple[bool, str]:
        if self.stopped:
            return False, "the event loop has stopped"
        if self.progress is not None:
            now = self.progress()
            if now != self._last_progress:
                self._last_progress = now
                self.beat()
        quiet = time.monotonic() - self._last_beat
        if quiet > self.stall_after:
            return False, f"the event loop has not checked in for {quiet:.0f}s (stalled?)"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        if self.stopped:
            return False, "stopping"
        return (True, "ok") if self.ready else (False, self.reason_not_ready)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{text!r}: write HOST:PORT, like 127.0.0.1:9464 or 0.0.0.0:9464")
    return host or "0.0.0.0", int(port)


class ObserveServer:
    def __init__(self, listen: str, registry: CollectorRegistry, health: Health,
                 status: Callable[[], list[dict[str, Any]]] | None = None,
                 queues: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        from dyntel.service.metrics import exposition

        host, port = parse_listen(listen)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, exposition(outer.registry), "text/plain; version=0.0.4; charset=utf-8")
                elif path in ("/healthz", "/readyz"):
                    ok, reason = outer.health.healthy() if path == "/healthz" else outer.health.readiness()
                    self._send(200 if ok else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
                elif path == "/status" and outer.status is not None:
                    document: dict[str, Any] = {"rules": outer.status()}
                    if outer.queues is not None:
                        document["queues"] = outer.queues()
                    body = json.dumps(document, default=str).encode()
                    self._send(200, body, "application/json")
                else:
                    self._send(404, b"not found: try /metrics, /healthz, /readyz, /status\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown dyntel's own log

        self.registry = registry
        self.health = health
        self.status = status
        self.queues = queues
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        bound = self.server.server_address
        self.address = f"{bound[0]!s}:{bound[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="dyntel-metrics", daemon=True)

    def start(self) -> ObserveServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
