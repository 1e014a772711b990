"""The ``changeover`` executable: ``run`` is the console-script entry point.

Importing the command modules registers their commands on ``cli.app.app``. Errors raised
by commands are mapped to messages and exit codes in ``cli.app.ErrorMappingGroup``; ``run``
is the last line of defence for anything that escapes Typer itself.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from changeover.cli import app as app_mod

app = app_mod.app

# Imported for their side effect: each registers its commands on ``app``, in this order
# (the order ``changeover --help`` lists them).
COMMAND_MODULES = (
    "change_commands",
    "kube_commands",
    "logs_command",
    "shadow_command",
    "read_commands",
    "lint_command",
    "serve_commands",
    "dashboard_command",
    "recommend_command",
    "demo_command",
    "servers_command",
)
for _module in COMMAND_MODULES:
    importlib.import_module(f"changeover.cli.{_module}")


def run() -> None:
    try:
        app()
    except SystemExit:
        raise
    # Nothing may reach the user as a traceback, not even from Typer's own machinery.
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            sys.exit(130)
        if "--debug" in sys.argv or os.environ.get("CHANGEOVER_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
