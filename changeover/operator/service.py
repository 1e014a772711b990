"""``KubeService``: the user operations of ``rollout_service.RolloutService`` on Rollout
resources through the Kubernetes API (what Argo Rollouts' kubectl plugin does).

- Flags (``flag/NAME``) are ``self.flags`` (``operator.flag_commands``).
- ``apply`` validates every document with the spec models first (all problems at once,
  exit 2 on any; a process template is refused with what Kubernetes expects), then creates
  or replaces each Rollout, keeping the user's spec as written.
- ``promote``/``abort``/``retry``/``pause``/``resume`` apply the engine's pure
  ``engine.commands`` to the stored status and write it back with the resourceVersion
  they read (retrying on a conflict), exactly as the local server does under its lock;
  the operator's next plan carries the request out and records the event.
- ``undo`` puts an earlier ReplicaSet's pod template back into ``spec.template``; the
  operator re-uses that revision (equal templates hash alike).
- ``status``/``list_rollouts`` render the §4 status document; ``events`` reads Events;
  ``history`` lists the kept ReplicaSets.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

from changeover import errors, validation
from changeover.engine import commands, rollback
from changeover.engine.status import RolloutStatus
from changeover.kube import client as kube
from changeover.kube import names
from changeover.operator import documents
from changeover.operator.flag_commands import KubeFlags
from changeover.operator.namespace_cache import NamespaceCache
from changeover.platforms.kubernetes import replicasets
from changeover.platforms.kubernetes.events import events_of, list_events
from changeover.platforms.kubernetes.informer import Informer
from changeover.platforms.kubernetes.replicasets import Counts
from changeover.spec import analysis as spec_analysis
from changeover.spec import load, models

JSON = dict[str, Any]
TRAFFIC_NOTE = (
    "Requests are counted by the cluster's router (its Service, ingress or mesh), not by "
    "this dashboard: see their metrics in your Prometheus."
)


class KubeService:
    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str | None = None,
        cache: Callable[[], NamespaceCache | None] | None = None,
    ) -> None:
        """``cache``: the namespace's watched objects (the cluster dashboard), which reads
        use while they are synced; writes always read the API server first."""
        self.client = client
        self.namespace = namespace or client.namespace
        self._cache = cache
        flags = (lambda: self._watched(lambda c: c.flags)) if cache is not None else None
        self.flags = KubeFlags(client, namespace=self.namespace, watched=flags)

    # --- apply ---------------------------------------------------------------------

    def check(self, documents_: list[JSON], *, source: str) -> load.Specs:
        """Every document as the models read it; one SpecError with every problem."""
        loaded = [
            load.LoadedDocument(source=source, index=i, data=doc)
            for i, doc in enumerate(documents_)
        ]
        specs = load.parse_documents(loaded)
        rollouts = specs.rollouts
        problems = [
            p
            for p in validation.validate_rollouts(rollouts, source=source)
            if p.severity != "warning"
        ]
        for rollout in rollouts:
            try:
                rollout.spec.pod_template()
            except errors.SpecError as exc:
                problems += [
                    errors.SpecProblem(file=source, path=p.path, message=p.message)
                    for p in exc.problems
                ]
        # (a router of the local platform is refused by validate_rollouts, by name)
        for doc in documents_:
            given = (doc.get("metadata") or {}).get("namespace")
            if given is not None and given != self.namespace:
                # as kubectl refuses it: never apply into a namespace the file did not name
                problems.append(
                    errors.SpecProblem(
                        file=source,
                        path="metadata.namespace",
                        message=f"is {given!r}, but this command acts on namespace "
                        f"{self.namespace!r}; pass -n {given} (or remove metadata.namespace)",
                    )
                )
        if problems:
            raise errors.SpecError(problems)
        return specs

    async def apply(self, documents_: list[JSON], *, source: str) -> list[JSON]:
        specs = self.check(documents_, source=source)
        templates = [d for d in documents_ if d.get("kind") == "AnalysisTemplate"]
        problems = []
        for i, doc in enumerate(templates):
            try:
                spec_analysis.AnalysisTemplate.model_validate(
                    {**doc, "apiVersion": models.API_VERSION}
                )
            except ValueError as exc:
                problems.append(errors.SpecProblem(file=source, path=f"[{i}]", message=str(exc)))
        if problems:
            raise errors.SpecError(problems)
        results = []
        # Templates first: a rollout applied with them may start an analysis at once.
        for doc in templates:
            name = str(doc["metadata"]["name"])
            body: JSON = {
                "apiVersion": models.API_VERSION,
                "kind": "AnalysisTemplate",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": doc.get("spec") or {},
            }
            await self.client.apply_object(kube.ANALYSIS_TEMPLATES, body, namespace=self.namespace)
            results.append({"name": name, "kind": "AnalysisTemplate", "action": "applied"})
        results += await self.flags.apply(specs.flags)
        for doc in documents_:
            if doc.get("kind", "Rollout") == "Rollout":
                results.append(await self._apply_one(doc))
        return results

    async def _apply_one(self, doc: JSON) -> JSON:
        meta = doc.get("metadata") or {}
        name = str(meta["name"])
        body: JSON = {
            "apiVersion": models.API_VERSION,
            "kind": "Rollout",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": dict(meta.get("labels") or {}),
                "annotations": dict(meta.get("annotations") or {}),
            },
            "spec": copy.deepcopy(doc["spec"]),
        }
        # Retried on a stale read: the operator writes status between our read and write.
        for _ in range(10):
            try:
                return await self._write_rollout(name, body)
            except kube.Conflict:
                await asyncio.sleep(0.05)
        raise errors.TemporaryBackendError(f"rollout {name} kept changing; try again")

    async def _write_rollout(self, name: str, body: JSON) -> JSON:
        existing = await self.client.get_or_none(kube.ROLLOUTS, name, namespace=self.namespace)
        revision = await self._revision_for(existing, body)
        if existing is None:
            await self.client.create(kube.ROLLOUTS, body, namespace=self.namespace)
            return {"name": name, "revision": revision, "action": "created", "newRevision": True}
        if existing.get("spec") == body["spec"]:
            return {"name": name, "revision": revision, "action": "unchanged", "newRevision": False}
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        await self.client.replace(kube.ROLLOUTS, body, namespace=self.namespace)
        return {"name": name, "revision": revision, "action": "updated", "newRevision": True}

    async def _revision_for(self, existing: JSON | None, body: JSON) -> int:
        """The revision the operator will give this template (see ``operator.reconcile``)."""
        if existing is None:
            return 1
        pod_hash = names.template_hash(_pod(body).to_json_dict())
        known = await self._replicasets(existing)
        for rev, rs in known.items():
            if rs["metadata"]["labels"].get(names.HASH_LABEL) == pod_hash:
                return rev
        last = int((existing.get("status") or {}).get("lastRevision") or 0)
        return max([last, *known]) + 1

    # --- reads ---------------------------------------------------------------------

    def _watched(self, pick: Callable[[NamespaceCache], Informer]) -> Informer | None:
        """The informer ``pick`` names, if this service has a cache and it is synced."""
        cache = self._cache() if self._cache is not None else None
        if cache is None:
            return None
        informer = pick(cache)
        return informer if informer.in_sync else None

    async def _read(self, res: kube.Resource, name: str, informer: Informer | None) -> JSON | None:
        if informer is not None:
            return informer.get(self.namespace, name)
        return await self.client.get_or_none(res, name, namespace=self.namespace)

    async def _get(self, name: str, *, fresh: bool = False) -> JSON:
        """The Rollout ``name``; ``fresh``: from the API server (before a write)."""
        watched = None if fresh else self._watched(lambda c: c.rollouts)
        obj = await self._read(kube.ROLLOUTS, name, watched)
        if obj is None:
            raise errors.NotFound(f"no rollout named {name!r} in namespace {self.namespace}")
        return obj

    async def _replicasets(self, obj: JSON) -> dict[int, JSON]:
        name = obj["metadata"]["name"]
        watched = self._watched(lambda c: c.replicasets)
        if watched is not None:
            items = watched.indexed(name)
        else:
            doc = await self.client.list(
                kube.REPLICASETS,
                namespace=self.namespace,
                label_selector=f"{names.ROLLOUT_LABEL}={name}",
            )
            items = doc.get("items", [])
        out = {}
        for rs in items:
            rev = names.revision_of(rs)
            if rev is not None and names.owned_by(rs, obj["metadata"]["uid"]):
                out[rev] = rs
        return out

    async def document(self, obj: JSON) -> JSON:
        """The status document of the Rollout ``obj`` (of this service's namespace)."""
        return await self._document(obj)

    async def _document(self, obj: JSON) -> JSON:
        try:
            rollout: models.Rollout | None = documents.parse_rollout(obj)
        except Exception:
            rollout = None
        counts = {
            rev: Counts(
                revision=rev,
                name=rs["metadata"]["name"],
                pod_hash=rs["metadata"]["labels"].get(names.HASH_LABEL, ""),
                desired=int(rs["spec"].get("replicas") or 0),
                ready=int((rs.get("status") or {}).get("readyReplicas") or 0),
                available=int((rs.get("status") or {}).get("availableReplicas") or 0),
            )
            for rev, rs in (await self._replicasets(obj)).items()
        }
        ports = await self._service_ports(obj, rollout)
        return documents.status_document(obj, rollout, counts, ports=ports)

    async def _service_ports(self, obj: JSON, rollout: models.Rollout | None) -> dict[str, int]:
        """The ports the rollout's stable/active and preview Services listen on in the
        cluster (an adopted Service keeps its own, e.g. 80 in front of pods on 8080)."""
        if rollout is None or not rollout.spec.service.managed:
            return {}
        name, svc = obj["metadata"]["name"], rollout.spec.service
        wanted = [names.stable_service(name, svc.name)]
        bg = rollout.spec.strategy.blue_green
        if bg is not None:
            preview = names.preview_service(name, bg.preview_service)
            wanted = [bg.active_service or wanted[0], preview]
        target = svc.target_port or rollout.spec.pod_template().container_port() or svc.port
        out = {}
        watched = self._watched(lambda c: c.services)
        for service in wanted:
            found = await self._read(kube.SERVICES, service, watched)
            port = documents.service_port(found, target) if found else None
            if port is not None:
                out[service] = port
        return out

    async def list_rollouts(self) -> list[JSON]:
        watched = self._watched(lambda c: c.rollouts)
        if watched is not None:
            found = in_namespace(watched.items(), self.namespace)
        else:
            found = (await self.client.list(kube.ROLLOUTS, namespace=self.namespace))["items"]
        items = sorted(found, key=lambda o: o["metadata"]["name"])
        return list(await asyncio.gather(*(self._document(o) for o in items)))

    async def status(self, name: str) -> JSON:
        return await self._document(await self._get(name))

    async def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        await self._get(name)
        watched = self._watched(lambda c: c.events)
        if watched is not None:
            items = events_of(in_namespace(watched.items(), self.namespace), name=name)
        else:
            items = await list_events(self.client, namespace=self.namespace, name=name)
        return [
            {
                "time": documents.epoch(e.get("lastTimestamp") or e.get("eventTime")),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "revision": None,
                "type": e.get("type"),
            }
            for e in items[-limit:]
        ]

    async def history(self, name: str) -> list[JSON]:
        obj = await self._get(name)
        status = RolloutStatus.model_validate(obj.get("status") or {})
        out = []
        for rev, rs in sorted((await self._replicasets(obj)).items()):
            containers = rs["spec"]["template"]["spec"].get("containers") or []
            out.append(
                {
                    "revision": rev,
                    "createdAt": documents.epoch(rs["metadata"].get("creationTimestamp")),
                    "command": [c.get("image", "") for c in containers],
                    "images": [c.get("image", "") for c in containers],
                    "replicaSet": rs["metadata"]["name"],
                    "stable": rev == status.stable_revision,
                    "current": rev == status.target_revision,
                }
            )
        return out

    async def analysis(self, name: str) -> list[JSON]:
        """None to show: the operator keeps its runs in its own pod (their verdicts reach
        the status document's ``analysis``)."""
        await self._get(name)
        return []

    def traffic(self, name: str) -> JSON:
        """No counters: the cluster's router (a Service, an ingress or a mesh) counts the
        requests, not this client; ``note`` says so (the dashboard shows it)."""
        return {"note": TRAFFIC_NOTE}

    def metrics_text(self) -> str:
        return ""

    async def spec(self, name: str) -> JSON:
        obj = await self._get(name)
        return {
            "apiVersion": obj["apiVersion"],
            "kind": "Rollout",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": obj["spec"],
        }

    # --- commands ------------------------------------------------------------------

    async def _command(self, name: str, change: Callable[[RolloutStatus], RolloutStatus]) -> JSON:
        for _ in range(10):
            obj = await self._get(name, fresh=True)
            raw = obj.get("status") or {}
            new = change(RolloutStatus.model_validate(raw)).to_json_dict()
            obj["status"] = {**raw, **new}
            try:
                written = await self.client.replace(
                    kube.ROLLOUTS, obj, namespace=self.namespace, sub="status"
                )
            except kube.Conflict:
                await asyncio.sleep(0.05)
                continue
            return await self._document(written)
        raise errors.TemporaryBackendError(f"rollout {name} kept changing; try again")

    async def promote(self, name: str, *, full: bool = False) -> JSON:
        return await self._command(name, lambda s: commands.promote(s, full=full))

    async def abort(self, name: str) -> JSON:
        return await self._command(name, lambda s: commands.abort(s, now=_now()))

    async def retry(self, name: str) -> JSON:
        return await self._command(name, commands.retry)

    async def pause(self, name: str) -> JSON:
        return await self._command(name, lambda s: commands.pause(s, now=_now()))

    async def resume(self, name: str) -> JSON:
        return await self._command(name, commands.resume)

    async def undo(self, name: str, *, to_revision: int | None = None) -> JSON:
        # The operator writes status between our read and write; a stale
        # resourceVersion is retried on a fresh read, as `kubectl rollout undo` does.
        for _ in range(10):
            obj = await self._get(name, fresh=True)
            target = await self._undo_target(name, obj, to_revision)
            obj["spec"]["template"] = target[1]
            try:
                await self.client.replace(kube.ROLLOUTS, obj, namespace=self.namespace)
            except kube.Conflict:
                await asyncio.sleep(0.05)
                continue
            return {**(await self.status(name)), "undoneTo": target[0], "newRevision": target[0]}
        raise errors.TemporaryBackendError(f"rollout {name} kept changing; try again")

    async def _undo_target(self, name: str, obj: JSON, to_revision: int | None) -> tuple[int, JSON]:
        """The revision to go back to and its pod template, or a clear error."""
        status = RolloutStatus.model_validate(obj.get("status") or {})
        kept = await self._replicasets(obj)
        current = status.target_revision
        if to_revision is None:
            to_revision = rollback.undo_target(status, current, kept)
            if to_revision is None:
                raise errors.StateError(f"rollout {name!r} has no earlier revision to undo to")
        if to_revision not in kept:
            have = ", ".join(str(n) for n in sorted(kept)) or "none"
            raise errors.NotFound(f"rollout {name!r} has no revision {to_revision} (kept: {have})")
        if to_revision == current:
            raise errors.StateError(f"revision {to_revision} is already the current one")
        return to_revision, replicasets.original_template(kept[to_revision])

    async def delete(self, name: str) -> None:
        await self._get(name, fresh=True)
        await self.client.delete(
            kube.ROLLOUTS, name, namespace=self.namespace, propagation="Foreground"
        )


def in_namespace(items: list[JSON], namespace: str) -> list[JSON]:
    """Those of ``items`` in ``namespace`` (a cluster-wide cache has every namespace's)."""
    return [o for o in items if o["metadata"].get("namespace") == namespace]


def _pod(body: JSON) -> Any:
    from changeover.spec import pod

    return pod.PodTemplate.model_validate(body["spec"]["template"])


def _now() -> float:
    import time

    return time.time()
