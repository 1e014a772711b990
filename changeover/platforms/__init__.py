"""changeover.platforms: where replicas run.

The contract lives in ``platforms.base``; implementations are imported from their modules
(``platforms.local.LocalPlatform``, ``testing.fake_platform.FakePlatform``) so that importing the
contract never pulls in process or Kubernetes machinery.
"""

from changeover.platforms.base import (
    Drainer,
    HookState,
    HookStatus,
    Platform,
    Replica,
    ReplicaState,
    RevisionState,
)

__all__ = [
    "Drainer",
    "HookState",
    "HookStatus",
    "Platform",
    "Replica",
    "ReplicaState",
    "RevisionState",
]
