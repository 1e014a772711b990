"""Notifications on a rollout's phase changes: a JSON POST to a webhook URL, as a generic
body or as a Slack-compatible one (``{"text": ..., "blocks": [...]}``, what Slack's
incoming webhooks and Mattermost accept).

The controller calls ``notify(change, targets)`` after it persists a new phase; ``format_*``
are pure so the bodies are tested on their own. Delivery never raises and never blocks a
rollout for long: each POST has a timeout, transient failures (connection errors,
timeouts, 429 and 5xx) are retried with exponential backoff, and a failure in the end is
logged and reported as ``False``.

    notifications:
      - url: https://hooks.slack.com/services/T000/B000/XXXX
        format: slack                 # or generic (default)
        phases: [Degraded, Aborted, Healthy]   # default: every change
        timeout: 5s
        retries: 3                    # after the first attempt
        headers: {Authorization: Bearer abc}
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from changeover.analysis.providers import capped
from changeover.spec import models

log = logging.getLogger(__name__)

Format = Literal["generic", "slack"]
_EMOJI = {
    "Healthy": ":white_check_mark:",
    "Progressing": ":arrows_counterclockwise:",
    "Paused": ":double_vertical_bar:",
    "Degraded": ":x:",
    "Aborted": ":octagonal_sign:",
}
RETRY_AFTER_CAP = 30.0  # seconds: a server's Retry-After is honoured up to this


@dataclass(frozen=True, kw_only=True)
class PhaseChange:
    """What happened, in the words of ``status -o json``."""

    rollout: str
    phase: str
    previous: str | None = None
    message: str = ""
    namespace: str = "default"
    strategy: str | None = None
    revision: int | None = None  # the revision being rolled out (canary / preview)
    stable_revision: int | None = None
    weights: Mapping[int, int] = field(default_factory=dict)  # revision → percent
    analysis: Mapping[str, Any] = field(default_factory=dict)  # e.g. the latest verdict
    at: float = 0.0  # Unix seconds

    def timestamp(self) -> str:
        moment = datetime.datetime.fromtimestamp(self.at, tz=datetime.UTC)
        return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class Target:
    url: str
    format: Format = "generic"
    phases: frozenset[str] | None = None  # None: every phase change
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    headers: Mapping[str, str] = field(default_factory=dict)

    def wants(self, change: PhaseChange) -> bool:
        return self.phases is None or change.phase in self.phases


def format_generic(change: PhaseChange) -> dict[str, Any]:
    """The generic JSON body, in the field names of ``status -o json``.

    >>> format_generic(PhaseChange(rollout="web", phase="Aborted", previous="Progressing",
    ...                               at=0))["timestamp"]
    '1970-01-01T00:00:00Z'
    """
    return {
        "kind": "RolloutPhaseChanged",
        "rollout": change.rollout,
        "namespace": change.namespace,
        "phase": change.phase,
        "previousPhase": change.previous,
        "message": change.message,
        "strategy": change.strategy,
        "revision": change.revision,
        "stableRevision": change.stable_revision,
        "weights": {str(rev): pct for rev, pct in sorted(change.weights.items())},
        "analysis": dict(change.analysis),
        "timestamp": change.timestamp(),
    }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_slack(change: PhaseChange) -> dict[str, Any]:
    """A Slack message: ``text`` for notifications and old clients, ``blocks`` for the
    channel.

    >>> format_slack(PhaseChange(rollout="web", phase="Degraded", previous="Progressing",
    ...                          message="analysis failed: error-rate High"))["text"]
    ':x: rollout *web* is Degraded (was Progressing): analysis failed: error-rate High'
    """
    emoji = _EMOJI.get(change.phase, ":information_source:")
    was = f" (was {change.previous})" if change.previous else ""
    headline = f"{emoji} rollout *{_slack_escape(change.rollout)}* is {change.phase}{was}"
    text = f"{headline}: {_slack_escape(change.message)}" if change.message else headline
    fields = [("Phase", change.phase), ("Namespace", change.namespace)]
    if change.strategy:
        fields.append(("Strategy", change.strategy))
    if change.revision is not None:
        fields.append(("Revision", str(change.revision)))
    if change.stable_revision is not None:
        fields.append(("Stable revision", str(change.stable_revision)))
    if change.weights:
        split = ", ".join(f"r{rev} {pct}%" for rev, pct in sorted(change.weights.items()))
        fields.append(("Traffic", split))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"}
                for name, value in fields
            ],
        },
    ]
    if change.at:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"changeover · {change.timestamp()}"}],
            }
        )
    return {"text": text, "blocks": blocks}


def body(change: PhaseChange, fmt: Format) -> dict[str, Any]:
    return format_slack(change) if fmt == "slack" else format_generic(change)


def parse_targets(items: Sequence[Mapping[str, Any]]) -> list[Target]:
    """The ``notifications`` list of a spec → targets; ``ValueError`` names the field."""
    targets: list[Target] = []
    for i, item in enumerate(items):
        at = f"notifications[{i}]"
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"{at}.url: expected an http(s) URL, got {url!r}")
        fmt = item.get("format", "generic")
        if fmt not in ("generic", "slack"):
            raise ValueError(f"{at}.format: expected generic or slack, got {fmt!r}")
        phases = item.get("phases")
        try:
            timeout = models.parse_duration(item.get("timeout", 5))
            retries = int(item.get("retries", 3))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{at}: {exc}") from None
        if retries < 0 or timeout <= 0:
            raise ValueError(f"{at}: expected retries >= 0 and a positive timeout")
        targets.append(
            Target(
                url=url,
                format=fmt,
                phases=frozenset(str(p) for p in phases) if phases is not None else None,
                timeout=timeout,
                retries=retries,
                headers={str(k): str(v) for k, v in (item.get("headers") or {}).items()},
            )
        )
    return targets


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: capped.Answer) -> float | None:
    try:
        return min(float(response.headers["retry-after"]), RETRY_AFTER_CAP)
    except (KeyError, ValueError):
        return None


async def send(
    change: PhaseChange,
    target: Target,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> bool:
    """POST one notification; True when a 2xx answer came back. Never raises."""
    payload = body(change, target.format)
    delay = target.backoff
    why = ""
    async with httpx.AsyncClient(timeout=target.timeout, transport=transport) as client:
        for attempt in range(target.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                response = await capped.request(
                    client,
                    "POST",
                    target.url,
                    limit=capped.MAX_RESPONSE_BYTES,
                    json=payload,
                    headers=target.headers,
                )
            except httpx.TimeoutException:
                why = f"no answer within {target.timeout:g}s"
                continue
            except httpx.HTTPError as exc:
                why = str(exc) or type(exc).__name__
                continue
            except capped.TooLarge as exc:  # the body of a notification's answer is unused
                if 200 <= exc.status_code < 300:
                    return True
                why = f"HTTP {exc.status_code}, {exc}"
                continue
            if response.is_success:
                return True
            why = f"HTTP {response.status_code}"
            if not _retryable(response.status_code):
                break  # a 4xx will not change on retry: the URL or the body is wrong
            delay = max(delay, _retry_after(response) or 0.0)
    log.warning(
        "notification for rollout %s (%s) to %s failed: %s",
        change.rollout,
        change.phase,
        target.url,
        why,
    )
    return False


async def notify(
    change: PhaseChange,
    targets: Sequence[Target],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[bool]:
    """Send to every target that wants this phase, concurrently; one result per target
    (True for targets that did not want it)."""
    chosen = [t for t in targets if t.wants(change)]
    sent = await asyncio.gather(*(send(change, t, transport=transport) for t in chosen))
    results = iter(sent)
    return [next(results) if t.wants(change) else True for t in targets]
