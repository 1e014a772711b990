"""``replica-ratio``: Kubernetes without a mesh or an ingress that can split traffic.

The stable Service selects every ready pod of the rollout (a canary step's weight is then
the ratio of replicas, which the engine sizes as Argo Rollouts' basic canary does, in
``engine.strategies.basic_canary``; ``changeover lint`` says weights are approximate); the
canary Service selects the canary's pods and blue-green's active and preview Services
switch by pod-template hash. Header routes, mirrors and exact weights need a router that
has them (istio, gateway-api, nginx, smi): validation says which.
"""

from __future__ import annotations

from changeover.traffic import base
from changeover.traffic.kubernetes.base import RouterContext
from changeover.traffic.kubernetes.router import KubeRouter

NAME = "replica-ratio"
CAPABILITIES = base.SHIPPED[NAME].capabilities


def factory(ctx: RouterContext) -> KubeRouter:
    return KubeRouter(ctx, None, name=NAME, capabilities=CAPABILITIES)
