"""The compiled (mypyc) build of the proxy's hot path: when it is used, and that it behaves.

``make`` compiles the modules in ``compiled.MODULES``; a build runs only when it was made
from exactly the sources beside it, and ``CHANGEOVER_PURE_PYTHON=1`` asks for plain Python.
The rest of the suite runs on whichever build is current (the compiled one after ``make
test``); the pure-Python run of the proxy's correctness tests below keeps the fallback
honest on a machine without a compiler.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from changeover.traffic.builtin import compiled, proxy

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
ROOT = Path(__file__).resolve().parents[2]


def fake_build(tmp: Path, *, stamp: str | None) -> Path:
    for name in compiled.MODULES:
        (tmp / f"{name}.py").write_text(f"# {name}\n")
    (tmp / f"fast__mypyc{SUFFIX}").write_bytes(b"\x7fELF")
    if stamp is not None:
        (tmp / compiled.DIGEST_FILE).write_text(stamp + "\n")
    return tmp


def test_a_build_from_these_sources_is_used(tmp_path: Path) -> None:
    d = fake_build(tmp_path, stamp=None)
    (d / compiled.DIGEST_FILE).write_text(compiled.sources_digest(d) + "\n")
    assert compiled.decide(d, {}) == "compiled"


def test_an_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    d = fake_build(tmp_path, stamp=None)
    (d / compiled.DIGEST_FILE).write_text(compiled.sources_digest(d) + "\n")
    with (d / "exchange.py").open("a") as f:
        f.write("# edited after the build\n")
    assert compiled.decide(d, {}) == "stale"


def test_a_build_without_its_digest_is_stale(tmp_path: Path) -> None:
    # The build script writes the digest last: a build that died half-way is never used.
    assert compiled.decide(fake_build(tmp_path, stamp=None), {}) == "stale"


def test_no_build_or_the_pure_switch_means_plain_python(tmp_path: Path) -> None:
    assert compiled.decide(tmp_path, {}) == "pure"
    d = fake_build(tmp_path, stamp=None)
    (d / compiled.DIGEST_FILE).write_text(compiled.sources_digest(d) + "\n")
    assert compiled.decide(d, {compiled.PURE_ENV: "1"}) == "pure"
    assert compiled.decide(d, {compiled.PURE_ENV: "0"}) == "compiled"


def test_this_process_runs_the_build_it_found() -> None:
    expected = compiled.decide(compiled.HERE, os.environ)
    assert compiled.state == expected
    loaded_from = Path(proxy.__file__ or "")
    assert loaded_from.name.endswith(SUFFIX if expected == "compiled" else "proxy.py")


def test_the_pure_switch_loads_every_hot_module_from_source() -> None:
    code = (
        "import importlib, sys\n"
        "from changeover.traffic.builtin import compiled\n"
        "for name in compiled.MODULES:\n"
        "    m = importlib.import_module(f'{compiled.PACKAGE}.{name}')\n"
        "    print(compiled.state, m.__file__)\n"
    )
    env = dict(os.environ, **{compiled.PURE_ENV: "1"})
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    lines = [line for line in out if line]
    assert len(lines) == len(compiled.MODULES)
    assert all(line.startswith("pure ") and line.endswith(".py") for line in lines)


WITH_EXAMPLES = [n for n in compiled.MODULES if ">>>" in (compiled.HERE / f"{n}.py").read_text()]


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_the_docstring_examples_hold_for_the_build_in_use(name: str) -> None:
    # A compiled module keeps no docstrings, so the examples are read from its source and
    # run in its namespace: against the machine code when the build is in use.
    module = importlib.import_module(f"{compiled.PACKAGE}.{name}")
    tree = ast.parse((compiled.HERE / f"{name}.py").read_text())
    nodes = [tree, *ast.walk(tree)]
    docs = [
        ast.get_docstring(n, clean=True)
        for n in nodes
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for i, doc in enumerate(d for d in docs if d and ">>>" in d):
        test = parser.get_doctest(doc, dict(vars(module)), f"{name}[{i}]", str(name), 0)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_without_a_compiler_the_build_is_skipped_and_says_so() -> None:
    digest = ROOT / "changeover" / "traffic" / "builtin" / compiled.DIGEST_FILE
    before = digest.read_bytes() if digest.exists() else None
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_fast.py")],
        env=dict(os.environ, CC="/nonexistent/cc"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0  # make demo / make test go on, as plain Python
    assert "no C compiler (/nonexistent/cc)" in run.stdout
    assert "plain Python" in run.stdout
    assert (digest.read_bytes() if digest.exists() else None) == before


@pytest.mark.slow
def test_the_proxy_correctness_suite_passes_as_plain_python() -> None:
    env = dict(os.environ, **{compiled.PURE_ENV: "1"})
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/traffic/test_router_fastpath.py",
            "tests/traffic/test_router_basics.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
