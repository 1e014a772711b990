"""Which build of the proxy's hot path runs: mypyc-compiled or plain Python.

The modules in ``MODULES`` (every module a proxied request passes through) are compiled
with mypyc by ``make`` (``tools/build_fast.py``) into C extensions beside their sources,
as one group whose shared library is ``fast__mypyc``. The code is the same typed Python
either way; compiled, native classes and direct calls cut the Python work per request by
about a third (``python -m bench.micro``; side by side: ``bench.compare``, bench/RESULTS.md
"## Compare").

``select()`` runs when the package is imported, before any of those modules: a build is
used only when it was made from exactly the sources beside it (a digest of them is stored
with the build), so an edited module never runs stale machine code; otherwise, or with
``CHANGEOVER_PURE_PYTHON=1`` (profilers that read Python frames, debugging), a finder
serves the ``.py`` files. The group is all or nothing because compiled modules call each
other's native functions directly, bypassing Python's module objects.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = "changeover.traffic.builtin"
MODULES = (
    "batch",
    "exchange",
    "metrics",
    "mirror",
    "pool",
    "proxy",
    "sketch",
    "state",
    "table",
    "token_streams",
    "tunnel",
    "upstream",
    "websocket_frames",
    "wire",
)
GROUP = f"{PACKAGE}.fast"  # the shared library is ``fast__mypyc`` in this directory
HERE = Path(__file__).parent
DIGEST_FILE = "fast__mypyc.sources"  # written by tools/build_fast.py next to the build
PURE_ENV = "CHANGEOVER_PURE_PYTHON"

log = logging.getLogger(__name__)

# What select() decided: "compiled", "pure" (no build, or asked for), "stale" (a build
# from other sources: plain Python runs and a warning says to rebuild).
state = "pure"


def sources_digest(directory: Path = HERE, modules: Sequence[str] = MODULES) -> str:
    """sha256 over the group's sources, in ``MODULES`` order (the build stores it)."""
    h = hashlib.sha256()
    for name in modules:
        h.update(name.encode() + b"\0" + (directory / f"{name}.py").read_bytes() + b"\0")
    return h.hexdigest()


def decide(directory: Path, environ: Mapping[str, str]) -> str:
    """Which build to run from ``directory``: "compiled", "pure" or "stale"."""
    if environ.get(PURE_ENV, "") not in ("", "0"):
        return "pure"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if not (directory / f"fast__mypyc{suffix}").exists():
        return "pure"
    stamp = directory / DIGEST_FILE
    try:
        built_from = stamp.read_text().strip()
    except OSError:
        return "stale"
    return "compiled" if built_from == sources_digest(directory) else "stale"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Serves the group's ``.py`` files even though extension modules sit beside them."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, HERE / f"{name}.py")


def select() -> str:
    """Decide once per process (called by the package's ``__init__``)."""
    global state
    if any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        return state
    state = decide(HERE, os.environ)
    if state != "compiled":
        sys.meta_path.insert(0, _SourceFinder())
    if state == "stale":
        log.warning(
            "changeover: the compiled proxy in %s was built from other sources; running "
            "the plain-Python proxy (slower). Rebuild it with `make fast`.",
            HERE,
        )
    return state
