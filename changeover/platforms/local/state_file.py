"""What the local platform remembers across restarts, in one small JSON file.

``LocalPlatform`` rewrites ``state_dir/platform/local.json`` whenever a replica is started,
stopped or changes readiness, and reads it back in ``start()`` to re-adopt live replicas.
The file is replaced atomically (temp file + ``os.replace``), so a ``kill -9`` mid-write
leaves the previous version. JSON rather than SQLite: it is a few kilobytes, written by one
process, and readable with ``cat`` when debugging.

Shape (camelCase like the rest of changeover's documents)::

    {"version": 1, "nextSeq": 7,
     "rollouts": {"chat": {
        "revisions": {"2": {"desired": 3, "template": {...ProcessTemplate...},
                            "replicas": [{"id": "chat-2-5", "seq": 5, "port": 20417,
                                          "pid": 4242, "createTime": 1763900000.12,
                                          "restarts": 0, "readySince": 1763900001.5,
                                          "terminating": false}]}},
        "hooks": {"pre-2": {"state": "succeeded", "message": "", "extra": {}}}}}}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from changeover import errors
from changeover.spec import models

VERSION = 1


@dataclass(kw_only=True)
class ReplicaRecord:
    id: str
    seq: int  # creation order within the platform: "newest first" on scale-down
    port: int | None = None
    pid: int | None = None
    create_time: float | None = None
    restarts: int = 0
    ready_since: float | None = None
    terminating: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "port": self.port,
            "pid": self.pid,
            "createTime": self.create_time,
            "restarts": self.restarts,
            "readySince": self.ready_since,
            "terminating": self.terminating,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplicaRecord:
        return cls(
            id=str(data["id"]),
            seq=int(data["seq"]),
            port=data.get("port"),
            pid=data.get("pid"),
            create_time=data.get("createTime"),
            restarts=int(data.get("restarts", 0)),
            ready_since=data.get("readySince"),
            terminating=bool(data.get("terminating", False)),
        )


@dataclass(kw_only=True)
class RevisionRecord:
    desired: int
    template: models.ProcessTemplate
    replicas: list[ReplicaRecord] = field(default_factory=list)


@dataclass(kw_only=True)
class HookRecord:
    state: str
    message: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    pid: int | None = None  # set while running, so a restart can kill an orphaned hook
    create_time: float | None = None


@dataclass(kw_only=True)
class PlatformState:
    next_seq: int = 1
    revisions: dict[tuple[str, int], RevisionRecord] = field(default_factory=dict)
    hooks: dict[tuple[str, str], HookRecord] = field(default_factory=dict)


def _dump(state: PlatformState) -> dict[str, Any]:
    rollouts: dict[str, dict[str, Any]] = {}
    for (rollout, revision), rec in sorted(state.revisions.items()):
        entry = rollouts.setdefault(rollout, {"revisions": {}, "hooks": {}})
        entry["revisions"][str(revision)] = {
            "desired": rec.desired,
            "template": rec.template.model_dump(mode="json", by_alias=True),
            "replicas": [r.to_json() for r in rec.replicas],
        }
    for (rollout, hook_id), hook in sorted(state.hooks.items()):
        entry = rollouts.setdefault(rollout, {"revisions": {}, "hooks": {}})
        entry["hooks"][hook_id] = {
            "state": hook.state,
            "message": hook.message,
            "extra": hook.extra,
            "pid": hook.pid,
            "createTime": hook.create_time,
        }
    return {"version": VERSION, "nextSeq": state.next_seq, "rollouts": rollouts}


def _load(data: dict[str, Any]) -> PlatformState:
    state = PlatformState(next_seq=int(data.get("nextSeq", 1)))
    for rollout, entry in data.get("rollouts", {}).items():
        for rev, rec in entry.get("revisions", {}).items():
            state.revisions[(rollout, int(rev))] = RevisionRecord(
                desired=int(rec["desired"]),
                template=models.ProcessTemplate.model_validate(rec["template"]),
                replicas=[ReplicaRecord.from_json(r) for r in rec.get("replicas", [])],
            )
        for hook_id, hook in entry.get("hooks", {}).items():
            state.hooks[(rollout, hook_id)] = HookRecord(
                state=str(hook["state"]),
                message=str(hook.get("message", "")),
                extra={str(k): str(v) for k, v in hook.get("extra", {}).items()},
                pid=hook.get("pid"),
                create_time=hook.get("createTime"),
            )
    return state


class StateFile:
    """Load and atomically save ``PlatformState`` at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> PlatformState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return PlatformState()
        except OSError as exc:
            raise errors.PermanentBackendError(f"cannot read {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
            if data.get("version") != VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            return _load(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.PermanentBackendError(
                f"corrupt platform state {self.path}: {exc}"
            ) from exc

    def save(self, state: PlatformState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # No fsync: os.replace is atomic against a killed process, which is the failure we
        # design for; a power cut also takes the replicas with it.
        tmp.write_text(json.dumps(_dump(state), indent=1, sort_keys=True))
        os.replace(tmp, self.path)
