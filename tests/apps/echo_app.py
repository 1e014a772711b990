"""A tiny HTTP service for tests: reports its version and pid, and misbehaves on request.

Stdlib only, so any test can start it as a replica with ``[sys.executable, ECHO_APP]``.

    GET /            → {"version": $VERSION, "pid": ..., "port": ..., "path": "/", "cwd": ...}
    GET /healthz     → 200 "ok", or 503 while ECHO_HEALTHZ=fail or the file
                       $ECHO_HEALTHZ_FILE exists (tests flip readiness with it)
    GET /slow?s=0.5  → like / after sleeping s seconds (in-flight requests for drain tests)
    GET /stream?n=5  → n chunked lines, 50 ms apart (streaming responses)
    GET /events?n=5&ms=50 → a server-sent-event stream: n "data: <version> <i>" events ms
                       apart, then "data: [DONE]" (an LLM token stream, for drain tests)

Environment: PORT (or --port N), VERSION, ECHO_HEALTHZ, ECHO_HEALTHZ_FILE,
ECHO_STARTUP_DELAY (seconds before listening), ECHO_IGNORE_SIGTERM=1 (to test the SIGKILL
after the grace period).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep replica logs small

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _healthy(self) -> bool:
        if os.environ.get("ECHO_HEALTHZ") == "fail":
            return False
        flag = os.environ.get("ECHO_HEALTHZ_FILE")
        return not (flag and os.path.exists(flag))

    def _events(self, n: int, ms: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        version = os.environ.get("VERSION", "")
        for i in [*range(n), -1]:
            event = (f"data: {version} {i}" if i >= 0 else "data: [DONE]").encode() + b"\n\n"
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
            if i >= 0:
                time.sleep(ms / 1000)
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/healthz":
            if self._healthy():
                self._send(200, b"ok", "text/plain")
            else:
                self._send(503, b"unhealthy", "text/plain")
            return
        if url.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(query.get("n", ["5"])[0])):
                line = f"{os.environ.get('VERSION', '')} {i}\n".encode()
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/events":
            self._events(int(query.get("n", ["5"])[0]), float(query.get("ms", ["50"])[0]))
            return
        if url.path == "/slow":
            time.sleep(float(query.get("s", ["0.5"])[0]))
        body = {
            "version": os.environ.get("VERSION", ""),
            "pid": os.getpid(),
            "port": self.server.server_port,
            "path": url.path,
            "cwd": os.getcwd(),
        }
        self._send(200, json.dumps(body).encode())


def main(argv: list[str]) -> None:
    port = int(os.environ.get("PORT", "0"))
    if "--port" in argv:
        port = int(argv[argv.index("--port") + 1])
    if os.environ.get("ECHO_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(os.environ.get("ECHO_STARTUP_DELAY", "0")))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"echo {os.environ.get('VERSION', '')} pid {os.getpid()} on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
