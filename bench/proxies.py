"""The proxies the benchmark compares, each doing the same 90/10 split with keep-alive.

Each ``start_*`` returns a ``Running`` (the port to load, the PIDs whose CPU is the proxy's
cost, and how to stop it). Upstreams are on loopback; everything binds 127.0.0.1.

Another data plane plugs in through a module exposing ``start(ctx: ProxyContext) ->
Running``: ``bench/haproxy_dataplane.py`` (changeover's managed HAProxy) is picked up by
``bench.run`` when it exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import common, nginx_conf

BODY = b'{"id":"bench","choices":[{"text":"' + b"x" * 54 + b'"}],"model":"m"}\n'


@dataclass
class ProxyContext:
    """What a proxy is asked to do: split ``backends[1]``/``backends[2]`` 90/10 (requests
    with ``x-canary: always`` all to 2), keep-alive both sides, listen on ``port``."""

    procs: common.Procs
    workdir: Path
    port: int
    backends: dict[int, int]  # revision → upstream port on 127.0.0.1
    stream: bool = False  # the backends stream: never buffer (flush each chunk)
    cpu: int | None = 0  # the core to pin the proxy to (None: unpinned)
    mirror: int | None = None  # builtin only: shadow upstream port (100% mirrored)
    compare: str | None = None  # builtin only: compare the shadow's answers (a comparator)
    connections: int = 8192  # nginx's worker_connections (each proxied stream takes two)


@dataclass
class Running:
    name: str
    port: int
    pid: int  # the root process; CPU is summed over it and its children
    stop: Callable[[], None]
    notes: str = ""
    pids: list[int] = field(default_factory=list)

    def all_pids(self) -> list[int]:
        return common.tree_pids(self.pid)


def _ready(proc: subprocess.Popen[bytes], port: int, what: str, logdir: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (logdir / f"{what}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log}")
        try:
            common.wait_port(port, 0.2)
            return
        except TimeoutError:
            continue
    raise TimeoutError(f"{what} did not listen on {port}")


# -- upstreams ---------------------------------------------------------------------------


def start_upstream_nginx(procs: common.Procs, workdir: Path, ports: list[int]) -> Running:
    """Static ~100-byte answers on ``ports`` (two worker processes, unpinned)."""
    body = BODY.decode().rstrip("\n").replace('"', '\\"')
    servers = "\n".join(
        f"""  server {{ listen 127.0.0.1:{p} backlog=4096; keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 "{body}\\n"; }} }}"""
        for p in ports
    )
    conf = nginx_conf.write(workdir / "upstream-nginx", http=servers, worker_processes=2)
    p = procs.start("upstream-nginx", nginx_conf.argv(conf))
    for port in ports:
        _ready(p, port, "upstream-nginx", procs.logdir)
    return Running("upstream-nginx", ports[0], p.pid, lambda: procs.stop(p))


def start_stream_server(procs: common.Procs, mode: str, ports: list[int]) -> Running:
    p = procs.start(
        f"stream-server-{mode}",
        [sys.executable, "-m", "bench.stream_server", mode, *map(str, ports)],
    )
    for port in ports:
        _ready(p, port, f"stream-server-{mode}", procs.logdir)
    return Running(f"stream-{mode}", ports[0], p.pid, lambda: procs.stop(p))


# -- proxies -----------------------------------------------------------------------------


def builtin_env(tree: Path | None = None) -> dict[str, str]:
    """The router process's environment. With ``tree`` (a checkout of this repo), its
    ``changeover`` and ``bench`` packages are the ones imported: PYTHONPATH puts the tree
    ahead of the editable install's finder, even where the working directory is not on
    ``sys.path`` (``PYTHONSAFEPATH``)."""
    env = dict(os.environ, PYTHONOPTIMIZE="1")
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(tree), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
    return env


def start_builtin(
    ctx: ProxyContext, *, workers: int = 1, name: str = "builtin", tree: Path | None = None
) -> Running:
    """The builtin router (``bench.router_proc``); with ``tree``, that checkout's router,
    started in it (``bench.compare``)."""
    argv = [
        *common.pin(ctx.cpu if workers == 1 else None),
        sys.executable,
        "-m",
        "bench.router_proc",
        "--port",
        str(ctx.port),
        *(a for rev, port in sorted(ctx.backends.items()) for a in ("--backend", f"{rev}={port}")),
        "--workers",
        str(workers),
    ]
    if ctx.mirror is not None:
        argv += ["--mirror", f"3={ctx.mirror}", "--mirror-percent", "100"]
        if ctx.compare is not None:
            argv += ["--compare", ctx.compare]
    p = ctx.procs.start(name, argv, env=builtin_env(tree), cwd=tree)
    _ready(p, ctx.port, name, ctx.procs.logdir)
    return Running(name, ctx.port, p.pid, lambda: ctx.procs.stop(p))


def start_nginx(ctx: ProxyContext) -> Running:
    a, b = ctx.backends[1], ctx.backends[2]
    buffering = "proxy_buffering off;" if ctx.stream else ""
    http = f"""  upstream app {{ server 127.0.0.1:{a} weight=9; server 127.0.0.1:{b} weight=1;
                 keepalive 256; keepalive_requests 1000000; }}
  upstream canary {{ server 127.0.0.1:{b}; keepalive 64; keepalive_requests 1000000; }}
  map $http_x_canary $pool {{ default app; always canary; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ""; }}
  server {{
    listen 127.0.0.1:{ctx.port} backlog=4096;
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://$pool;
      proxy_http_version 1.1;
      # "" (upstream keep-alive) unless the client asks for an upgrade (WebSocket).
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      {buffering}
    }}
  }}"""
    conf = nginx_conf.write(
        ctx.workdir / f"nginx-{ctx.port}",
        http=http,
        worker_connections=ctx.connections,
        rlimit_nofile=ctx.connections + 64,
    )
    name = f"nginx-{ctx.port}"
    p = ctx.procs.start(name, [*common.pin(ctx.cpu), *nginx_conf.argv(conf)])
    _ready(p, ctx.port, name, ctx.procs.logdir)
    return Running("nginx", ctx.port, p.pid, lambda: ctx.procs.stop(p))


def start_haproxy(ctx: ProxyContext) -> Running:
    """HAProxy configured by hand for the split, doing the job changeover's data plane and
    the builtin router do: an exact 90/10 (``balance roundrobin`` over server weights, exact
    with one server per side), the header route, and the ``x-changeover-revision`` response
    header (the serving server's ``id``, here the revision, written in by hand)."""
    d = ctx.workdir / f"haproxy-{ctx.port}"
    d.mkdir(exist_ok=True)
    a, b = ctx.backends[1], ctx.backends[2]
    conf = f"""global
  nbthread 1
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
  option http-no-delay
  http-reuse always
frontend fe
  bind 127.0.0.1:{ctx.port}
  use_backend canary if {{ req.hdr(x-canary) -m str always }}
  default_backend app
backend app
  balance roundrobin
  http-response add-header x-changeover-revision %[srv_id]
  server s1 127.0.0.1:{a} weight 90 id 1
  server s2 127.0.0.1:{b} weight 10 id 2
backend canary
  http-response add-header x-changeover-revision 2
  server s2 127.0.0.1:{b}
"""
    (d / "haproxy.cfg").write_text(conf)
    name = f"haproxy-{ctx.port}"
    p = ctx.procs.start(
        name, [*common.pin(ctx.cpu), "haproxy", "-db", "-f", str(d / "haproxy.cfg")]
    )
    _ready(p, ctx.port, name, ctx.procs.logdir)
    return Running("haproxy", ctx.port, p.pid, lambda: ctx.procs.stop(p))
