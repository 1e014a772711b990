"""``LocalService``: the user operations (``service.RolloutService``) on the local platform.

Called by the HTTP API. Validates input before anything is stored (a bad apply changes
nothing), turns templates into revision numbers, applies user commands through the pure
``engine.commands`` under the rollout's lock, and renders the status document
(``service``) from the status, the spec and what the platform observes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from typing import Any

from changeover import errors, server_registry, validation
from changeover.analysis import distributions
from changeover.engine import commands, rollback
from changeover.engine.status import RolloutStatus
from changeover.flags.flag_service import FlagService
from changeover.flags.flag_store import FlagStore
from changeover.local_controller.flag_runs import LocalFlagRuns
from changeover.local_controller.loop import Controller
from changeover.platforms.base import ReplicaState, RevisionState
from changeover.platforms.local import logs as local_logs
from changeover.rollout_service import JSON
from changeover.runners import analysis_runner
from changeover.spec import analysis as spec_analysis
from changeover.spec import flag as spec_flag
from changeover.spec import load, models, template_diff
from changeover.traffic import builtin
from changeover.traffic.builtin import metrics_text, sketch


def template_hash(template: models.ProcessTemplate) -> str:
    """A short, stable digest of a template: equal templates are the same revision."""
    canonical = json.dumps(template.to_json_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


FLAGS_DIR = "flags"  # <state dir>/flags/token: the OFREP evaluation token


class LocalService:
    def __init__(self, controller: Controller, *, metrics: builtin.Registry | None = None) -> None:
        self._c = controller
        self._store = controller.store
        self._metrics = metrics
        # Flags live in the same state directory; OFREP clients get a token of their own.
        evaluation_token, _ = server_registry.ensure_token(self._store.path.parent / FLAGS_DIR)
        self.flags = FlagService(
            FlagStore(self._store.path),
            now=controller.clock.now,
            evaluation_token=evaluation_token,
        )
        runs = LocalFlagRuns(controller)

        async def tick() -> None:
            self.flags.tick(runs)
            await runs.route(self.flags.routed())

        controller.tickers.append(tick)

    # --- apply ----------------------------------------------------------------------

    async def apply(self, documents: list[JSON], *, source: str) -> list[JSON]:
        loaded = [
            load.LoadedDocument(source=source, index=i, data=doc) for i, doc in enumerate(documents)
        ]
        specs = load.parse_documents(loaded)
        rollouts = specs.rollouts
        parsed, template_problems, broken = validation.parse_templates(specs.other)
        known = {**self._templates(), **{t.name: t for t, _ in parsed}}
        found = [
            *template_problems,
            *validation.validate_rollouts(rollouts, source=source),
            *validation.check_rollouts(
                rollouts, [source] * len(rollouts), known, strict=True, broken=broken
            ),
        ]
        problems = [p for p in found if p.severity != "warning"]
        problems += self._port_clashes(rollouts, source)
        problems += _flag_template_problems(specs.flags, specs.flag_sources, known)
        for rollout in rollouts:  # a pod template is refused before anything is stored
            try:
                rollout.spec.process_template(source=source)
            except errors.SpecError as exc:
                problems += exc.problems
        if problems:
            raise errors.SpecError(problems)
        results = []
        # Templates first: a rollout applied with them may start an analysis at once.
        for template, _ in parsed:
            action = self._c.analysis_store.put_template(
                template.name, template.to_json_dict(), now=self._c.clock.now()
            )
            results.append({"name": template.name, "kind": "AnalysisTemplate", "action": action})
        for rollout in rollouts:
            results.append(self._store_rollout(rollout))
        results += self.flags.apply(specs.flags)
        self._c.wake()
        return results

    def _templates(self) -> dict[str, spec_analysis.AnalysisTemplate]:
        out = {}
        for name, doc in self._c.analysis_store.templates().items():
            with contextlib.suppress(ValueError):
                out[name] = spec_analysis.AnalysisTemplate.model_validate(doc)
        return out

    def _port_clashes(
        self, rollouts: list[models.Rollout], source: str
    ) -> list[errors.SpecProblem]:
        """A port already served by another stored rollout would fail at bind time."""
        taken: dict[int, str] = {}
        for name in self._store.rollout_names():
            found = self._c.parsed(name)
            if found is None:
                continue
            other = found[1]
            for port in _ports(other):
                taken[port] = name
        problems = []
        for rollout in rollouts:
            for port in _ports(rollout):
                owner = taken.get(port)
                if owner is not None and owner != rollout.name:
                    problems.append(
                        errors.SpecProblem(
                            file=source,
                            path="spec.service.port",
                            message=f"port {port} is already served by rollout {owner!r}",
                        )
                    )
        return problems

    def _store_rollout(self, rollout: models.Rollout, *, current: int | None = None) -> JSON:
        spec = rollout.to_json_dict()
        process = rollout.spec.process_template()  # SpecError for a pod template
        template = process.to_json_dict()
        before = self._store.get_rollout(rollout.name)
        number, created = self._store.put_spec(
            rollout.name,
            spec,
            template=template,
            template_hash=template_hash(process),
            now=self._c.clock.now(),
            current=current,
        )
        if before is None:
            action = "created"
        elif before.spec == spec:
            action = "unchanged"
        else:
            action = "updated"
        return {"name": rollout.name, "revision": number, "action": action, "newRevision": created}

    # --- reads ----------------------------------------------------------------------

    def list_rollouts(self) -> list[JSON]:
        return [self.status(name) for name in sorted(self._store.rollout_names())]

    def status(self, name: str) -> JSON:
        found = self._c.parsed(name)
        if found is None:
            raise errors.NotFound(f"no rollout named {name!r}")
        stored, rollout = found
        status = RolloutStatus.model_validate(stored.status or {})
        observed = self._c.platform.observe(name)
        replicas = {
            str(rev): sum(1 for r in state.replicas if r.state is ReplicaState.READY)
            for rev, state in sorted(observed.items())
            if state.desired or state.replicas
        }
        strategy = rollout.spec.strategy
        steps = len(strategy.canary.steps) if strategy.canary is not None else None
        preview = strategy.blue_green.preview_port if strategy.blue_green is not None else None
        host = rollout.spec.service.host
        message = status.message
        error = self._c.last_error(name)
        sticky = status.traffic.sticky
        return {
            "name": name,
            "phase": str(status.phase),
            "message": message,
            "error": error or None,
            "strategy": strategy.name,
            "revision": stored.revision,
            "stableRevision": status.stable_revision,
            "canaryRevision": status.canary_revision,
            "currentStepIndex": status.current_step_index,
            "totalSteps": steps,
            "weights": dict(status.traffic.weights),
            # An A/B test's share of users, header routes and mirrors: traffic that
            # ``weights`` alone does not show.
            "sticky": {"revision": sticky.revision, "weight": sticky.weight} if sticky else None,
            "headerRoutes": {k: v.revision for k, v in status.traffic.header_routes.items()},
            "mirrors": {str(m.revision): m.percentage for m in status.traffic.mirrors.values()},
            # Per shadow revision whose answers are compared: counts, match rate, latency
            # delta p50/p99 (``shadow NAME`` and ``/shadow`` add the differences).
            "shadow": {rev: s.summary() for rev, s in self._shadow_stats(name).items()} or None,
            # Per revision, per flag the router evaluates: each variant's requests, errors
            # and latency (what ``variant:`` in analysis compares).
            "variants": self._variants(name) or None,
            "replicas": replicas,
            "revisionStates": {
                str(rev): _revision_state(state)
                for rev, state in sorted(observed.items())
                if state.desired or state.replicas
            },
            "desiredReplicas": rollout.spec.replicas,
            **self._analysis(name),
            "endpoint": f"http://{host}:{rollout.spec.service.port}",
            "previewEndpoint": f"http://{host}:{preview}" if preview else None,
            "pause": status.pause.model_dump(mode="json", by_alias=True) if status.pause else None,
            "abort": status.abort,
            "userPaused": status.user_paused,
            "updatedAt": stored.updated_at,
        }

    def _shadow_stats(self, name: str) -> dict[str, Any]:
        """The rollout's ``comparison.stats.ShadowStats`` by shadow revision (as text)."""
        found = self._metrics.rollouts.get(name) if self._metrics is not None else None
        if found is None:
            return {}
        return {str(rev): m.shadow for rev, m in sorted(found.revisions.items()) if m.shadow}

    def _variants(self, name: str) -> JSON:
        found = self._metrics.rollouts.get(name) if self._metrics is not None else None
        if found is None:
            return {}
        return {
            str(rev): {
                flag: {v: variant_summary(m) for v, m in sorted(per_flag.items())}
                for flag, per_flag in sorted(m.variants.items())
            }
            for rev, m in sorted(found.revisions.items())
            if m.variants
        }

    def shadow(self, name: str) -> JSON:
        """Per shadow revision: the summary and the recent differences, newest first,
        with both answers (bodies cut to a few KiB)."""
        self._get(name)
        return {
            rev: {**s.summary(), "differences": list(reversed(s.samples))}
            for rev, s in self._shadow_stats(name).items()
        }

    def _analysis(self, name: str) -> JSON:
        """``analysis``: per metric, the latest result among the runs of the newest revision
        that has runs; ``analysisRuns``: those runs, oldest first."""
        return analysis_runner.latest(self._c.analysis_store, name)

    def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        self._get(name)
        return self._store.events(name, limit=limit)

    def history(self, name: str) -> list[JSON]:
        stored = self._get(name)
        status = RolloutStatus.model_validate(stored.status or {})
        out = []
        previous: dict[str, Any] | None = None
        for rev in self._store.revisions(name):
            shown = template_diff.masked(rev.template)
            out.append(
                {
                    "revision": rev.number,
                    "createdAt": rev.created_at,
                    "command": shown.get("command", []),
                    # Secret-looking env values and arguments never leave the server.
                    "template": shown,
                    "changes": (
                        template_diff.changes(previous, rev.template)
                        if previous is not None
                        else []
                    ),
                    "stable": rev.number == status.stable_revision,
                    "current": rev.number == stored.revision,
                }
            )
            previous = rev.template
        return out

    def analysis(self, name: str) -> list[JSON]:
        self._get(name)
        return analysis_runner.detailed(self._c.analysis_store, name)

    def spec(self, name: str) -> JSON:
        return dict(self._get(name).spec)

    def logs(
        self, name: str, *, revision: int | None, tail: int, since: dict[str, int]
    ) -> list[JSON]:
        """Replica and hook output of ``name`` (see ``platforms.local.logs``)."""
        self._get(name)
        state_dir = getattr(self._c.platform, "state_dir", None)
        if state_dir is None:
            raise errors.StateError("this platform keeps no logs here")
        return local_logs.read(state_dir, name, revision=revision, tail=tail, since=since)

    def traffic(self, name: str) -> JSON:
        self._get(name)
        found = self._metrics.rollouts.get(name) if self._metrics is not None else None
        return found.snapshot() if found is not None else {}

    def metrics_text(self) -> str:
        return metrics_text.render(self._metrics) if self._metrics is not None else ""

    # --- commands -------------------------------------------------------------------

    async def promote(self, name: str, *, full: bool = False) -> JSON:
        return await self._command(name, lambda s: commands.promote(s, full=full))

    async def abort(self, name: str) -> JSON:
        return await self._command(name, lambda s: commands.abort(s, now=self._c.clock.now()))

    async def retry(self, name: str) -> JSON:
        return await self._command(name, commands.retry)

    async def pause(self, name: str) -> JSON:
        return await self._command(name, lambda s: commands.pause(s, now=self._c.clock.now()))

    async def resume(self, name: str) -> JSON:
        return await self._command(name, commands.resume)

    async def undo(self, name: str, *, to_revision: int | None = None) -> JSON:
        async with self._c.lock(name):
            stored = self._get(name)
            kept = {rev.number: rev for rev in self._store.revisions(name)}
            if to_revision is None:
                status = RolloutStatus.model_validate(stored.status or {})
                to_revision = rollback.undo_target(status, stored.revision, kept)
                if to_revision is None:
                    raise errors.StateError(f"rollout {name!r} has no earlier revision to undo to")
            if to_revision not in kept:
                have = ", ".join(str(n) for n in sorted(kept)) or "none"
                raise errors.NotFound(
                    f"rollout {name!r} has no revision {to_revision} (kept: {have})"
                )
            if to_revision == stored.revision:
                raise errors.StateError(f"revision {to_revision} is already the current one")
            spec: dict[str, Any] = json.loads(json.dumps(stored.spec))
            spec["spec"]["template"] = kept[to_revision].template
            rollout = models.Rollout.model_validate(spec)
            # Undo targets the earlier revision itself, not a copy under a new number: its
            # replicas may still be up (blue-green's scaleDownDelaySeconds, an aborted or
            # in-flight canary's stable), so going back reuses them and is instant.
            result = self._store_rollout(rollout, current=to_revision)
        # Plan now, as commands do, so the answer shows the undo rather than the old phase.
        with contextlib.suppress(errors.ChangeoverError):
            await self._c.reconcile(name)
        return {**self.status(name), "undoneTo": to_revision, "newRevision": result["revision"]}

    async def delete(self, name: str) -> None:
        async with self._c.lock(name):
            self._get(name)
            await self._c.platform.delete_rollout(name)
            await self._c.forget(name)
            self._store.delete_rollout(name)

    # --- helpers --------------------------------------------------------------------

    def _get(self, name: str) -> Any:
        stored = self._store.get_rollout(name)
        if stored is None:
            raise errors.NotFound(f"no rollout named {name!r}")
        return stored

    async def _command(self, name: str, change: Any) -> JSON:
        async with self._c.lock(name):
            stored = self._get(name)
            status = RolloutStatus.model_validate(stored.status or {})
            new = change(status)
            self._store.put_status(name, new.to_json_dict(), events=[], now=self._c.clock.now())
        # The engine turns the request into a phase change on its next plan; plan now so
        # the reply already shows it (a failure here is retried by the loop's next tick).
        with contextlib.suppress(errors.ChangeoverError):
            await self._c.reconcile(name)
        return self.status(name)


