"""changeover.traffic: how requests are split between revisions.

Importing this package registers the routers that ship with changeover: ``builtin`` (the
embedded asyncio proxy) and ``recording`` (an in-memory fake for unit tests).
"""

from changeover.traffic import base, builtin, haproxy, recording

base.register("builtin", builtin.CAPABILITIES, builtin.factory)
base.register("haproxy", haproxy.CAPABILITIES, haproxy.factory)
base.register("recording", recording.CAPABILITIES, recording.RecordingRouter)

__all__ = ["base", "builtin", "haproxy", "recording"]
