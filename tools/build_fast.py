"""Compile the builtin proxy's hot path with mypyc: ``python tools/build_fast.py``.

Run by ``make`` (target ``fast``) before the demo, the tests and the benchmarks. The
modules and the group name come from ``changeover/traffic/builtin/compiled.py`` (read as a
file: importing the package would load the very extensions this replaces). The build runs
in a temporary directory; each finished extension is then renamed into place, so a router
already running keeps its mapped copy instead of crashing on a truncated file. The digest
of the sources goes in last: until it matches, the package runs the plain-Python modules.

Without a C compiler or Python's headers this says so and exits 0: the proxy then runs
as plain Python (same behaviour, slower).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PKG_DIR = ROOT / "changeover" / "traffic" / "builtin"


def _load_compiled_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_changeover_compiled", PKG_DIR / "compiled.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _missing_toolchain() -> str | None:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers ({include}/Python.h; Debian: python3-dev)"
    return None


def main() -> int:
    compiled = _load_compiled_module()
    missing = _missing_toolchain()
    if missing:
        print(f"build_fast: {missing}: the proxy runs as plain Python (slower).")
        return 0
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    # setuptools reads pyproject.toml's [tool.setuptools] and calls it beta on every build.
    warnings.filterwarnings("ignore", message=".*tool.setuptools.*")

    digest = compiled.sources_digest(PKG_DIR)
    paths = [f"changeover/traffic/builtin/{name}.py" for name in compiled.MODULES]
    t0 = time.monotonic()
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory(prefix="changeover-mypyc-") as tmp:
        extensions = mypycify(
            paths, opt_level="3", separate=[(paths, compiled.GROUP)], target_dir=f"{tmp}/c"
        )
        setup(
            name="changeover-fast",
            ext_modules=extensions,
            script_args=[
                "--quiet",
                "build_ext",
                f"--build-lib={tmp}/lib",
                f"--build-temp={tmp}/temp",
            ],
        )
        (PKG_DIR / compiled.DIGEST_FILE).unlink(missing_ok=True)
        built = Path(tmp, "lib", "changeover", "traffic", "builtin")
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        for so in sorted(built.glob(f"*{suffix}")):
            staged = PKG_DIR / f".{so.name}.new"
            shutil.copyfile(so, staged)
            os.replace(staged, PKG_DIR / so.name)  # a running process keeps the old file
    (PKG_DIR / compiled.DIGEST_FILE).write_text(digest + "\n")
    names = ", ".join(compiled.MODULES)
    print(f"build_fast: compiled {names} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
