"""Where the time goes in bench/k8s_scale.py's runs, and the tables of its section of
bench/RESULTS.md: spans of the operator's spec-change trace (``operator.trace``), spans
read from the pods' and ReplicaSets' timestamps, histogram windows of the operator's
reconcile durations and event-loop lag, and the mean reply time per kind of request.
"""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

from bench import common
from bench.k8s_operator_proc import BUCKETS
from changeover.kube import client as kube
from changeover.kube import names as kube_names

JSON = dict[str, Any]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# Spans of the operator's own trace (``operator.trace``), from our write's reply ("start").
TRACE_SPANS = (
    ("watch", "start", "received"),
    ("queue", "received", "dequeued"),
    ("to first write", "dequeued", "acted"),
    ("first action", "start", "acted"),
    ("status written", "start", "written"),
)


def trace_spans(trace: list[JSON], generation: int, start: dict[str, float]) -> dict[str, Any]:
    out: dict[str, list[float]] = {name: [] for name, _, _ in TRACE_SPANS}
    for record in trace:
        if record["generation"] != generation or record["name"] not in start:
            continue
        stamps = {**record, "start": start[record["name"]]}
        for name, a, b in TRACE_SPANS:
            if a in stamps and b in stamps:
                out[name].append(stamps[b] - stamps[a])
    return out


def epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def pod_spans(
    client: kube.KubeClient, ns: str, revision: int, traced: JSON, seen: dict[str, float]
) -> dict[str, list[float]]:
    """The rest of the way, per rollout, from the pods of ``revision`` (their timestamps
    have whole seconds, so spans from or to them are ±1 s): the operator's first write →
    the pod created (the operator scales the ReplicaSet up, the controller-manager makes
    the pod), created → Ready (scheduler and fake kubelet), Ready → the operator's watch
    shows the ReplicaSet all ready (the controller-manager updates its status), and from
    there → the rollout seen in its next phase (the operator's own reaction, plus up to a
    second of our polling)."""
    acted = {
        r["name"]: r["acted"]
        for r in traced["trace"]
        if r["generation"] == revision and "acted" in r
    }
    rs_ready = {
        name: by_rev[str(revision)]
        for name, by_rev in traced["rsReady"].items()
        if str(revision) in by_rev
    }
    sets = await client.list(kube.REPLICASETS, namespace=ns, label_selector=kube_names.HASH_LABEL)
    owner_of_hash = {
        rs["metadata"]["labels"][kube_names.HASH_LABEL]: rs["metadata"]["labels"].get(
            kube_names.ROLLOUT_LABEL, ""
        )
        for rs in sets["items"]
        if (rs["metadata"].get("annotations") or {}).get(kube_names.REVISION_ANNOTATION)
        == str(revision)
    }
    pods = await client.list(kube.PODS, namespace=ns)
    out: dict[str, list[float]] = {
        "pod created": [],
        "pod ready": [],
        "rs ready seen": [],
        "operator after rs ready": [],
    }
    for pod in pods["items"]:
        name = owner_of_hash.get((pod["metadata"].get("labels") or {}).get(kube_names.HASH_LABEL))
        if name is None or name not in acted:
            continue
        born = epoch(pod["metadata"]["creationTimestamp"])
        out["pod created"].append(born - acted[name])
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = [
            epoch(c["lastTransitionTime"])
            for c in conditions
            if c.get("type") == "Ready" and c.get("status") == "True"
        ]
        if ready:
            out["pod ready"].append(ready[0] - born)
            if name in rs_ready:
                out["rs ready seen"].append(rs_ready[name] - ready[0])
    for name, at in rs_ready.items():
        if name in seen and name in acted:
            out["operator after rs ready"].append(seen[name] - at)
    return out


def summaries(spans: dict[str, list[float]]) -> JSON:
    return {
        name: {
            "n": len(values),
            "p50": round(pct(values, 0.5) * 1000),
            "p95": round(pct(values, 0.95) * 1000),
            "max": round(max(values) * 1000) if values else None,
        }
        for name, values in spans.items()
    }


def bucket_pct(before: JSON, after: JSON, q: float) -> float | None:
    """The bucket bound below which a fraction ``q`` of the window's samples fell."""
    counts = [b - a for a, b in zip(before["counts"], after["counts"], strict=True)]
    total = sum(counts)
    if not total:
        return None
    running = 0
    for bound, count in zip(BUCKETS, counts, strict=True):
        running += count
        if running >= q * total:
            return bound
    return None


