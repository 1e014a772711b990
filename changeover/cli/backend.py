"""What the rollout commands need from wherever rollouts live, as one Protocol.

Two implementations: ``api_client.Client`` (the local server's HTTP API) and
``kube_backend.KubeBackend`` (Rollout resources in a cluster, ``--platform kubernetes``).
``cli.app.backend`` picks one per command from its options; the commands and ``cli.wait``
never ask which. Every method raises only from ``changeover.errors``, so exit codes are the
same on both platforms.
"""

from __future__ import annotations

from typing import Any, Protocol, Self

JSON = dict[str, Any]


class Backend(Protocol):
    url: str  # where the commands' answers come from, for messages

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...

    def list_rollouts(self) -> list[JSON]: ...

    def list_flags(self) -> list[JSON]: ...

    def status(self, name: str) -> JSON: ...

    def events(self, name: str, *, limit: int = 50) -> list[JSON]: ...

    def history(self, name: str) -> list[JSON]: ...

    def apply(self, documents: list[JSON], *, source: str) -> list[JSON]: ...

    def command(self, name: str, verb: str, body: JSON | None = None) -> JSON:
        """promote / abort / retry / pause / resume / undo: the new status document."""
        ...

    def delete(self, name: str) -> None: ...
