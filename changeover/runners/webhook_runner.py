"""Calls Flagger-style webhooks for the controller (``spec.analysis.Webhook`` says what each
type gates). The engine asks (``CallWebhook`` / ``StopWebhook``, through
``local_controller.local_executor``) and reads each call's state (``observe``) in every plan; the
``event`` webhooks are called by the controller for every event it stores.

Every call is an HTTP POST of::

    {"name": "web", "namespace": "default", "phase": "Progressing", "revision": 3,
     "type": "confirm-promotion", "metadata": {...the webhook's metadata...}}

and passes when the answer is 2xx within ``timeoutSeconds``. How a type is called:

=========================== ========================================================
confirm-rollout, confirm-*   every ``interval`` until one call passes → passed
pre-rollout, post-rollout    once, plus up to ``retries`` retries → passed or failed
                             (so is a ``rollout`` webhook in a check: ``once``)
rollout                      every ``interval`` until stopped; more than
                             ``failureLimit`` failed calls → failed
rollback                     every ``interval``; the first 2xx → passed (= roll back)
event                        once per event, fire and forget
=========================== ========================================================

Phase-change notifications (``spec.notifications``, formatted and sent by
``analysis.notify``) go out from here too: ``phase_changed``, fire and forget.

State lives in memory: after a restart the engine finds no state for a gate it had asked
about and asks again, which is harmless (gates are polls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from changeover import aio
from changeover.analysis import notify
from changeover.analysis.providers import capped
from changeover.engine import actions, context
from changeover.engine.status import RolloutStatus
from changeover.spec import analysis as spec_analysis
from changeover.spec import models

log = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 1.0
_EVENT_CONCURRENCY = 4
JSON = dict[str, Any]


@dataclass
class _Call:
    state: context.WebhookStateName = "waiting"
    message: str = ""
    calls: int = 0
    failures: int = 0


class WebhookRunner:
    def __init__(
        self,
        *,
        wake: Callable[[], None] = lambda: None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._wake = wake
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False)
        self._calls: dict[str, _Call] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._events = asyncio.Semaphore(_EVENT_CONCURRENCY)
        self._background: set[asyncio.Task[None]] = set()

    # --- what the executor and the loop call ------------------------------------------

    def call(self, action: actions.CallWebhook, *, rollout: str, namespace: str) -> None:
        """Start calling ``action.webhook`` as its type says (no-op if already going)."""
        if action.call_id in self._calls:
            return
        payload = {
            "name": rollout,
            "namespace": namespace,
            "phase": action.phase,
            "revision": action.revision,
            "type": action.webhook.type,
            "metadata": dict(action.webhook.metadata),
        }
        self._calls[action.call_id] = _Call()
        task = asyncio.create_task(
            self._run(action.call_id, action.webhook, payload, once=action.once),
            name=f"webhook {action.call_id}",
        )
        self._tasks[action.call_id] = task
        task.add_done_callback(self._forget_task(action.call_id))

    def _forget_task(self, call_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._tasks.pop(call_id, None)

        return done

    def stop(self, call_id: str) -> None:
        task = self._tasks.pop(call_id, None)
        if task is not None:
            task.cancel()
        self._calls.pop(call_id, None)

    def observe(self, call_id: str) -> context.WebhookResult | None:
        call = self._calls.get(call_id)
        if call is None:
            return None
        return context.WebhookResult(call_id=call_id, state=call.state, message=call.message)

    def events(
        self, rollout: models.Rollout, phase: str, events: Sequence[Mapping[str, Any]]
    ) -> None:
        """POST every event to the rollout's ``event`` webhooks (fire and forget)."""
        self.post_events(
            rollout.spec.webhooks,
            name=rollout.name,
            namespace=rollout.metadata.namespace,
            phase=phase,
            events=events,
        )

    def post_events(
        self,
        webhooks: Sequence[spec_analysis.Webhook],
        *,
        name: str,
        namespace: str,
        phase: str,
        events: Sequence[Mapping[str, Any]],
    ) -> None:
        """POST every event (``reason``, ``message``, ``revision``) to the ``event`` hooks
        among ``webhooks`` (a rollout's or a flag rollout's), fire and forget."""
        hooks = [h for h in webhooks if h.type == "event"]
        for hook in hooks:
            for event in events:
                payload = {
                    "name": name,
                    "namespace": namespace,
                    "phase": phase,
                    "revision": event.get("revision"),
                    "type": "event",
                    "metadata": {
                        **hook.metadata,
                        "eventReason": str(event.get("reason", "")),
                        "eventMessage": str(event.get("message", "")),
                    },
                }
                task = asyncio.create_task(self._event(hook, payload))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def phase_changed(
        self,
        rollout: models.Rollout,
        *,
        previous: str,
        status: RolloutStatus,
        analysis: Mapping[str, Any],
        now: float,
    ) -> None:
        """Notify ``spec.notifications`` that the phase moved from ``previous``."""
        if not rollout.spec.notifications:
            return
        try:
            targets = notify.parse_targets(rollout.spec.notifications)
        except ValueError as exc:  # lint reports it; a stored spec may predate the check
            log.warning("rollout %s: notifications: %s", rollout.name, exc)
            return
        change = notify.PhaseChange(
            rollout=rollout.name,
            namespace=rollout.metadata.namespace,
            phase=str(status.phase),
            previous=previous,
            message=status.message,
            strategy=status.strategy or None,
            revision=status.target_revision,
            stable_revision=status.stable_revision,
            weights={int(rev): pct for rev, pct in status.traffic.weights.items()},
            analysis=analysis,
            at=now,
        )
        task = asyncio.create_task(self._notify(change, targets))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        await aio.cancel_and_wait_all([*self._tasks.values(), *self._background])
        await self._client.aclose()

    # --- calling ------------------------------------------------------------------------

    async def post(self, hook: spec_analysis.Webhook, payload: JSON) -> tuple[bool, str]:
        """One call: (passed, what happened)."""
        timeout = hook.timeout_s
        try:
            response = await capped.request(
                self._client,
                "POST",
                hook.url,
                limit=capped.MAX_RESPONSE_BYTES,
                json=payload,
                timeout=timeout,
            )
        except httpx.TimeoutException:
            return False, f"no answer within {timeout:g}s"
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except capped.TooLarge as exc:
            return False, str(exc)
        text = response.text[:200].strip()
        ok = response.is_success
        return ok, f"HTTP {response.status_code}" + (f": {text}" if text and not ok else "")

    async def _run(
        self, call_id: str, hook: spec_analysis.Webhook, payload: JSON, *, once: bool = False
    ) -> None:
        call = self._calls[call_id]
        kind = hook.type
        try:
            if once or kind in ("pre-rollout", "post-rollout"):
                await self._with_retries(call, hook, payload)
            else:
                await self._poll(call, hook, payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let a webhook crash the controller
            log.exception("webhook %s failed", call_id)
            call.state, call.message = "failed", f"internal error: {exc!r}"
        if kind == "post-rollout":
            if call.state == "failed":
                log.warning("post-rollout webhook %s failed: %s", hook.name, call.message)
            self._calls.pop(call_id, None)  # nobody observes it
            return
        self._wake()

    async def _with_retries(self, call: _Call, hook: spec_analysis.Webhook, payload: JSON) -> None:
        for attempt in range(hook.retries + 1):
            if attempt:
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
            ok, message = await self.post(hook, payload)
            call.calls += 1
            if ok:
                call.state, call.message = "passed", message
                return
            call.failures += 1
            call.message = message
        tries = f" after {call.calls} calls" if call.calls > 1 else ""
        call.state, call.message = "failed", f"{call.message}{tries}"

    async def _poll(self, call: _Call, hook: spec_analysis.Webhook, payload: JSON) -> None:
        """confirm-*, rollback: until the first 2xx. rollout: until failures pass the limit."""
        periodic = hook.type == "rollout"
        while True:
            ok, message = await self.post(hook, payload)
            call.calls += 1
            if not ok:
                call.failures += 1
            if periodic:
                call.message = f"{call.calls} calls, {call.failures} failed (last: {message})"
                if call.failures > hook.failure_limit:
                    call.state = "failed"
                    call.message = (
                        f"{call.failures} failed calls > failureLimit {hook.failure_limit} "
                        f"(last: {message})"
                    )
                    return
            elif ok:
                call.state, call.message = "passed", message
                return
            else:
                call.message = f"not yet ({message})"
                self._wake()
            await asyncio.sleep(hook.interval)

    @staticmethod
    async def _notify(change: notify.PhaseChange, targets: list[notify.Target]) -> None:
        await notify.notify(change, targets)  # logs its own failures, never raises

    async def _event(self, hook: spec_analysis.Webhook, payload: JSON) -> None:
        async with self._events:
            ok, message = await self.post(hook, payload)
        if not ok:
            log.warning("event webhook %s failed: %s", hook.name, message)
