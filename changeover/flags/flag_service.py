"""``FlagService``: the user operations on flags, and the compiled flags evaluation reads.

Called by the HTTP API (``/api/v1/flags/...`` and OFREP) beside ``RolloutService``. Flags
arrive here already parsed and checked (``spec.load``), so storing never half-succeeds.

The flag served is the stored spec with the status laid over it: ``off`` (abort, or a
failed flag rollout) serves the default to everyone, and a flag rollout's current weight
replaces its variant's weight in the split. ``snapshot`` compiles every flag once per
change and is what evaluations read (a dict lookup, then ``CompiledFlag.evaluate``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from changeover import errors
from changeover.flags import evaluate, flag_history, progress
from changeover.flags.flag_store import FlagStore, StoredFlag
from changeover.spec import analysis as spec_analysis
from changeover.spec import flag as spec_flag

JSON = dict[str, Any]


class Runs(Protocol):
    """Analysis runs as the platform provides them (the local controller's runner)."""

    def start(self, run_id: str, target: str, step: Any) -> None:
        """Start run ``run_id`` of the analysis step ``step`` on rollout ``target``'s
        traffic (a no-op if it exists); a run that cannot start ends in Error."""

    def observe(self, run_id: str) -> tuple[str, str] | None:
        """(phase, message) of the run, None while unknown."""

    def call_hook(self, call: progress.HookCall, *, flag: str, phase: str, revision: int) -> None:
        """Start calling a webhook as its type says (a no-op for an id in progress)."""

    def stop_hook(self, call_id: str) -> None:
        """Stop calling it and forget its state."""

    def observe_hook(self, call_id: str) -> tuple[str, str] | None:
        """(waiting | passed | failed, message), None for a call not known."""

    def post_events(
        self,
        hooks: Sequence[spec_analysis.Webhook],
        *,
        flag: str,
        phase: str,
        revision: int,
        events: Sequence[tuple[str, str]],
    ) -> None:
        """POST each event to the ``event`` webhooks among ``hooks`` (fire and forget)."""


class FlagService:
    """``evaluation_token`` is what OFREP clients present (never the API token)."""

    def __init__(
        self, store: FlagStore, *, now: Callable[[], float], evaluation_token: str
    ) -> None:
        self.store = store
        self.evaluation_token = evaluation_token
        self._now = now
        self._snapshot: tuple[int, dict[str, evaluate.CompiledFlag]] | None = None

    # --- apply and reads ------------------------------------------------------------

    def apply(self, flags: Sequence[spec_flag.Flag]) -> list[JSON]:
        """Store each flag (checked already); one ``{"kind", "name", "revision", "action"}``
        each. A changed spec starts its rollout (if any) from the first step."""
        self._check_keys(flags)
        results = []
        for flag in flags:
            number, action = self.store.put(flag.name, flag.to_json_dict(), now=self._now())
            results.append(
                {"kind": "Flag", "name": flag.name, "revision": number, "action": action}
            )
        return results

    def _check_keys(self, flags: Sequence[spec_flag.Flag]) -> None:
        """Two flags answering to one OFREP key would make evaluation ambiguous."""
        owner = {_key(s): s.name for s in self.store.all()}
        owner = {k: n for k, n in owner.items() if n not in {f.name for f in flags}}
        problems = []
        for flag in flags:
            other = owner.setdefault(flag.key, flag.name)
            if other != flag.name:
                problems.append(
                    errors.SpecProblem(
                        file="",
                        path=f"flag/{flag.name}: spec.key",
                        message=f"key {flag.key!r} is already the key of flag {other!r}",
                    )
                )
        if problems:
            raise errors.SpecError(problems)

    def list_flags(self) -> list[JSON]:
        return [self._status(stored) for stored in self.store.all()]

    def status(self, name: str) -> JSON:
        return self._status(self._get(name))

    def spec(self, name: str) -> JSON:
        return self._get(name).spec

    def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        self._get(name)
        return self.store.events(name, limit=limit)

    def history(self, name: str) -> list[JSON]:
        stored = self._get(name)
        kept = [(n, doc.get("spec", {}), at) for n, doc, at in self.store.revisions(name)]
        return flag_history.rows(kept, stored.revision)

    # --- commands -------------------------------------------------------------------

    def undo(self, name: str, *, to_revision: int | None = None) -> JSON:
        """Store an earlier revision's spec again, as the next revision (the one before
        the current by default); the status starts over."""
        stored = self._get(name)
        kept = {number: doc for number, doc, _ in self.store.revisions(name)}
        to_revision = flag_history.undo_target(name, kept, stored.revision, to_revision)
        number, _ = self.store.put(name, kept[to_revision], now=self._now(), reason="Undo")
        return {**self.status(name), "undoneTo": to_revision, "newRevision": number}

    def abort(self, name: str) -> JSON:
        """Turn the flag off now: everyone gets the default variant until a new apply."""
        stored = self._get(name)
        message = "turned off: everyone gets the default variant"
        status = {**stored.status, "off": True, "phase": "Aborted", "message": message}
        self.store.put_status(
            name, status, now=self._now(), events=[("Aborted", "turned off by abort")]
        )
        return self.status(name)

    def retry(self, name: str) -> JSON:
        """Turn an aborted flag back on, its rollout (if any) from the first step."""
        stored = self._get(name)
        fresh = progress.retry(stored.status, _spec(stored), self._now())
        self.store.put_status(name, fresh, now=self._now(), events=[("Retried", "turned on again")])
        return self.status(name)

    def promote(self, name: str, *, full: bool = False) -> JSON:
        """Past the current pause or analysis step; ``full``: to the end now."""
        return self._command(name, lambda s: progress.promote(s, full=full), "Promoted")

    def pause(self, name: str) -> JSON:
        return self._command(name, progress.pause, "Paused")

    def resume(self, name: str) -> JSON:
        return self._command(name, progress.resume, "Resumed")

    def _command(self, name: str, change: Callable[[JSON], JSON], reason: str) -> JSON:
        stored = self._get(name)
        rollout = stored.status.get("rollout")
        if _spec(stored).rollout is None or not rollout or rollout.get("done"):
            raise errors.StateError(f"flag {name!r} has no rollout in progress")
        if stored.status.get("off"):
            raise errors.StateError(f"flag {name!r} is turned off: `retry` turns it on again")
        self.store.put_status(
            name,
            change(stored.status),
            now=self._now(),
            events=[(reason, f"{reason.lower()} by the user")],
        )
        return self.status(name)

    # --- progressive rollouts -------------------------------------------------------

    def tick(self, runs: Runs) -> None:
        """Advance every flag rollout one tick (the local controller's loop calls this)."""
        for stored in self.store.all():
            spec = _spec(stored)
            if spec.rollout is None:
                continue
            run = (stored.status.get("rollout") or {}).get("run")
            seen = runs.observe(run) if run else None
            outcome = progress.advance(
                stored.name,
                stored.revision,
                spec,
                stored.status,
                now=self._now(),
                run_phase=seen[0] if seen else None,
                run_message=seen[1] if seen else "",
                hooks=runs.observe_hook,
            )
            phase = str(outcome.status.get("phase", ""))
            for call_id in outcome.stops:
                runs.stop_hook(call_id)
            for call in outcome.calls:
                runs.call_hook(call, flag=stored.name, phase=phase, revision=stored.revision)
            if outcome.events and spec.rollout.webhooks:
                runs.post_events(
                    spec.rollout.webhooks,
                    flag=stored.name,
                    phase=phase,
                    revision=stored.revision,
                    events=outcome.events,
                )
            if outcome.start is not None:
                assert spec.rollout.target is not None  # the spec requires it with analysis
                step = spec.rollout.steps[outcome.start.step_index].analysis
                runs.start(outcome.start.run_id, spec.rollout.target, step)
            if outcome.status != stored.status or outcome.events:
                self.store.put_status(
                    stored.name, outcome.status, now=self._now(), events=outcome.events
                )

    def delete(self, name: str) -> None:
        if not self.store.delete(name):
            raise errors.NotFound(f"no flag named {name!r}")

    def routed(self) -> dict[tuple[str, str], JSON]:
        """(rollout, flag name) → the served spec, for every flag a router evaluates."""
        out = {}
        for stored in self.store.all():
            served = served_spec(stored)
            if served.router is not None:
                out[served.router.rollout, stored.name] = served.to_json_dict()
        return out

    # --- evaluation -----------------------------------------------------------------

    def snapshot(self) -> dict[str, evaluate.CompiledFlag]:
        """Every flag compiled as served now; recompiled only after a change."""
        version = self.store.version()
        if self._snapshot is None or self._snapshot[0] != version:
            compiled = {_key(s): evaluate.compile_flag(served_spec(s)) for s in self.store.all()}
            self._snapshot = (version, compiled)
        return self._snapshot[1]

    # --- helpers --------------------------------------------------------------------

    def _get(self, name: str) -> StoredFlag:
        stored = self.store.get(name)
        if stored is None:
            raise errors.NotFound(f"no flag named {name!r}")
        return stored

    def _status(self, stored: StoredFlag) -> JSON:
        return status_document(
            stored.name, stored.revision, stored.spec, stored.status, stored.updated_at
        )


def status_document(name: str, revision: int, doc: JSON, status: JSON, updated_at: Any) -> JSON:
    """``status -o json`` of a flag: ``doc`` is its stored document (``spec:`` inside),
    ``status`` what was walked or commanded (the Kubernetes backend renders Flag resources
    with this too)."""
    served = spec_flag.FlagSpec.model_validate(progress.served(doc.get("spec", {}), status))
    phase = status.get("phase") or ("Healthy" if served.enabled else "Disabled")
    key = doc.get("spec", {}).get("key")
    return {
        "kind": "Flag",
        "name": name,
        "key": key if isinstance(key, str) and key else name,
        "revision": revision,
        "phase": phase,
        "message": status.get("message", ""),
        "enabled": served.enabled,
        "type": served.type,
        "defaultVariant": served.default_variant,
        "variants": sorted(served.variants),
        "split": {e.variant: e.weight for e in served.split},
        "rules": len(served.rules),
        "rollout": status.get("rollout"),
        "updatedAt": updated_at,
    }


def served_spec(stored: StoredFlag) -> spec_flag.FlagSpec:
    """The stored spec with the status laid over it (the off switch, a rollout's weight)."""
    spec = progress.served(stored.spec.get("spec", {}), stored.status)
    return spec_flag.FlagSpec.model_validate(spec)


def _spec(stored: StoredFlag) -> spec_flag.FlagSpec:
    return spec_flag.FlagSpec.model_validate(stored.spec.get("spec", {}))


def _key(stored: StoredFlag) -> str:
    """The OFREP key of a stored flag: ``spec.key``, else its name."""
    key = stored.spec.get("spec", {}).get("key")
    return key if isinstance(key, str) and key else stored.name
