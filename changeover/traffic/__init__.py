"""changeover.traffic: how requests are split between revisions.

Importing this package registers the routers that ship with changeover: ``builtin`` (the
embedded asyncio proxy), ``haproxy`` and the Kubernetes routers (``traffic.kubernetes``:
istio, gateway-api, nginx, smi, replica-ratio). The unit tests' ``recording`` fake registers
itself when a test imports ``changeover.testing.recording_router``.
"""

from changeover.traffic import base, builtin, haproxy
from changeover.traffic import kubernetes as kube_routers

base.register("builtin", builtin.CAPABILITIES, builtin.factory)
base.register("haproxy", haproxy.CAPABILITIES, haproxy.factory)
for _name, _module in kube_routers.ROUTERS.items():
    base.register(_name, _module.CAPABILITIES, _module.factory)

__all__ = ["base", "builtin", "haproxy"]
