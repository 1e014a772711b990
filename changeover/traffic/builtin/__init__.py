"""The builtin router: changeover's embedded asyncio HTTP/1.1 data plane.

Modules, from the outside in: ``router`` (``BuiltinRouter``, the ``TrafficRouter``),
``proxy`` (client connections), ``exchange`` (one proxied request), ``upstream`` (backend
connections), ``pool`` (endpoints and keep-alive), ``table`` (the routing snapshot),
``mirror`` (shadow copies), ``metrics`` (the counters), ``metrics_text`` (them as
Prometheus text), ``wire`` (HTTP bytes).
``compiled`` picks the mypyc-compiled build of the hot path when one matches the sources.
"""

from changeover.traffic.builtin import compiled

compiled.select()  # before any compiled module is imported

from changeover.traffic.builtin.metrics import Registry  # noqa: E402
from changeover.traffic.builtin.router import CAPABILITIES, BuiltinRouter, factory  # noqa: E402
from changeover.traffic.builtin.state import Settings  # noqa: E402

__all__ = ["CAPABILITIES", "BuiltinRouter", "Registry", "Settings", "factory"]
