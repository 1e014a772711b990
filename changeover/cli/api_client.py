"""The CLI's side of the HTTP API: one method per endpoint, errors back into our tree.

Commands build a ``Client`` from ``server_registry.resolve`` and call it; every failure comes back
as a ``changeover.errors`` exception so the CLI's one handler can pick the exit code:

    connection refused / timeout → TemporaryBackendError (exit 1, "is `changeover serve` running?")
    400 → SpecError with the server's problems (exit 2)
    401 → PermanentBackendError naming where the token came from (exit 1)
    404 → NotFound, 409 → StateError, other → BackendError (exit 1)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from changeover import errors, server_registry

JSON = dict[str, Any]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Client:
    def __init__(self, target: server_registry.Target, *, timeout: float = 15.0) -> None:
        self.target = target
        self.url = target.url
        headers = {"Accept": "application/json", "User-Agent": "changeover-cli"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        host = urlsplit(target.url).hostname or ""
        self._http = httpx.Client(
            base_url=target.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=3.0),
            # An HTTP_PROXY meant for the internet must not capture calls to our own machine.
            trust_env=host not in _LOOPBACK,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------------

    def _call(self, method: str, path: str, body: JSON | None = None, **params: Any) -> Any:
        try:
            response = self._http.request(method, path, json=body, params=params or None)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise errors.TemporaryBackendError(
                f"cannot reach the changeover server at {self.url}: is `changeover serve` running?"
                " (`changeover servers` lists the servers this CLI knows)"
            ) from exc
        except httpx.TimeoutException as exc:
            raise errors.TemporaryBackendError(
                f"the changeover server at {self.url} did not answer in time"
            ) from exc
        except httpx.HTTPError as exc:
            raise errors.TemporaryBackendError(
                f"talking to the changeover server at {self.url} failed: {exc}"
            ) from exc
        if response.status_code == 200:
            if response.headers.get("content-type", "").startswith("application/json"):
                return self._json(response)
            return response.text
        raise self._error(response)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise errors.PermanentBackendError(
                f"{self.url} answered with something that is not JSON: is it a changeover server?"
            ) from exc

    def _error(self, response: httpx.Response) -> errors.ChangeoverError:
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return errors.PermanentBackendError(
                f"{self.url} answered HTTP {response.status_code}: is it a changeover server?"
            )
        message = str(doc.get("error") or f"HTTP {response.status_code}")
        status = response.status_code
        if status == 400:
            problems = [
                errors.SpecProblem(
                    file=str(p.get("file", "")),
                    path=str(p.get("path", "")),
                    message=str(p.get("message", "")),
                )
                for p in doc.get("problems") or []
                if isinstance(p, dict)
            ]
            return errors.SpecError(
                problems or [errors.SpecProblem(file="", path="", message=message)]
            )
        if status == 401:
            if self.target.token is None:
                hint = (
                    "no token: pass --token or set CHANGEOVER_TOKEN "
                    "(`changeover serve` prints where its token file is)"
                )
            else:
                hint = f"the token from {self.target.token_source} was refused"
            return errors.PermanentBackendError(f"{self.url}: not authorized: {hint}")
        if status == 404:
            return errors.NotFound(message)
        if status == 409:
            return errors.StateError(message)
        return errors.BackendError(message)

    # --- endpoints ---------------------------------------------------------------------

    @staticmethod
    def _one(name: str, suffix: str = "") -> str:
        # ``flag/NAME`` names a flag (every per-name command works on both kinds).
        kind, slash, flag = name.partition("/")
        if slash and kind == "flag":
            return f"/api/v1/flags/{quote(flag, safe='')}{suffix}"
        return f"/api/v1/rollouts/{quote(name, safe='')}{suffix}"

    def healthz(self) -> JSON:
        result: JSON = self._call("GET", "/healthz")
        return result

    def list_rollouts(self) -> list[JSON]:
        return list(self._call("GET", "/api/v1/rollouts")["rollouts"])

    def list_flags(self) -> list[JSON]:
        return list(self._call("GET", "/api/v1/flags")["flags"])

    def status(self, name: str) -> JSON:
        result: JSON = self._call("GET", self._one(name))
        return result

    def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        return list(self._call("GET", self._one(name, "/events"), limit=limit)["events"])

    def history(self, name: str) -> list[JSON]:
        return list(self._call("GET", self._one(name, "/history"))["revisions"])

    def spec(self, name: str) -> JSON:
        result: JSON = self._call("GET", self._one(name, "/spec"))
        return result

    def logs(
        self, name: str, *, revision: int | None, tail: int, since: dict[str, int]
    ) -> list[JSON]:
        params: dict[str, Any] = {"tail": tail}
        if revision is not None:
            params["revision"] = revision
        if since:
            params["since"] = [f"{k}:{v}" for k, v in since.items()]
        return list(self._call("GET", self._one(name, "/logs"), **params)["logs"])

    def shadow(self, name: str) -> JSON:
        """Per shadow revision: comparison counts and the recent differences."""
        result: JSON = self._call("GET", self._one(name, "/shadow"))["shadow"]
        return result

    def metrics(self) -> str:
        return str(self._call("GET", "/metrics"))

    def apply(self, documents: list[JSON], *, source: str) -> list[JSON]:
        body = {"documents": documents, "source": source}
        return list(self._call("POST", "/api/v1/apply", body)["results"])

    def command(self, name: str, verb: str, body: JSON | None = None) -> JSON:
        """promote / abort / retry / pause / resume / undo: the new status document."""
        result: JSON = self._call("POST", self._one(name, f"/{verb}"), body or {})
        return result

    def delete(self, name: str) -> None:
        self._call("DELETE", self._one(name))
