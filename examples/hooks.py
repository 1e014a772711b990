"""The recreate example's hooks: small commands run before, between and after the versions.

examples/recreate.yaml runs ``pre`` before the old revision stops, ``migrate`` while nothing
runs, and ``post`` once the new revision is ready. They print what a real hook would do;
``migrate`` records the schema version in a file so a demo can show the migration happened.
``--fail`` makes any of them exit 1, to watch ``failurePolicy`` at work. Standard library only.

    python3 examples/hooks.py migrate --to v2 --state-dir /tmp/demo
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="example rollout hooks")
    parser.add_argument("phase", choices=["pre", "migrate", "post"])
    parser.add_argument("--message", default="")
    parser.add_argument("--to", default="v1", help="schema version to migrate to")
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("HOOK_STATE_DIR")
        or str(Path(tempfile.gettempdir()) / "changeover-example"),
    )
    parser.add_argument("--seconds", type=float, default=0.2, help="how long the work takes")
    parser.add_argument("--fail", action="store_true", help="exit 1 to simulate a failure")
    args = parser.parse_args(argv)

    print(f"[{args.phase}] {args.message or 'starting'}", flush=True)
    time.sleep(max(0.0, args.seconds))
    if args.fail:
        print(f"[{args.phase}] failed (--fail)", file=sys.stderr)
        return 1
    if args.phase == "migrate":
        state = Path(args.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        schema = state / "schema-version"
        before = schema.read_text().strip() if schema.exists() else "none"
        schema.write_text(args.to + "\n")
        print(f"[migrate] schema {before} -> {args.to} ({schema})", flush=True)
    else:
        print(f"[{args.phase}] done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
