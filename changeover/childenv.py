"""The environment a process started by changeover (a replica, a hook, a ``job`` metric)
begins with, before the spec's own ``env`` and changeover's variables are added.

Not ``serve``'s whole environment: that holds ``CHANGEOVER_TOKEN``, ``CHANGEOVER_CONFIG``
and whatever else the operator exported (cloud credentials, proxies with passwords), and
every service would see it. A child gets only what running a program needs::

    PATH HOME USER LOGNAME SHELL LANG LANGUAGE TZ TMPDIR TERM
    LD_LIBRARY_PATH VIRTUAL_ENV SSL_CERT_FILE SSL_CERT_DIR
    LC_*  PYTHON*

Anything else a service needs goes in its spec's ``env``, where ``history`` and ``lint``
can see it. Variables named in ``CHANGEOVER_PASS_ENV`` (comma-separated, in ``serve``'s own
environment) are passed on too: a deliberate choice, such as a proxy every service uses.

    >>> sorted(base({"PATH": "/bin", "LC_ALL": "C", "CHANGEOVER_TOKEN": "t", "AWS_SECRET": "s"}))
    ['LC_ALL', 'PATH']
    >>> sorted(base({"PATH": "/bin", "HTTP_PROXY": "p", "CHANGEOVER_PASS_ENV": "HTTP_PROXY"}))
    ['HTTP_PROXY', 'PATH']
"""

from __future__ import annotations

import os
from collections.abc import Mapping

NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "LD_LIBRARY_PATH",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
PREFIXES = ("LC_", "PYTHON")
PASS_VAR = "CHANGEOVER_PASS_ENV"


def passed(name: str) -> bool:
    """Whether ``name`` is in the base set."""
    return name in NAMES or name.startswith(PREFIXES)


def base(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The base set's variables, and those named in ``CHANGEOVER_PASS_ENV``, from
    ``environ`` (``os.environ`` by default)."""
    source = os.environ if environ is None else environ
    extra = {name.strip() for name in source.get(PASS_VAR, "").split(",")} - {""}
    return {name: value for name, value in source.items() if passed(name) or name in extra}
