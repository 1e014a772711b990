"""Progressive flag rollouts on Kubernetes: the operator walks each Flag's ``spec.rollout``.

    walker = FlagRollouts(client, namespace="shop", rollouts=..., platform=..., ...)
    again = await walker.sync("shop", "checkout")   # one look; seconds until the next

The walk is ``flags.progress.advance``, the same pure state machine the local platform
runs: its status (step, weight, run, phase, ``off``) is the Flag's status subresource, with
``observedGeneration`` and conditions (Progressing, Paused, Completed) beside it. A changed
spec (a new generation) starts the rollout from its first step, as an apply does locally.
An analysis step is an ordinary analysis run of the ``target`` Rollout, started on the
operator's runner (``operator.operator_analysis``: the same providers as a Rollout's
steps); a failed run turns the flag off (phase Aborted) with a Warning event. Events name
the Flag. Only the leader walks; every replica's OFREP endpoint serves the walked weight
(``operator.flag_endpoint`` lays the status over the spec with ``progress.served``).

Every look, at any Flag, walked or not, also keeps the spec of the generation it sees in
``status.history`` (``flags.flag_history``: the last ten, bounded in bytes, a
``HistoryTrimmed`` Warning event when the bound drops one), which ``history`` lists and
``undo`` writes back (``operator.flag_commands``).

Every status write carries the resourceVersion it read: a user's ``promote``/``abort``
written meanwhile makes it fail with 409, and the look starts again from a fresh read, so
no command is lost and nothing is written twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pydantic

from changeover import errors
from changeover.analysis.run import AnalysisRun
from changeover.engine import actions
from changeover.flags import flag_history, progress
from changeover.kube import client as kube
from changeover.operator import documents
from changeover.operator.operator_analysis import OperatorAnalysis
from changeover.platforms.kubernetes import informer
from changeover.platforms.kubernetes.events import EventRecorder
from changeover.platforms.kubernetes.replicasets import KubePlatform
from changeover.spec import flag as spec_flag

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Key = tuple[str, str]
QUEUE_PREFIX = "flag"  # work-queue keys are ("flag", "namespace/name")
RESYNC = 30.0  # a look this often even when nothing is due (under the watches)
RUN_LOOK = 5.0  # while a run is in flight (the runner also wakes us when it ends)
ATTEMPTS = 10
# Status fields beside the walk's: the walker's own, and the event a user's command asks
# for (``operator.flag_commands`` writes it; recorded here, by the operator's identity).
REQUESTED = "requestedEvent"
HISTORY = "history"  # the kept specs (``flags.flag_history``), for history and undo
OURS = ("observedGeneration", "conditions", REQUESTED, HISTORY)
WARNED = ("Aborted", "HistoryTrimmed")


class FlagRollouts:
    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str | None,
        rollouts: informer.Informer,
        platform: KubePlatform,
        analysis: OperatorAnalysis,
        recorder: EventRecorder,
        clock: Callable[[], float],
        enqueue: Callable[[Key], None],
    ) -> None:
        self.client = client
        self.rollouts = rollouts
        self.platform = platform
        self.analysis = analysis
        self.recorder = recorder
        self.clock = clock
        self._enqueue = enqueue
        self.informer = informer.Informer(
            client, kube.FLAGS, namespace=namespace, on_change=self._changed
        )
        self._invalid: dict[Key, str] = {}

    def _changed(self, obj: JSON) -> None:
        # Every Flag: a walk to take, or a new generation's spec to keep in the history.
        self._enqueue(queue_key(*informer.key_of(obj)))

    def wake_running(self) -> None:
        """A measurement finished: look at the flags waiting on a run."""
        for obj in self.informer.items():
            if ((obj.get("status") or {}).get("rollout") or {}).get("run"):
                self._enqueue(queue_key(*informer.key_of(obj)))

    async def sync(self, namespace: str, name: str) -> float | None:
        """One look at Flag ``namespace/name``; seconds until the clock alone changes it."""
        obj = self.informer.get(namespace, name)
        for _ in range(ATTEMPTS):
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                self._invalid.pop((namespace, name), None)
                return None
            try:
                return await self._look(obj)
            except kube.Conflict:
                # A user's command (or the watch lags): plan again from what is stored.
                obj = await self.client.get_or_none(kube.FLAGS, name, namespace=namespace)
                if obj is not None:
                    obj.setdefault("apiVersion", kube.FLAGS.api_version)
                    obj.setdefault("kind", "Flag")
                    self.informer.remember(obj)
                await asyncio.sleep(0.05)
        raise errors.TemporaryBackendError(f"flag {namespace}/{name} kept changing")

    async def _look(self, obj: JSON) -> float | None:
        meta = obj["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        try:
            flag = parse_flag(obj)
        except pydantic.ValidationError as exc:
            message = f"invalid spec: {exc.errors()[0]['msg']}"
            if self._invalid.get(key) != message:
                self._invalid[key] = message
                await self.recorder.record(obj, "InvalidSpec", message, warning=True)
            return None
        self._invalid.pop(key, None)
        spec = flag.spec
        raw: JSON = obj.get("status") or {}
        generation = int(meta.get("generation") or 0)
        now = self.clock()
        history, trimmed = flag_history.record(
            flag_history.parse(raw.get(HISTORY)), generation, obj.get("spec") or {}, now
        )
        status = {k: v for k, v in raw.items() if k not in OURS}
        if raw.get("observedGeneration") != generation:
            status = {}  # a new spec: its rollout starts from the first step, an abort ends
        if spec.rollout is None:
            plain: JSON = {**status, "observedGeneration": generation, HISTORY: history}
            if status and "conditions" in raw:
                plain["conditions"] = raw["conditions"]
            if plain != raw:
                await self._write(obj, plain)
            for reason, message in [*_requested(raw), *_trimmed(trimmed)]:
                await self.recorder.record(obj, reason, message, warning=reason in WARNED)
            return None
        run = (status.get("rollout") or {}).get("run")
        seen = self.analysis.runner.observe(run) if run else None
        if run and seen is None and not status.get("off"):
            # Started by a replica that lost the lease: start it here (a no-op if known).
            step = int(status["rollout"].get("stepIndex", 0))
            await self._start(obj, spec, progress.StartRun(run, step))
        outcome = progress.advance(
            _run_prefix(obj),
            generation,
            spec,
            status,
            now=now,
            run_phase=seen.phase if seen else None,
            run_message=seen.message if seen else "",
            hooks=self._hook_state,
        )
        if outcome.start is not None:
            await self._start(obj, spec, outcome.start)
        self._call_hooks(obj, spec, outcome, generation)
        body: JSON = {**outcome.status, "observedGeneration": generation, HISTORY: history}
        body["conditions"] = progress.conditions(outcome.status, raw.get("conditions") or [], now)
        if body != raw:
            await self._write(obj, body)
        for reason, message in [*_requested(raw), *_trimmed(trimmed), *outcome.events]:
            await self.recorder.record(obj, reason, message, warning=reason in WARNED)
        return _next_look(spec, outcome.status, now)

    def _hook_state(self, call_id: str) -> tuple[str, str] | None:
        seen = self.analysis.webhooks.observe(call_id)
        return (seen.state, seen.message) if seen is not None else None

    def _call_hooks(
        self, obj: JSON, spec: spec_flag.FlagSpec, outcome: progress.Outcome, generation: int
    ) -> None:
        """The walk's webhooks (``spec.rollout.webhooks``), on the operator's runner."""
        assert spec.rollout is not None
        name, namespace = str(obj["metadata"]["name"]), str(obj["metadata"]["namespace"])
        phase = str(outcome.status.get("phase", ""))
        for call_id in outcome.stops:
            self.analysis.webhooks.stop(call_id)
        for call in outcome.calls:
            action = actions.CallWebhook(
                call_id=call.call_id, webhook=call.webhook, phase=phase, revision=generation
            )
            self.analysis.webhooks.call(action, rollout=name, namespace=namespace)
        if outcome.events and spec.rollout.webhooks:
            said = [{"reason": r, "message": m, "revision": generation} for r, m in outcome.events]
            self.analysis.webhooks.post_events(
                spec.rollout.webhooks, name=name, namespace=namespace, phase=phase, events=said
            )

    async def _start(self, obj: JSON, spec: spec_flag.FlagSpec, start: progress.StartRun) -> None:
        """Run ``start`` as a step run of the target Rollout, judged as its own steps are."""
        assert spec.rollout is not None and spec.rollout.target is not None
        namespace, target = str(obj["metadata"]["namespace"]), spec.rollout.target
        step = spec.rollout.steps[start.step_index].analysis
        assert step is not None
        found = self.rollouts.get(namespace, target)
        try:
            rollout = documents.parse_rollout(found) if found is not None else None
        except (pydantic.ValidationError, errors.SpecError):
            rollout = None
        if found is None or rollout is None:
            why = "does not exist" if found is None else "is invalid"
            self._refuse(start.run_id, target, namespace, f"the target rollout {target!r} {why}")
            return
        raw = found.get("status") or {}
        revision = int(raw.get("stableRevision") or raw.get("lastRevision") or 1)
        action = actions.StartAnalysis(
            run_id=start.run_id,
            kind="step",
            analysis=step,
            revision=revision,
            stable_revision=revision,
        )
        hashes = {rev: c.pod_hash for rev, c in self.platform.observe(found).items()}
        await self.analysis.prepare(action, rollout)  # the Secrets its arguments name
        self.analysis.execute(action, rollout, hashes)

    def _refuse(self, run_id: str, target: str, namespace: str, why: str) -> None:
        """A run that cannot start is stored as an Error, so its verdict is read back."""
        refused = AnalysisRun.refused(run_id, target, why, now=self.clock(), namespace=namespace)
        self.analysis.store.put_run(refused.to_json(), completed=True)

    async def _write(self, obj: JSON, body: JSON) -> None:
        self.informer.remember(await self.client.replace_status(kube.FLAGS, obj, body))


def queue_key(namespace: str, name: str) -> Key:
    return (QUEUE_PREFIX, f"{namespace}/{name}")


def parse_flag(obj: JSON) -> spec_flag.Flag:
    """The Flag resource as the spec models read it (ValidationError if it is invalid)."""
    meta = obj.get("metadata") or {}
    return spec_flag.Flag.model_validate(
        {
            "apiVersion": obj.get("apiVersion"),
            "kind": "Flag",
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace") or "default"},
            "spec": obj.get("spec"),
        }
    )


def _requested(raw: JSON) -> list[tuple[str, str]]:
    asked = raw.get(REQUESTED)
    if isinstance(asked, list) and len(asked) == 2 and all(isinstance(a, str) for a in asked):
        return [(asked[0][:64], asked[1][:500])]
    return []


def _trimmed(message: str) -> list[tuple[str, str]]:
    return [("HistoryTrimmed", message)] if message else []


def _run_prefix(obj: JSON) -> str:
    """Run ids are unique per Flag object: a Flag deleted and created again (generation 1
    again) must not read the verdict of its predecessor's run."""
    meta = obj["metadata"]
    return f"{meta['namespace']}.{meta['name']}.{str(meta.get('uid', ''))[:8]}"


def _next_look(spec: spec_flag.FlagSpec, status: JSON, now: float) -> float | None:
    r = status.get("rollout") or {}
    if status.get("off") or r.get("done") or r.get("userPaused"):
        return None
    if r.get("run") or (spec.rollout is not None and spec.rollout.webhooks):
        return RUN_LOOK  # a run, or webhook gates and in-flight hooks, to read again
    steps = spec.rollout.steps if spec.rollout is not None else []
    i = int(r.get("stepIndex", 0))
    pause = steps[i].pause if i < len(steps) else None
    if pause is not None and pause.duration is not None:
        due = float(r.get("stepStartedAt", now)) + pause.duration - now
        return max(0.05, min(due + 0.05, RESYNC))
    return RESYNC
