"""A service that reads a release flag through OpenFeature only: the flags example's workload.

It knows nothing of changeover: it asks the OpenFeature SDK (``openfeature-sdk``) with the
OFREP provider (``openfeature-provider-ofrep``) for the string flag ``FLAG_KEY`` on every
request, with the ``x-user`` header as the targeting key (a fresh random key when absent),
and answers as the variant says:

    "old", "new"  → 200 {"version": ..., "flag": "<value>"}
    "broken"      → 500 (the new code path is bad: what a flag rollout must catch)

Every response carries ``x-app-version`` and ``x-flag-value``. Environment::

    PORT, APP_VERSION            where to listen, what to report
    OFREP_URL, OFREP_TOKEN       changeover serve's address and its flags token
    FLAG_KEY                     the flag to read (default: checkout)
    FLAG_HEADER                  take the variant from this request header instead, as
                                 changeover's router sets it (``Flag.spec.router``)

    OFREP_URL=http://127.0.0.1:7070 OFREP_TOKEN=$(cat ~/.local/share/changeover/flags/token) \
        PORT=8081 python3 examples/flag_app.py
"""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

VERSION = os.environ.get("APP_VERSION", "v1")
FLAG_KEY = os.environ.get("FLAG_KEY", "checkout")
FLAG_HEADER = os.environ.get("FLAG_HEADER", "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, b"ok", "text/plain", "-")
            return
        if FLAG_HEADER:
            value = self.headers.get(FLAG_HEADER) or "old"
        else:
            user = self.headers.get("x-user") or uuid.uuid4().hex
            value = api.get_client().get_string_value(FLAG_KEY, "old", EvaluationContext(user))
        body = json.dumps({"version": VERSION, "flag": value}).encode()
        self._answer(500 if value == "broken" else 200, body, "application/json", value)

    def _answer(self, status: int, body: bytes, kind: str, flag: str) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-app-version", VERSION)
        self.send_header("x-flag-value", flag)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: the router counts requests


def main() -> None:
    token = os.environ.get("OFREP_TOKEN", "")
    api.set_provider(
        OFREPProvider(
            os.environ.get("OFREP_URL", "http://127.0.0.1:7070"),
            headers_factory=lambda: {"Authorization": f"Bearer {token}"},
        )
    )
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8081"))), Handler)
    server.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
