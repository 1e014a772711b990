"""changeover.traffic: how requests are split between revisions.

Importing this package registers the routers that ship with changeover: ``builtin`` (the
embedded asyncio proxy), ``recording`` (an in-memory fake for unit tests) and the
Kubernetes routers (``traffic.kubernetes``: istio, gateway-api, nginx, smi, replica-ratio).
"""

from changeover.testing import recording_router
from changeover.traffic import base, builtin, haproxy
from changeover.traffic import kubernetes as kube_routers

base.register("builtin", builtin.CAPABILITIES, builtin.factory)
base.register("haproxy", haproxy.CAPABILITIES, haproxy.factory)
base.register("recording", recording_router.CAPABILITIES, recording_router.RecordingRouter)
for _name, _module in kube_routers.ROUTERS.items():
    base.register(_name, _module.CAPABILITIES, _module.factory)

__all__ = ["base", "builtin", "haproxy"]
