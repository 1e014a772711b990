"""The haproxy router: a managed HAProxy as the local data plane (``traffic: {haproxy: {}}``).

Modules: ``router`` (``HAProxyRouter``, the ``TrafficRouter``), ``state`` (desired state →
map contents and server slots, pure), ``config`` (configuration rendering, pure),
``runtime`` (the runtime API client over the Unix socket), ``process`` (starting, reloading
and stopping HAProxy by PID), ``metrics`` (``show stat`` and request logs → the shared
per-revision metrics).
"""

from changeover.traffic.haproxy.router import CAPABILITIES, HAProxyRouter, factory

__all__ = ["CAPABILITIES", "HAProxyRouter", "factory"]
