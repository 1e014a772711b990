"""SIGINT in the pytest process: at its default whatever started the suite, and left as
each test found it.

A shell without job control starts a background job (``make test &`` in a script) with
SIGINT *ignored*; Python then installs no KeyboardInterrupt handler, and every process the
suite starts inherits the ignored SIGINT: the Ctrl-C demo test saw the demo run to the end.
``pytest_configure`` puts SIGINT back to Python's default, as a terminal would have it.

``_sigint_left_as_found`` fails a test that leaves SIGINT changed (it would outlive the
test): both the handler Python knows and the kernel's disposition are compared, so a C
library's ``sigaction`` is caught as well; about 25 µs a test.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

_STATUS = Path("/proc/self/status")

# Not a doctest module: --doctest-modules would import this file as "conftest" a second time
# after a subdirectory's conftest took that name (an import file mismatch).
collect_ignore = ["conftest.py"]


def _sigint() -> tuple[object, bool | None]:
    """SIGINT's Python handler, and whether the kernel ignores it (None off Linux)."""
    ignored = None
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("SigIgn:"):
                ignored = bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return signal.getsignal(signal.SIGINT), ignored


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _sigint_left_as_found() -> Iterator[None]:
    before = _sigint()
    yield
    after = _sigint()
    if after != before:
        if callable(before[0]) or before[0] in (signal.SIG_DFL, signal.SIG_IGN):
            signal.signal(signal.SIGINT, before[0])  # the next test starts as this one did
        pytest.fail(f"SIGINT (handler, ignored by the kernel) changed: {before} -> {after}")
