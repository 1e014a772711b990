"""``changeover demo``: a live canary and a blue-green switch on this machine, under load.

script          the acts, narration, cleanup and exit codes (``run`` is the entry point)
private_server  a private ``changeover serve`` subprocess, and the sweep that leaves nothing
                behind
load_thread     ``changeover.loadgen`` on its own event loop thread
rollout_docs    the demo's Rollout documents and where ``examples/app.py`` lives
view            the live Rich view and the summary tables (pure functions of data)
"""

from __future__ import annotations

from changeover.demo.script import run

__all__ = ["run"]
