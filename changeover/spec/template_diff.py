"""What changed between two revisions' templates, with values that look secret masked.

``changeover history`` shows it; the API sends only masked values, so a secret in a
template's env never leaves the server through it::

    >>> old = {"command": ["app", "--version", "v1"], "env": {"API_TOKEN": "a", "MODEL": "m1"}}
    >>> new = {"command": ["app", "--version", "v2"], "env": {"API_TOKEN": "b", "MODEL": "m1"}}
    >>> [c["text"] for c in changes(old, new)]
    ['command: app --version v1 → app --version v2', 'env.API_TOKEN: changed (value hidden)']

A name looks secret when it contains one of ``SECRET_WORDS`` (``DB_PASSWORD``, ``apiKey``,
``--auth-token``); a command-line argument after such a flag (``--token X``) or after its
``=`` (``--token=X``) is masked the same way.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
SECRET_WORDS = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "COOKIE",
    "SIGNATURE",
    "DSN",
)
_SECRET = re.compile("|".join(SECRET_WORDS), re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """Whether a value under ``name`` should be masked.

    >>> looks_secret("DB_PASSWORD"), looks_secret("apiKey"), looks_secret("MODEL")
    (True, True, False)
    """
    return bool(_SECRET.search(name))


def mask_command(argv: list[Any]) -> list[str]:
    """``["app", "--token", "s3", "--api-key=k"]`` → ``["app", "--token", "***",
    "--api-key=***"]``."""
    out: list[str] = []
    hide_next = False
    for raw in argv:
        arg = str(raw)
        if hide_next and not arg.startswith("-"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = False
        if arg.startswith("-"):
            flag, eq, _ = arg.partition("=")
            if looks_secret(flag):
                if eq:
                    arg = f"{flag}={MASK}"
                else:
                    hide_next = True
        out.append(arg)
    return out


def masked(template: dict[str, Any]) -> dict[str, Any]:
    """``template`` with secret-looking env values and command arguments masked."""
    out = dict(template)
    if isinstance(out.get("command"), list):
        out["command"] = mask_command(out["command"])
    env = out.get("env")
    if isinstance(env, dict):
        out["env"] = {k: MASK if looks_secret(str(k)) else v for k, v in env.items()}
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Each field that differs: ``{"field", "from", "to", "text"}``, values masked (a
    secret that changed says so without either value)."""
    before, after = _flatten(old), _flatten(new)
    shown_before, shown_after = _flatten(masked(old)), _flatten(masked(new))
    out = []
    for field in sorted(set(before) | set(after), key=lambda f: (f != "command", f)):
        if before.get(field) == after.get(field):
            continue
        was, now = shown_before.get(field), shown_after.get(field)
        if was == now:  # only a hidden value differs
            text = f"{field}: changed (value hidden)"
        elif field not in before:
            text = f"{field}: added {_shown(now)}"
        elif field not in after:
            text = f"{field}: removed (was {_shown(was)})"
        else:
            text = f"{field}: {_shown(was)} → {_shown(now)}"
        out.append({"field": field, "from": was, "to": now, "text": text})
    return out
