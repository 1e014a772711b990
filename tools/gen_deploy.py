"""Write the kustomize base ``deploy/kubernetes/base`` from the one source of the install
manifests (``changeover.platforms.kubernetes.manifests``): ``python tools/gen_deploy.py``.

``--check`` writes nothing and exits 1 naming the files that differ (the test suite runs
the same comparison), so the checked-in base cannot drift from ``changeover manifests``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from changeover.platforms.kubernetes.manifests import kustomize_base

BASE = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "base"


def stale(base: Path = BASE) -> list[str]:
    """Names of the base's files whose content differs from the generated one."""
    files = kustomize_base()
    return [name for name, text in files.items() if _read(base / name) != text]


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    differ = stale()
    if args.check:
        for name in differ:
            print(f"{BASE / name}: differs from manifests.py (run python tools/gen_deploy.py)")
        return 1 if differ else 0
    BASE.mkdir(parents=True, exist_ok=True)
    for name, text in kustomize_base().items():
        (BASE / name).write_text(text)
    print(f"wrote {len(differ)} changed file(s) in {BASE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
