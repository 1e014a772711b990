"""A network endpoint: the one type platforms and routers both speak.

Platforms report where a replica listens; routers send traffic there. Neither imports the
other, so the type lives here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"
