"""An in-memory ``RolloutService`` for tests of the API, the CLI and anything else that
talks to a server without running a controller.

It keeps the contract's shapes (status documents, apply results, history rows, errors)
and fakes progress: a rollout stays ``Progressing`` for ``polls_to_finish`` status reads
after an apply, then lands on the phase named by the annotation
``fake.changeover.dev/outcome`` (``Healthy`` by default; ``Aborted`` or ``Degraded`` to
test failure paths)::

    svc = FakeService(polls_to_finish=2)
    await svc.apply([{"kind": "Rollout", "metadata": {"name": "chat"}, ...}], source="r.yaml")
    svc.status("chat")["phase"]   # Progressing, Progressing, then Healthy
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from changeover import errors

JSON = dict[str, Any]
OUTCOME = "fake.changeover.dev/outcome"


@dataclass
class _Rollout:
    spec: JSON
    revisions: list[JSON] = field(default_factory=list)
    status: JSON = field(default_factory=dict)
    events: list[JSON] = field(default_factory=list)
    polls_left: int = 0
    outcome: str = "Healthy"


class FakeService:
    def __init__(self, *, polls_to_finish: int = 0) -> None:
        self.polls_to_finish = polls_to_finish
        self.rollouts: dict[str, _Rollout] = {}
        # Every mutating call, in order, for assertions: ("promote", "chat", {"full": True})
        self.calls: list[tuple[str, str, JSON]] = []

    # --- helpers -------------------------------------------------------------------------

    def _get(self, name: str) -> _Rollout:
        try:
            return self.rollouts[name]
        except KeyError:
            raise errors.NotFound(f"rollout {name!r} not found") from None

    def _event(self, r: _Rollout, reason: str, message: str) -> None:
        r.events.append(
            {
                "time": time.time(),
                "reason": reason,
                "message": message,
                "revision": len(r.revisions),
            }
        )

    def _set(self, r: _Rollout, **changes: Any) -> JSON:
        r.status = {**r.status, **changes, "updatedAt": time.time()}
        return dict(r.status)

    @staticmethod
    def _validate(documents: list[JSON], source: str) -> None:
        problems = []
        for i, doc in enumerate(documents):
            if doc.get("kind") != "Rollout":
                problems.append(
                    errors.SpecProblem(file=source, path=f"[{i}].kind", message="expected Rollout")
                )
            meta = doc.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if not isinstance(name, str) or not name:
                problems.append(
                    errors.SpecProblem(file=source, path=f"[{i}].metadata.name", message="required")
                )
        if problems:
            raise errors.SpecError(problems)

    # --- RolloutService ------------------------------------------------------------------

    async def apply(self, documents: list[JSON], *, source: str) -> list[JSON]:
        self._validate(documents, source)
        results = []
        for doc in documents:
            name = doc["metadata"]["name"]
            spec = doc.get("spec")
            template = json.dumps(
                (spec if isinstance(spec, dict) else {}).get("template"), sort_keys=True
            )
            r = self.rollouts.get(name)
            if r is None:
                r = self.rollouts[name] = _Rollout(spec=doc)
                action = "created"
            elif r.revisions and r.revisions[-1]["template"] == template:
                r.spec = doc
                results.append({"name": name, "revision": len(r.revisions), "action": "unchanged"})
                continue
            else:
                r.spec = doc
                action = "updated"
            stable = len(r.revisions) or None
            r.revisions.append({"template": template, "createdAt": time.time()})
            revision = len(r.revisions)
            annotations = doc.get("metadata", {}).get("annotations", {})
            r.outcome = annotations.get(OUTCOME, "Healthy")
            r.polls_left = self.polls_to_finish
            strategy = next(iter(doc.get("spec", {}).get("strategy", {}) or {"canary": {}}))
            weights = {str(stable): 100, str(revision): 0} if stable else {str(revision): 100}
            self._set(
                r,
                name=name,
                phase="Progressing",
                message=f"rolling out revision {revision}",
                strategy=strategy,
                revision=revision,
                stableRevision=stable,
                canaryRevision=revision if stable else None,
                currentStepIndex=0,
                totalSteps=2,
                weights=weights,
                replicas={k: 1 for k in weights},
                analysis={},
                endpoint="http://127.0.0.1:8080",
                previewEndpoint=None,
                pause=None,
            )
            self._event(r, "RolloutUpdated", f"revision {revision} created")
            self.calls.append(("apply", name, {"source": source}))
            results.append({"name": name, "revision": revision, "action": action})
        return results

    def _advance(self, r: _Rollout) -> None:
        if r.status.get("phase") != "Progressing":
            return
        if r.polls_left > 0:
            r.polls_left -= 1
            return
        revision = r.status["revision"]
        if r.outcome == "Healthy":
            self._set(
                r,
                phase="Healthy",
                message="",
                stableRevision=revision,
                canaryRevision=None,
                currentStepIndex=None,
                weights={str(revision): 100},
                replicas={str(revision): 1},
            )
        else:
            self._set(r, phase=r.outcome, message=f"fake {r.outcome.lower()}: analysis failed")
        reason = "RolloutCompleted" if r.outcome == "Healthy" else f"Rollout{r.outcome}"
        self._event(r, reason, r.status["message"] or f"revision {revision} is stable")

    def list_rollouts(self) -> list[JSON]:
        return [self.status(name) for name in sorted(self.rollouts)]

    def status(self, name: str) -> JSON:
        r = self._get(name)
        self._advance(r)
        return dict(r.status)

    def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        r = self._get(name)
        return r.events[-limit:] if limit else []

    def history(self, name: str) -> list[JSON]:
        r = self._get(name)
        stable = r.status.get("stableRevision")
        current = r.status.get("revision")
        return [
            {
                "revision": i,
                "createdAt": rev["createdAt"],
                "command": (json.loads(rev["template"]) or {}).get("command", []),
                "stable": i == stable,
                "current": i == current,
            }
            for i, rev in enumerate(r.revisions, start=1)
        ]

    def spec(self, name: str) -> JSON:
        return self._get(name).spec

    def analysis(self, name: str) -> list[JSON]:
        self._get(name)
        return []

    async def promote(self, name: str, *, full: bool = False) -> JSON:
        r = self._get(name)
        self.calls.append(("promote", name, {"full": full}))
        if r.status.get("phase") not in ("Progressing", "Paused"):
            raise errors.StateError(f"{name} is {r.status.get('phase')}: nothing to promote")
        r.polls_left = 0
        return self._set(r, phase="Progressing", pause=None)

    async def abort(self, name: str) -> JSON:
        r = self._get(name)
        self.calls.append(("abort", name, {}))
        if r.status.get("phase") == "Healthy":
            raise errors.StateError(f"{name} is Healthy: nothing to abort")
        return self._set(r, phase="Aborted", message="aborted by user")

    async def retry(self, name: str) -> JSON:
        r = self._get(name)
        self.calls.append(("retry", name, {}))
        if r.status.get("phase") not in ("Aborted", "Degraded"):
            raise errors.StateError(f"{name} is {r.status.get('phase')}: nothing to retry")
        r.outcome, r.polls_left = "Healthy", self.polls_to_finish
        return self._set(r, phase="Progressing", message="retrying")

    async def pause(self, name: str) -> JSON:
        r = self._get(name)
        self.calls.append(("pause", name, {}))
        return self._set(r, phase="Paused", message="paused by user")

    async def resume(self, name: str) -> JSON:
        r = self._get(name)
        self.calls.append(("resume", name, {}))
        if r.status.get("phase") != "Paused":
            raise errors.StateError(f"{name} is not paused")
        return self._set(r, phase="Progressing", message="")

    async def undo(self, name: str, *, to_revision: int | None = None) -> JSON:
        r = self._get(name)
        self.calls.append(("undo", name, {"toRevision": to_revision}))
        if to_revision is not None and not 1 <= to_revision <= len(r.revisions):
            raise errors.NotFound(f"{name} has no revision {to_revision}")
        if to_revision is None and len(r.revisions) < 2:
            raise errors.StateError(f"{name} has no earlier revision to go back to")
        return self._set(r, phase="Progressing", message="undo")

    async def delete(self, name: str) -> None:
        self._get(name)
        self.calls.append(("delete", name, {}))
        del self.rollouts[name]

    def traffic(self, name: str) -> JSON:
        self._get(name)
        return {}

    def metrics_text(self) -> str:
        lines = ["# TYPE changeover_requests_total counter"]
        for name in sorted(self.rollouts):
            lines.append(f'changeover_requests_total{{rollout="{name}",revision="1"}} 0')
        return "\n".join(lines) + "\n"
