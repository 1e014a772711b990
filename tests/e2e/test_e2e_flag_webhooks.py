"""A flag rollout gated by webhooks, as a Rollout is: a real ``changeover serve`` calling a
real HTTP receiver (``spec.rollout.webhooks``).

``pre-rollout`` is called before the first step; each weight increase waits for
``confirm-traffic-increase`` to answer 2xx; ``post-rollout`` and ``event`` hear how it
ended. A second walk is turned off by its ``rollback`` webhook answering 2xx.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import wait_until
from e2e_serve import Serve
from e2e_specs import checkout_flag, write_rollout

pytestmark = pytest.mark.slow


class Receiver:
    """Records every POST; ``/gate`` and ``/rollback`` answer 2xx once told to."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.open = {"/gate": False, "/rollback": False}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.calls.append((self.path, json.loads(body)))
                ok = outer.open.get(self.path, True)
                self.send_response(200 if ok else 409)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def types(self, path: str) -> list[str]:
        return [body["type"] for p, body in list(self.calls) if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    thread.join(5)


def flag_doc(variant: str, url: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    hooks = [
        {"name": "smoke", "type": "pre-rollout", "url": f"{url}/pre"},
        {"name": "gate", "type": "confirm-traffic-increase", "url": f"{url}/gate"},
        {"name": "undo", "type": "rollback", "url": f"{url}/rollback"},
        {"name": "report", "type": "post-rollout", "url": f"{url}/post"},
        {"name": "audit", "type": "event", "url": f"{url}/event"},
    ]
    for hook in hooks:
        hook["interval"] = "300ms"
    return checkout_flag(variant, steps, rollout={"webhooks": hooks})


def test_webhooks_gate_a_flag_rollout_and_a_rollback_hook_turns_it_off(
    serve: Serve, receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "flag.yaml"
    write_rollout(path, flag_doc("new", receiver.url, [{"setWeight": 20}, {"setWeight": 100}]))
    assert serve.apply(path).code == 0
    held = wait_until(
        lambda: (
            (d := serve.api_flag("checkout"))["message"].startswith("waiting for confirm-traffic")
            and d
        ),
        within=30,
        what="the first weight increase held by its gate",
    )
    assert held["rollout"]["weight"] == 0 and held["phase"] == "Progressing", held
    assert receiver.types("/pre") == ["pre-rollout"]
    wait_until(lambda: len(receiver.types("/gate")) >= 2, within=30, what="the gate polled")
    assert serve.api_flag("checkout")["rollout"]["weight"] == 0  # still held: the gate said 409

    receiver.open["/gate"] = True
    done = serve.wait_flag("checkout", "Healthy", within=30)
    assert done["split"] == {"new": 100}, done
    wait_until(lambda: receiver.types("/post") == ["post-rollout"], within=15, what="post-rollout")

    def reasons() -> list[str]:
        return [b["metadata"]["eventReason"] for p, b in list(receiver.calls) if p == "/event"]

    wait_until(lambda: "Completed" in reasons(), within=15, what="the events posted")
    assert reasons().count("SetWeight") == 2, reasons()
    first = next(body for p, body in receiver.calls if p == "/pre")
    assert (first["name"], first["type"]) == ("checkout", "pre-rollout")

    # a new walk: its rollback hook answers 2xx, so the flag is turned off
    receiver.open["/gate"] = False
    write_rollout(path, flag_doc("broken", receiver.url, [{"setWeight": 30}, {"pause": {}}]))
    assert serve.apply(path).code == 0
    wait_until(
        lambda: serve.api_flag("checkout")["message"].startswith("waiting for confirm-traffic"),
        within=30,
        what="the new walk held",
    )
    receiver.open["/gate"] = True
    serve.wait_flag("checkout", "Paused", within=30)
    receiver.open["/rollback"] = True
    off = serve.wait_flag("checkout", "Aborted", within=30)
    assert off["enabled"] is False and off["rollout"]["weight"] == 30, off
    assert "turned off: rollback webhook undo asked for it" in off["message"], off
    wait_until(lambda: len(receiver.types("/post")) == 2, within=15, what="post-rollout again")
