"""nginx configurations for the benchmarks and the differential fuzz tests: one writer.

``write(directory, http=...)`` puts ``nginx.conf`` in ``directory`` with what every run
needs around the ``http`` block's content: the pid file, the error log and the temp paths
inside ``directory`` (nothing outside it is touched), ``daemon off`` (the caller supervises
the process) and no access log. ``reverse_proxy`` is the ``http`` content of a plain
keep-alive proxy to one upstream; ``argv`` starts nginx on a written file.
"""

from __future__ import annotations

from pathlib import Path


def write(
    directory: Path,
    *,
    http: str,
    worker_processes: int = 1,
    worker_connections: int = 8192,
    error_log_level: str = "warn",
    rlimit_nofile: int | None = None,
) -> Path:
    """Write ``directory/nginx.conf`` (creating ``directory``) and return its path.
    ``rlimit_nofile``: the workers' file-descriptor limit (many connections need it)."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    nofile = f"worker_rlimit_nofile {rlimit_nofile};\n" if rlimit_nofile else ""
    conf = f"""worker_processes {worker_processes};
{nofile}pid {d}/nginx.pid;
error_log {d}/error.log {error_log_level};
daemon off;
events {{ worker_connections {worker_connections}; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
{http.rstrip()}
}}
"""
    path = d / "nginx.conf"
    path.write_text(conf)
    return path


def reverse_proxy(*, listen: int, upstream: int, keepalive: int = 16) -> str:
    """A server on 127.0.0.1:``listen`` proxying everything to 127.0.0.1:``upstream`` over
    kept-alive HTTP/1.1 connections."""
    return f"""  upstream app {{ server 127.0.0.1:{upstream}; keepalive {keepalive}; }}
  server {{
    listen 127.0.0.1:{listen};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}"""


def argv(conf: Path, binary: str = "nginx") -> list[str]:
    """The command line running nginx on ``conf`` with its directory as the prefix."""
    return [binary, "-p", str(conf.parent), "-c", str(conf)]
