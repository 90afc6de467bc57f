"""The app container of tests/test_container.py: a small Python HTTP service, run as its own user, that forks a
child when asked (GET /fork): the kernel's sched:sched_process_fork tracepoint, which the sidecar's rules match
by pid and by the app's thread name. The main thread waits in serve_forever (a Python frame in
wait_for_requests, a native one in poll), which the stacks action must show.

    python3 sidecar_app.py PORT COMM
"""

import ctypes
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PR_SET_NAME = 15


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/fork":
            child = os.fork()
            if child == 0:
                os._exit(0)
            os.waitpid(child, 0)
        body = f"{os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def wait_for_requests(server: HTTPServer) -> None:
    server.serve_forever()


def main() -> None:
    port = int(sys.argv[1])
    # The thread's comm, which the tracepoint carries as parent_comm: the rules tell this app from others by it.
    ctypes.CDLL(None).prctl(PR_SET_NAME, sys.argv[2].encode(), 0, 0, 0)
    wait_for_requests(HTTPServer(("0.0.0.0", port), Handler))


if __name__ == "__main__":
    main()