def operator_window(a: JSON, b: JSON, workers: int) -> JSON:
    """The operator between two snapshots: reconciles, their duration, how busy the
    workers were, how late its event loop ran, and the mean reply time per request kind."""
    wall = b["time"] - a["time"]
    busy = b["reconcileSeconds"]["sum"] - a["reconcileSeconds"]["sum"]
    replies = {}
    for what, count in b["requests"].items():
        if what.startswith("WATCH"):
            continue
        k = count - a["requests"].get(what, 0)
        secs = b["requestSeconds"].get(what, 0.0) - a["requestSeconds"].get(what, 0.0)
        if k:
            replies[what] = {"n": k, "mean_ms": round(secs / k * 1000, 1)}
    return {
        "seconds": round(wall, 1),
        "reconciles": b["reconciles"] - a["reconciles"],
        "reconcile_p50_le_s": bucket_pct(a["reconcileSeconds"], b["reconcileSeconds"], 0.5),
        "reconcile_p95_le_s": bucket_pct(a["reconcileSeconds"], b["reconcileSeconds"], 0.95),
        "workers_busy": round(busy / max(wall, 1e-9) / workers, 2),
        "loop_lag_p50_le_s": bucket_pct(a["loopLag"], b["loopLag"], 0.5),
        "loop_lag_p95_le_s": bucket_pct(a["loopLag"], b["loopLag"], 0.95),
        "replies": replies,
    }


def short(r: JSON, key: str, of: int) -> str:
    """' (903/1000)' when a phase stopped at its time limit short of every rollout."""
    return "" if r[key] >= of else f" ({r[key]}/{of})"


STAGE_COLUMNS = (
    "watch",
    "queue",
    "to first write",
    "first action",
    "status written",
    "pod created",
    "pod ready",
    "rs ready seen",
    "operator after rs ready",
)


def render(results: list[JSON], *, command: str) -> str:
    """The section's tables under the run's machine, date, commit and command (the prose
    around them is written by hand)."""
    lines = [
        "## Kubernetes scale",
        "",
        f"- machine: `{' '.join(platform.uname())}`, {os.cpu_count()} cores",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: {common.commit()}",
        f"- command: `{command}`",
        "",
        "| rollouts | create→all Healthy | update→all Paused | promote→all Healthy "
        "| first action p50 / p95 / max | requests/step (update) | requests (promote) "
        "| operator CPU | peak RSS | load avg before → after |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['rollouts']} | "
            f"{r['create_to_healthy_s']} s{short(r, 'healthy', r['rollouts'])} | "
            f"{r['update_to_paused_s']} s{short(r, 'paused', r['rollouts'])} | "
            f"{r['promote_to_healthy_s']} s{short(r, 'promoted', r['paused'])} | "
            f"{r['reconcile_latency_p50_ms']} / "
            f"{r['reconcile_latency_p95_ms']} / {r['reconcile_latency_max_ms']} ms | "
            f"{r['api_requests_per_rollout_step_update']} | "
            f"{r['api_requests_per_rollout_promote']} | {r['operator_cpu_s']} s | "
            f"{r['operator_peak_rss_mb']} MB | "
            f"{r['load_before'][0]} → {r['load_after'][0]} |"
        )
    lines += [
        "",
        "Update phase, per rollout, p50 / p95 in ms (see the stages above):",
        "",
        "| rollouts | " + " | ".join(STAGE_COLUMNS) + " |",
        "|---:|" + "---|" * len(STAGE_COLUMNS),
    ]
    for r in results:
        cells = [
            f"{st['p50']} / {st['p95']}"
            for st in (
                r["update_stages_ms"].get(c, {"p50": "-", "p95": "-"}) for c in STAGE_COLUMNS
            )
        ]
        lines.append(f"| {r['rollouts']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The operator during the update phase:",
        "",
        "| rollouts | reconciles | reconcile p50 / p95 ≤ | workers busy | loop lag p50 / p95 ≤ "
        "| mean reply (ms) by request |",
        "|---:|---:|---|---:|---|---|",
    ]
    for r in results:
        op = r["update_operator"]
        top = sorted(op["replies"].items(), key=lambda kv: -kv[1]["n"])[:5]
        replies = ", ".join(f"{k} {v['mean_ms']} (×{v['n']})" for k, v in top)
        lines.append(
            f"| {r['rollouts']} | {op['reconciles']} | "
            f"{op['reconcile_p50_le_s']} / {op['reconcile_p95_le_s']} s | "
            f"{op['workers_busy']:.0%} | "
            f"{op['loop_lag_p50_le_s']} / {op['loop_lag_p95_le_s']} s | {replies} |"
        )
    return "\n".join(lines) + "\n"
