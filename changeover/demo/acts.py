"""The demo's canary, analysis and blue-green acts, written as an operator would do them by
hand (the model act between the last two is ``demo.model_act``).

Act 1, canary (``demo-canary``, 4 replicas): v1 takes steady load; v2 walks
``rollout_docs.canary_steps``: 20%, a timed pause, 50%, ``pause: {}`` (the demo promotes it itself,
and says so), 80%, a timed pause, 100%.

Act 2, analysis (``demo-analysis``, 2 replicas): nobody promotes. An AnalysisTemplate reads
the canary's error rate from the builtin router; a healthy v2 is promoted step by step by
its analysis, then a bad v3 (30% of its answers are 500s) is aborted by it, all traffic goes
back to v2, and the act reports the verdict and the bad version's blast radius.

Act 3, blue-green (``demo-bluegreen``, 2 replicas): v2 comes up beside v1 and answers only
on the preview port; ``promote`` switches all traffic at once; ``undo`` switches it back to
v1 at once (still up thanks to ``scaleDownDelaySeconds``: no preview, no promote needed).
After each switch the per-second timeline shows that traffic moved within one second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from changeover.demo import private_server, rollout_docs, stage, view

JSON = dict[str, Any]


def canary(st: stage.Stage, root: Path) -> None:
    port = private_server.free_port()
    steps = rollout_docs.canary_steps(st.t.pause)

    def label(s: JSON) -> str:
        version = st.versions.get(str(s.get("revision")), "?")
        index = s.get("currentStepIndex")
        if s.get("stableRevision") == s.get("revision"):
            return f"{version} serves all traffic"
        if s.get("stableRevision") is None or index is None:
            return f"deploying {version}"
        index = min(int(index), len(steps) - 1)
        return f"step {index + 1}/{len(steps)}: {rollout_docs.describe_step(steps[index])}"

    def spec(version: str) -> JSON:
        return rollout_docs.canary(root=root, version=version, port=port, pause_seconds=st.t.pause)

    st.begin("canary", rollout=rollout_docs.CANARY, port=port, label=label)
    st.say(f"→ applying v1: {rollout_docs.CANARY_REPLICAS} replicas of examples/app.py behind the")
    st.say(f"  builtin router on {st.url}")
    v1 = st.apply(spec("v1"), version="v1", file="canary.yaml")
    st.wait_for("v1 to come up", stage.serves(v1))
    st.start_load()
    st.hold(st.t.warmup)

    pause = f"{st.t.pause:g}s"
    st.say(f"→ applying v2: the canary gets 20% of traffic, then 50% after {pause}")
    st.note("  steps: " + " → ".join(rollout_docs.describe_step(s, short=True) for s in steps))
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
    st.api.delete(rollout_docs.CANARY)


def analysis(st: stage.Stage, root: Path) -> int:
    """The analysis act; returns how many requests failed on the bad version (expected)."""
    port = private_server.free_port()
    steps = rollout_docs.analysis_steps()
    interval = max(1.0, st.t.pause / 6)

    def label(s: JSON) -> str:
        version = st.versions.get(str(s.get("revision")), "?")
        index = s.get("currentStepIndex")
        if s.get("phase") == "Aborted":
            return f"{version} aborted by analysis"
        if s.get("stableRevision") == s.get("revision"):
            return f"{version} serves all traffic"
        if s.get("stableRevision") is None or index is None:
            return f"deploying {version}"
        index = min(int(index), len(steps) - 1)
        return (
            f"{version} step {index + 1}/{len(steps)}: {rollout_docs.describe_step(steps[index])}"
        )

    def spec(version: str, error_rate: float) -> JSON:
        return rollout_docs.analysis_canary(
            root=root, version=version, port=port, error_rate=error_rate
        )

    st.begin("analysis", rollout=rollout_docs.ANALYSIS, port=port, label=label)
    st.say("→ an AnalysisTemplate: the canary's error rate, read from the builtin router (no")
    st.say(f"  Prometheus needed), every {interval:g}s, three times; more than 5% fails it")
    st.cmd("apply -f analysis-template.yaml")
    st.api.apply(
        [rollout_docs.analysis_template(interval_seconds=interval)], source="analysis.yaml"
    )
    v1 = st.apply(spec("v1", 0.0), version="v1", file="canary-analysis.yaml")
    st.wait_for("v1 to come up", stage.serves(v1))
    st.start_load()
    st.hold(st.t.warmup)

    st.say("→ applying v2 (healthy): after 20% and after 50% of traffic its analysis decides;")
    st.say("  no human promotes it")
    st.note("  steps: " + " → ".join(rollout_docs.describe_step(s, short=True) for s in steps))
    v2 = st.apply(spec("v2", 0.0), version="v2", file="canary-analysis.yaml")
    done = st.wait_for("the analysis to promote v2", stage.serves(v2))
    st.say(f"✔ v2 promoted by analysis: {_verdict(done)}", style="bold green")
    st.hold(st.t.switched / 2)

    st.say(f"→ applying v3 (bad: {rollout_docs.BAD_ERROR_RATE:.0%} of its answers are 500s)")
    assert st.gen is not None
    before = st.load.snapshot(st.gen)
    began = time.monotonic()
    st.abort_expected = True
    v3 = st.apply(
        spec("v3", rollout_docs.BAD_ERROR_RATE), version="v3", file="canary-analysis.yaml"
    )
    aborted = st.wait_for("the analysis to abort v3", lambda s: s.get("phase") == "Aborted")
    took = time.monotonic() - began
    st.say(f"✖ v3 aborted by analysis after {took:.1f}s: {_verdict(aborted)}", style="bold yellow")
    st.wait_for("all traffic back on v2", lambda s: s.get("weights") == {str(v2): 100})
    st.hold(st.t.switched / 2)
    report = st.load.snapshot(st.gen)
    bad = report.by_revision.get(str(v3), 0)
    failed = report.failures_by_revision.get(str(v3), 0)
    meanwhile = max(1, report.total - before.total)
    st.say(
        f"  all traffic is back on v2; v3 answered {bad:,} requests ({failed:,} failed): "
        f"{bad / meanwhile:.1%} of the {meanwhile:,} sent since it was applied",
        style="",
    )
    st.end()
    st.api.delete(rollout_docs.ANALYSIS)
    return failed


def _verdict(status: JSON) -> str:
    """``error-rate 0.31 Failed (2 of 2 failed)`` from the status document's analysis."""
    results = status.get("analysis") or {}
    parts = []
    for name, result in sorted(results.items()):
        value = result.get("value")
        shown = f"{value:.3g}" if isinstance(value, int | float) else str(value)
        parts.append(
            f"{name} = {shown} {result.get('phase')} "
            f"({result.get('successful', 0)} passed, {result.get('failed', 0)} failed)"
        )
    return "; ".join(parts) or "no analysis results"


def blue_green(st: stage.Stage, root: Path) -> None:
    port, preview = private_server.free_port(), private_server.free_port()

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
        return rollout_docs.blue_green(
            root=root,
            version=version,
            port=port,
            preview_port=preview,
            scale_down_seconds=st.t.scale_down,
        )

    st.begin("blue-green", rollout=rollout_docs.BLUE_GREEN, port=port, label=label)
    st.say(f"→ applying v1 (blue): {rollout_docs.BLUE_GREEN_REPLICAS} replicas on {st.url}")
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
        f"{st.t.scale_down:g}s), so undo switches"
    )
    st.say("  all traffic back to it at once, as Argo Rollouts does")
    switch(st, to=v1, undo=True)
    st.hold(st.t.switched)
    st.end()


def switch(st: stage.Stage, *, to: int, undo: bool) -> None:
    """Promote (or undo) and show the per-second timeline around the switch."""
    began = time.monotonic()
    if undo:
        st.command("undo")
    else:
        st.command("promote", {"full": False})
    # The command's answer comes after the router switched: this second holds the switch.
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