def _flag_template_problems(
    flags: list[spec_flag.Flag], sources: list[str], known: dict[str, Any]
) -> list[errors.SpecProblem]:
    """A flag rollout's analysis step naming a template that does not exist would turn the
    flag off at that step: refused at apply, as a rollout's is."""
    problems = []
    for flag, source in zip(flags, sources, strict=True):
        steps = flag.spec.rollout.steps if flag.spec.rollout is not None else []
        for i, step in enumerate(steps):
            for j, ref in enumerate(step.analysis.templates if step.analysis else []):
                if ref.template_name not in known:
                    have = ", ".join(sorted(known)) or "none"
                    problems.append(
                        errors.SpecProblem(
                            file=source,
                            path=f"spec.rollout.steps[{i}].analysis.templates[{j}].templateName",
                            message=f"no AnalysisTemplate named {ref.template_name!r} "
                            f"(known: {have}); apply it first or in the same apply",
                        )
                    )
    return problems


def _revision_state(state: RevisionState) -> JSON:
    """One revision as ``status`` shows it: counts, restarts, and why it is not ready."""
    crashed = [r for r in state.replicas if r.last_failure]
    latest = max(crashed, key=lambda r: r.last_failure_at or 0.0) if crashed else None
    waiting = [r.message for r in state.replicas if r.state is not ReplicaState.READY and r.message]
    return {
        "desired": state.desired,
        "ready": len(state.ready),
        "restarts": state.restarts,
        "lastFailure": latest.last_failure if latest is not None else None,
        "lastFailureAt": latest.last_failure_at if latest is not None else None,
        # The reason a replica is not Ready right now (a probe failing, a crash).
        "notReady": waiting[0] if waiting else None,
    }


def _ports(rollout: models.Rollout) -> list[int]:
    ports = [rollout.spec.service.port]
    blue_green = rollout.spec.strategy.blue_green
    if blue_green is not None and blue_green.preview_port is not None:
        ports.append(blue_green.preview_port)
    return ports


def variant_summary(m: Any) -> JSON:
    """One variant's ``traffic.builtin.metrics.VariantMetrics`` as ``status`` shows it:
    requests, 5xx (a cut stream is a 502), error rate, latency p50/p99 (1% sketch)."""
    requests, errors = sum(m.codes[1:]), m.codes[5]
    bins = dict(m.latency.sketch.bins) if m.latency.sketch is not None else {}

    def latency(q: float) -> float | None:
        value = distributions.quantile(bins, q, sketch.GAMMA) if bins else math.nan
        return None if math.isnan(value) else round(value, 6)

    return {
        "requests": requests,
        "errors": errors,
        "errorRate": round(errors / requests, 6) if requests else None,
        "latency": {"p50": latency(0.5), "p99": latency(0.99)},
    }
