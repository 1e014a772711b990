"""changeover.traffic: how requests are split between revisions.

``traffic.base`` is the contract (``TrafficRouter``, ``Capability``) and the registry of
routers by name; importing this package imports no router. The ones that ship: ``builtin``
(the embedded asyncio proxy), ``haproxy`` (a managed HAProxy) and the Kubernetes routers
(``traffic.kubernetes``: istio, gateway-api, nginx, smi, replica-ratio).
"""

from changeover.traffic import base

__all__ = ["base"]
