"""Recreate: planned downtime, answered politely, with hooks at its edges.

Given v1 Healthy and a client polling the router without pause, when v2 is applied with
pre/mid/post hooks, then the client never sees a refused connection: it gets v1, then 503
with Retry-After (and a small maintenance page) while nothing runs, then v2, in that order;
the hooks ran pre, mid, post, and mid ran while the router was answering 503.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from e2e_helpers import Client, Reply, wait_until
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow

NAME = "recreate"

# Each hook appends "<phase> <what the router answered>" to the log; mid takes a moment,
# like a schema migration would, so the maintenance window is wide enough to observe.
HOOK = """\
import sys, time, urllib.error, urllib.request
log, phase, url = sys.argv[1:4]
try:
    code = urllib.request.urlopen(url, timeout=5).status
except urllib.error.HTTPError as exc:
    code = exc.code
except OSError as exc:
    code = type(exc).__name__
with open(log, "a") as f:
    f.write(f"{phase} {code}\\n")
if phase == "mid":
    time.sleep(1.0)
"""


class Poller:
    """GET the router in a loop on a thread, keeping every answer (or error) in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.replies: list[Reply | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = Client(self.url, timeout=10)
        while not self._stop.is_set():
            try:
                self.replies.append(client.get("/"))
            except OSError as exc:
                self.replies.append(f"{type(exc).__name__}: {exc}")
                client.close()
            self._stop.wait(0.005)
        client.close()

    def wait_more(self, count: int) -> None:
        """Until ``count`` more answers have come in."""
        target = len(self.replies) + count
        wait_until(lambda: len(self.replies) >= target, within=30, what=f"{count} more answers")

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def _kind(reply: Reply | str) -> str:
    if isinstance(reply, str):
        return "error"
    if reply.status == 503:
        return "503"
    if reply.status == 200:
        return reply.json()["version"]
    return f"HTTP {reply.status}"


def test_recreate_answers_503_with_retry_after_and_runs_hooks_in_order(
    serve: Serve, tmp_path: Path
) -> None:
    hook_script = tmp_path / "hook.py"
    hook_script.write_text(HOOK)
    hook_log = tmp_path / "hooks.log"
    rollout = example_rollout("recreate", name=NAME, version="v1", mark=serve.mark, replicas=2)
    url = f"http://127.0.0.1:{rollout['spec']['service']['port']}/"
    for phase in ("pre", "mid", "post"):
        rollout["spec"]["strategy"]["recreate"][phase] = {
            "command": [sys.executable, str(hook_script), str(hook_log), phase, url],
            "env": {"CHANGEOVER_E2E_MARK": serve.mark},
            "timeoutSeconds": 30,
            "failurePolicy": "Abort",
        }
    spec = write_rollout(tmp_path / "recreate.yaml", rollout)
    assert serve.apply(spec).code == 0
    serve.wait_phase(NAME, "Healthy", stableRevision=1)
    hook_log.unlink(missing_ok=True)  # only the v1 → v2 switch is under test

    with Poller(url) as poller:
        write_rollout(spec, with_version(rollout, "v2"))
        assert serve.apply(spec).code == 0
        serve.wait_phase(NAME, "Healthy", stableRevision=2, within=60)
        poller.wait_more(20)  # v2 answering after the switch

    kinds = [_kind(r) for r in poller.replies]
    errors = [r for r in poller.replies if isinstance(r, str)]
    assert not errors, errors[:5]  # never a refused or reset connection
    assert set(kinds) <= {"v1", "503", "v2"}, sorted(set(kinds))
    # In order: v1, then maintenance, then v2; never back.
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert collapsed == ["v1", "503", "v2"], collapsed
    maintenance = [r for r in poller.replies if isinstance(r, Reply) and r.status == 503]
    for reply in maintenance:
        assert int(reply.headers["retry-after"]) > 0, reply.headers
        assert reply.body, "a small maintenance page"

    lines = hook_log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["pre", "mid", "post"], lines
    assert lines[0] == "pre 200", lines  # the old revision still served
    assert lines[1] == "mid 503", lines  # nothing ran: maintenance
    status = serve.status(NAME)
    assert status["phase"] == "Healthy" and status["weights"] == {"2": 100}
    assert status["replicas"].get("1", 0) == 0
