"""The Kubernetes routers, one module each behind the ``TrafficRouter`` Protocol:
``istio``, ``gateway_api``, ``nginx_ingress``, ``smi`` and ``replica_ratio`` (no router).

Each module has ``NAME``, ``CAPABILITIES`` (as ``traffic.base.SHIPPED`` declares them, so
validation knows what each can do without importing it) and ``factory(RouterContext) ->
KubeRouter``; ``ROUTERS`` maps registry names to modules for the operator.
"""

from __future__ import annotations

from types import ModuleType

from changeover.traffic.kubernetes import gateway_api, istio, nginx_ingress, replica_ratio, smi

ROUTERS: dict[str, ModuleType] = {
    m.NAME: m for m in (replica_ratio, istio, gateway_api, nginx_ingress, smi)
}

__all__ = ["ROUTERS", "gateway_api", "istio", "nginx_ingress", "replica_ratio", "smi"]
