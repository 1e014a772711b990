"""pytest at the repository root: keep --doctest-modules off the compiled proxy modules.

With the mypyc build in place (``make fast``), ``changeover.traffic.builtin``'s hot-path
modules are C extensions: pytest's doctest collector would import them and refuse their
``__file__``, and they carry no docstrings to collect. Their examples run against the
compiled code in tests/traffic/test_compiled.py instead.
"""

from pathlib import Path

from changeover.traffic.builtin import compiled


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    if collection_path.parent == compiled.HERE and collection_path.stem in compiled.MODULES:
        return True
    return None
