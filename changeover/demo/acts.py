"""The demo's two acts, written as an operator would do them by hand.

Act 1, canary (``demo-canary``, 4 replicas): v1 takes steady load; v2 walks
``specs.canary_steps``: 20%, a timed pause, 50%, ``pause: {}`` (the demo promotes it itself,
and says so), 80%, a timed pause, 100%.

Act 2, blue-green (``demo-bluegreen``, 2 replicas): v2 comes up beside v1 and answers only
on the preview port; ``promote`` switches all traffic at once; ``undo`` puts v1 (still up,
thanks to ``scaleDownDelaySeconds``) back on preview at once and ``promote`` switches back.
After each switch the per-second timeline shows that traffic moved within one second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from changeover.demo import server as server_mod
from changeover.demo import specs, stage, view

JSON = dict[str, Any]


def canary(st: stage.Stage, root: Path) -> None:
    port = server_mod.free_port()
    steps = specs.canary_steps(st.t.pause)

    def label(s: JSON) -> str:
        version = st.versions.get(str(s.get("revision")), "?")
        index = s.get("currentStepIndex")
        if s.get("stableRevision") == s.get("revision"):
            return f"{version} serves all traffic"
        if s.get("stableRevision") is None or index is None:
            return f"deploying {version}"
        index = min(int(index), len(steps) - 1)
        return f"step {index + 1}/{len(steps)}: {specs.describe_step(steps[index])}"

    def spec(version: str) -> JSON:
        return specs.canary(root=root, version=version, port=port, pause_seconds=st.t.pause)

    st.begin("canary", rollout=specs.CANARY, port=port, label=label)
    st.say(f"→ applying v1: {specs.CANARY_REPLICAS} replicas of examples/app.py behind the")
    st.say(f"  builtin router on {st.url}")
    v1 = st.apply(spec("v1"), version="v1", file="canary.yaml")
    st.wait_for("v1 to come up", stage.serves(v1))
    st.start_load()
    st.hold(st.t.warmup)

    pause = f"{st.t.pause:g}s"
    st.say(f"→ applying v2: the canary gets 20% of traffic, then 50% after {pause}")
    st.note("  steps: " + " → ".join(specs.describe_step(s, short=True) for s in steps))
    v2 = st.apply(spec("v2"), version="v2", file="canary.yaml")
    manual = next(i for i, s in enumerate(steps) if s.get("pause") == {})
    st.wait_for(
        "the canary to reach `pause: {}`",
        lambda s: stage.paused(s) and s.get("currentStepIndex") == manual,
    )
    st.say(f"→ step {manual + 1}/{len(steps)} is `pause: {{}}`: it waits for a human to promote.")
    st.say(f"  The demo plays that human and promotes in {st.t.manual:g}s.")
    st.hold(st.t.manual)
    st.command("promote", {"full": False})
    st.say(f"→ promoted: v2 gets 80%, then all of it after {pause}")
    st.wait_for("v2 to serve all traffic", stage.serves(v2))
    st.say("✔ canary complete: v2 serves 100% of traffic", style="bold green")
    st.hold(st.t.switched / 2)
    st.end()
    # Its replicas would only compete with act 2 for the cores.
    st.api.delete(specs.CANARY)


def blue_green(st: stage.Stage, root: Path) -> None:
    port, preview = server_mod.free_port(), server_mod.free_port()

    def label(s: JSON) -> str:
        target, stable = str(s.get("revision")), str(s.get("stableRevision"))
        version = st.versions.get(target, "?")
        if s.get("stableRevision") is None:
            return f"deploying {version}"
        if target == stable:
            return f"{version} serves all traffic"
        if stage.paused(s):
            return f"{version} on preview, {st.versions.get(stable, '?')} live"
        return f"{version} coming up on preview"

    def spec(version: str) -> JSON:
        return specs.blue_green(
            root=root,
            version=version,
            port=port,
            preview_port=preview,
            scale_down_seconds=st.t.scale_down,
        )

    st.begin("blue-green", rollout=specs.BLUE_GREEN, port=port, label=label)
    st.say(f"→ applying v1 (blue): {specs.BLUE_GREEN_REPLICAS} replicas on {st.url}")
    v1 = st.apply(spec("v1"), version="v1", file="blue-green.yaml")
    st.wait_for("blue to come up", stage.serves(v1))
    st.start_load()
    st.hold(st.t.warmup)

    st.say("→ applying v2 (green): it comes up beside blue at full size and answers only on")
    st.say(f"  the preview port {preview}; users still get blue")
    v2 = st.apply(spec("v2"), version="v2", file="blue-green.yaml")
    st.wait_for("green on preview", stage.paused)
    st.say(f"  preview http://127.0.0.1:{preview}/ answers {probe(preview)}", style="")
    st.say(f"  users on {st.url}/ get {probe(port)}", style="")
    st.hold(st.t.preview)

    st.say("→ the switch: all traffic to green at once")
    switch(st, to=v2, undo=False)
    st.hold(st.t.switched)

    st.say(
        "→ and back: blue (v1) is still running (scaleDownDelaySeconds "
        f"{st.t.scale_down:g}s), so undo puts it"
    )
    st.say("  on preview at once, and promote switches all traffic back to it")
    switch(st, to=v1, undo=True)
    st.hold(st.t.switched)
    st.end()


def switch(st: stage.Stage, *, to: int, undo: bool) -> None:
    """Promote (after an undo if asked) and show the per-second timeline around the switch."""
    began = time.monotonic()
    if undo:
        st.command("undo")
        st.wait_for("blue on preview", stage.paused)
    st.command("promote", {"full": False})
    # The promote's answer comes after the router switched: this second holds the switch.
    second = st.second()
    took = time.monotonic() - began
    st.wait_for(f"{st.versions[str(to)]} to serve all traffic", stage.serves(to))
    st.hold(2.2)  # let the second after the switch fill up, to show it
    assert st.gen is not None
    report = st.load.snapshot(st.gen)
    old = {rev for rev in st.versions if rev != str(to)}
    # Whole seconds after the switch (the timeline's last second is still filling).
    late = sum(n for s in report.timeline[second + 1 : -1] for rev, n in s.items() if rev in old)
    st.say(f"  switched in {took:.2f}s; requests per second around it:", style="")
    st.say(f"  {view.flip_lines(report, st.versions, second)}", style="")
    if late == 0:
        st.say("  not one request reached the old side after the switch", style="green")


def probe(port: int, count: int = 5) -> str:
    """What ``count`` GETs to ``port`` answer: ``v2 ×5`` (the app reports its version)."""
    seen: dict[str, int] = {}
    with httpx.Client(trust_env=False, timeout=5.0) as http:
        for _ in range(count):
            try:
                version = str(http.get(f"http://127.0.0.1:{port}/").json().get("version", "?"))
            except (httpx.HTTPError, ValueError, AttributeError):
                version = "error"
            seen[version] = seen.get(version, 0) + 1
    return ", ".join(f"{v} ×{n}" for v, n in seen.items())
