"""The demo's model act: a chat model rolled out behind a shadow, then a canary on TTFT.

``demo-model`` runs ``examples/model_service.py`` (OpenAI-style streamed chat completions)
under steady chat load. Each new version first runs as a shadow: every request is copied
to it, its streamed answers are reassembled and compared with production's, and analysis
reads the match rate. A version that answers like production becomes a 30% canary judged
on its time to first token, then takes all traffic; v2 does. v3's answers drift (half of
them differ from v2's): the shadow's analysis stops it before any user sees one of its
answers, and the act shows the differences and the failing metric.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from changeover.cli import shadow_command
from changeover.demo import private_server, stage

JSON = dict[str, Any]

MODEL = "demo-model"
REPLICAS = 1
CHAT_RATE = 20.0  # streamed chat requests per second
TTFT_MS = 60  # the model's time to the first token
TTFT_LIMIT = 0.25  # seconds: the canary's p95 time to first token must stay below
DRIFT = 0.5  # v3: the share of its answers that differ from v2's
PROMPTS = 12


def chat_body(index: int) -> bytes:
    """A streamed chat request; a dozen prompts in turn, so answers can be compared."""
    question = f"What does the cluster say about request {index % PROMPTS}?"
    return json.dumps(
        {"model": "chat", "stream": True, "messages": [{"role": "user", "content": question}]}
    ).encode()


def steps(interval: float) -> list[JSON]:
    every = f"{interval:g}s"
    return [
        {"setCanaryScale": {"replicas": REPLICAS}},  # up before any traffic: it is a shadow
        {
            "setMirrorRoute": {
                "name": "shadow",
                "percentage": 100,
                "compare": {"comparator": "text", "threshold": 0.98},
            }
        },
        {
            "analysis": {
                "metrics": [_metric("answers-match", "shadow-match-rate", ">= 0.95", every)]
            }
        },
        {"setMirrorRoute": {"name": "shadow"}},
        {"setWeight": 30},
        {
            "analysis": {
                "metrics": [
                    _metric("ttft-p95", "ttft-p95", f"<= {TTFT_LIMIT:g}", every, window="5s")
                ]
            }
        },
    ]


def _metric(name: str, metric: str, condition: str, every: str, *, window: str = "10s") -> JSON:
    return {
        "name": name,
        "interval": every,
        "count": 3,
        "failureLimit": 0,
        "consecutiveErrorLimit": 20,  # no answer compared yet is an Error, not a failure
        "successCondition": f"result {condition}",
        "provider": {
            "builtin": {"metric": metric, "revision": "canary", "window": window, "minRequests": 5}
        },
    }


def spec(*, root: Path, version: str, port: int, drift: float, interval: float) -> JSON:
    """examples/model-shadow.yaml's model as a canary: shadow compared, then TTFT."""
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": MODEL, "labels": {"app": "chat-model"}},
        "spec": {
            "replicas": REPLICAS,
            "template": {
                "command": [
                    sys.executable,
                    str(root / "examples" / "model_service.py"),
                    "--port",
                    "$(PORT)",
                    "--version",
                    version,
                ],
                "env": {"TTFT_MS": str(TTFT_MS), "TOKEN_MS": "6", "DRIFT": f"{drift:g}"},
                "workingDir": str(root),
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.5},
            },
            "service": {"port": port},
            "strategy": {"canary": {"steps": steps(interval)}},
        },
    }


def play(st: stage.Stage, root: Path) -> None:
    port = private_server.free_port()
    interval = max(1.0, st.t.pause / 8)
    labels = {
        0: "shadow: starting",
        1: "shadow: answers copied",
        2: "shadow: answers compared",
        3: "shadow off",
        4: "canary 30%",
        5: "canary: TTFT judged",
    }

    def label(s: JSON) -> str:
        version = st.versions.get(str(s.get("revision")), "?")
        if s.get("phase") == "Aborted":
            return f"{version} stopped by analysis"
        if s.get("stableRevision") == s.get("revision"):
            return f"{version} serves all traffic"
        index = s.get("currentStepIndex")
        if s.get("stableRevision") is None or index is None:
            return f"deploying {version}"
        step = labels.get(int(index))
        return f"{version} {step}" if step else f"deploying {version}"

    def model(version: str, drift: float = 0.0) -> JSON:
        return spec(root=root, version=version, port=port, drift=drift, interval=interval)

    st.begin("model", rollout=MODEL, port=port, label=label)
    st.say("→ a chat model (examples/model_service.py) streaming OpenAI-style answers token")
    st.say(f"  by token, first token after {TTFT_MS} ms")
    v1 = st.apply(model("v1"), version="v1", file="model.yaml")
    st.wait_for("v1 to come up", stage.serves(v1))
    st.start_load(path="/v1/chat/completions", rate=CHAT_RATE, body_fn=chat_body)
    st.hold(st.t.warmup / 2)

    st.say("→ applying v2 as a shadow: every chat request is copied to it, its streamed answer")
    st.say("  reassembled and compared with v1's (users only get v1's); if ≥ 95% match, it")
    st.say(
        f"  becomes a 30% canary judged on time to first token (p95 ≤ {TTFT_LIMIT * 1000:.0f} ms)"
    )
    v2 = st.apply(model("v2"), version="v2", file="model.yaml")
    done = st.wait_for("v2 to be promoted", stage.serves(v2))
    st.say(f"✔ v2 promoted: {_results(done)}", style="bold green")
    st.hold(st.t.switched / 4)

    st.say(f"→ applying v3: {DRIFT:.0%} of its answers differ from v2's for the same prompt")
    st.abort_expected = True
    began = time.monotonic()
    v3 = st.apply(model("v3", DRIFT), version="v3", file="model.yaml")
    stopped = st.wait_for("the analysis to stop v3", lambda s: s.get("phase") == "Aborted")
    st.say(
        f"✖ v3 stopped by analysis after {time.monotonic() - began:.1f}s, before any user got "
        f"one of its answers: {_results(stopped)}",
        style="bold yellow",
    )
    st.cmd(f"shadow {MODEL} -n 1")
    found = st.api.shadow(MODEL).get(str(v3))
    if found:
        st.console.print(shadow_command.render(str(v3), found, limit=1), soft_wrap=True)
    st.end()
    st.api.delete(MODEL)


def _results(status: JSON) -> str:
    """``answers-match = 1 Successful; ttft-p95 = 0.071 Successful`` from the analysis."""
    parts = []
    for name, result in sorted((status.get("analysis") or {}).items()):
        value = result.get("value")
        shown = f"{value:.3g}" if isinstance(value, int | float) else str(value)
        parts.append(f"{name} = {shown} {result.get('phase')}")
    return "; ".join(parts) or "no analysis results"
