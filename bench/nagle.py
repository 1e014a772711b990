"""A plain ``http.server`` upstream through the proxies: ``python -m bench.nagle [--write]``.

Python's ``BaseHTTPRequestHandler`` writes a response's head and body in two ``send``
calls on a socket with Nagle's algorithm on: on a reused keep-alive connection the body
waits for the ACK of the head, and a receiver in delayed-ACK mode sends that ACK ~40 ms
later (44 ms a request through nginx; the builtin router answers in 0.4 ms). This measures
sequential requests on one keep-alive client connection, directly and through nginx
(upstream keep-alive, as bench/proxies.py configures it) and the builtin router, with the
upstream in HTTP/1.1 keep-alive and in HTTP/1.0 (a connection per request) modes.

    python -m bench.nagle                 # prints the table
    python -m bench.nagle --write         # and puts it under "## Nagle" in RESULTS.md
    python -m bench.nagle upstream PORT MODE   # (internal) the upstream process
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import common, nginx_conf, proxies

BODY = b'{"ok":true}\n'
SECTION = "## Nagle: a plain http.server upstream"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()  # the head goes out here, in its own send()
        self.wfile.write(BODY)  # and the body in another

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_upstream(port: int, mode: str) -> None:
    Handler.protocol_version = "HTTP/1.1" if mode == "keepalive" else "HTTP/1.0"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"READY {port}", flush=True)
    server.serve_forever()


def latencies(port: int, n: int, *, fresh: bool = False) -> list[float]:
    """``n`` sequential GETs on one keep-alive connection (reconnecting when closed), or
    each on a new connection (``fresh``, as curl does), in ms."""
    out: list[float] = []
    sock: socket.socket | None = None
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(n):
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        sock.sendall(request)
        data = b""
        while not (b"\r\n\r\n" in data and data.endswith(BODY)):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        out.append((time.perf_counter() - t0) * 1000)
        if fresh or b"connection: close" in data.lower() or not data.endswith(BODY):
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return out


def start_nginx_single(procs: common.Procs, workdir: Path, port: int, upstream: int) -> None:
    http = nginx_conf.reverse_proxy(listen=port, upstream=upstream)
    conf = nginx_conf.write(workdir / f"nginx-{port}", http=http, worker_connections=1024)
    p = procs.start(f"nginx-{port}", nginx_conf.argv(conf))
    proxies._ready(p, port, f"nginx-{port}", procs.logdir)


def run(n: int, baseline: Path | None) -> list[tuple[str, str, float, float]]:
    """(upstream mode, path, median ms, p90 ms) rows; ``baseline``: another checkout's
    router too (``bench.compare``'s way of running a tree)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-nagle-") as tmp:
        workdir = Path(tmp)
        procs = common.Procs(workdir)
        try:
            for mode in ("keepalive", "http10"):
                up = common.free_port()
                p = procs.start(
                    f"upstream-{mode}",
                    [sys.executable, "-m", "bench.nagle", "upstream", str(up), mode],
                )
                proxies._ready(p, up, f"upstream-{mode}", workdir)
                nginx = common.free_port()
                start_nginx_single(procs, workdir, nginx, up)
                router = common.free_port()
                ctx = proxies.ProxyContext(
                    procs=procs, workdir=workdir, port=router, backends={1: up, 2: up}, cpu=None
                )
                proxies.start_builtin(ctx)
                paths = [("direct, keep-alive", up), ("nginx", nginx), ("builtin router", router)]
                if baseline is not None:
                    other = common.free_port()
                    ctx = proxies.ProxyContext(
                        procs=procs, workdir=workdir, port=other, backends={1: up, 2: up}, cpu=None
                    )
                    proxies.start_builtin(ctx, name="baseline", tree=baseline)
                    paths.append((f"builtin router ({baseline})", other))
                fresh = latencies(up, n, fresh=True)
                q = statistics.quantiles(fresh, n=10)
                rows.append(
                    (mode, "direct, a connection per request", statistics.median(fresh), q[8])
                )
                for name, port in paths:
                    latencies(port, 20)  # warm-up: connections made, pools filled
                    ms = latencies(port, n)
                    q = statistics.quantiles(ms, n=10)
                    rows.append((mode, name, statistics.median(ms), q[8]))
        finally:
            procs.stop_all()
    return rows


def table(rows: list[tuple[str, str, float, float]], n: int) -> str:
    commit = common.commit()
    lines = [
        SECTION,
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, "
        f"{platform.node()} ({platform.machine()}, {common.loadavg()}); "
        f"`python -m bench.nagle -n {n}`: sequential GETs on one keep-alive client "
        "connection to a `BaseHTTPRequestHandler` upstream that sends head and body in two "
        "writes (Nagle on).",
        "",
        "| upstream | path | median ms | p90 ms |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {m} | {name} | {med:.2f} | {p90:.2f} |" for m, name, med, p90 in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "upstream":
        serve_upstream(int(sys.argv[2]), sys.argv[3])
        return
    p = argparse.ArgumentParser(prog="bench.nagle")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    p.add_argument("--baseline", type=Path, help="also run this checkout's router")
    args = p.parse_args()
    text = table(run(args.n, args.baseline), args.n)
    print(text)
    if args.write:
        common.write_results_section(SECTION, text)


if __name__ == "__main__":
    main()
