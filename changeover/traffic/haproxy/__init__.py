"""The haproxy router: a managed HAProxy as the local data plane (``traffic: {haproxy: {}}``).

Modules: ``router`` (``HAProxyRouter``, the ``TrafficRouter``), ``desired`` (desired state
→ map contents and server slots, pure), ``config`` (configuration rendering, pure),
``runtime_api`` (the runtime API client over the Unix socket), ``haproxy_process`` (starting,
reloading and stopping HAProxy by PID), ``metrics_feed`` (``show stat`` and request logs →
the shared per-revision metrics).
"""

from changeover.traffic.haproxy.router import CAPABILITIES, HAProxyRouter, factory

__all__ = ["CAPABILITIES", "HAProxyRouter", "factory"]
