"""The local platform: replicas as supervised OS processes on this machine.

``LocalPlatform`` is the public entry point; ``Backoff`` tunes restart delays.
"""

from changeover.platforms.local.platform import LocalPlatform
from changeover.platforms.local.replica import Backoff

__all__ = ["Backoff", "LocalPlatform"]
