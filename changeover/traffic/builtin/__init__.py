"""The builtin router: changeover's embedded asyncio HTTP/1.1 data plane (DESIGN §3).

Modules, from the outside in: ``router`` (``BuiltinRouter``, the ``TrafficRouter``),
``proxy`` (client connections), ``exchange`` (one proxied request), ``upstream`` (backend
connections), ``pool`` (endpoints and keep-alive), ``table`` (the routing snapshot),
``mirror`` (shadow copies), ``metrics`` (Prometheus text), ``wire`` (HTTP bytes).
"""

from changeover.traffic.builtin.metrics import Registry
from changeover.traffic.builtin.router import CAPABILITIES, BuiltinRouter, factory
from changeover.traffic.builtin.state import Settings

__all__ = ["CAPABILITIES", "BuiltinRouter", "Registry", "Settings", "factory"]
