"""The OCI archive ``make image`` wrote, opened as a container runtime would open it.

Containers do not run on this machine (``podman run`` fails on setrlimit, ``crun`` on the
cgroup layout), so the tests unpack the archive's layers into a directory and run the
image's entrypoint in it with ``chroot`` as the image's user, on the host network: the
same files, user and command a container would run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# By path: the image's own environment (its PATH) is what the command runs with.
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


@dataclass
class Image:
    archive: Path
    config: dict[str, Any]  # the OCI image configuration ("config": Entrypoint, User, ...)
    rootfs: Path

    @property
    def user(self) -> str:
        return str(self.config["config"]["User"])

    def argv(self, *args: str) -> list[str]:
        """Run the entrypoint with ``args`` inside the image, as its user."""
        entry = self.config["config"]["Entrypoint"]
        return [CHROOT, f"--userspec={self.user}", str(self.rootfs), *entry, *args]

    def env(self) -> dict[str, str]:
        pairs = (e.split("=", 1) for e in self.config["config"].get("Env", []))
        return {k: v for k, v in pairs}


def archive_path() -> Path | None:
    """The archive named by ``$CHANGEOVER_IMAGE`` or ``dist/image-latest.txt``."""
    named = os.environ.get("CHANGEOVER_IMAGE")
    if named:
        return Path(named)
    latest = REPO / "dist" / "image-latest.txt"
    if latest.exists():
        return REPO / "dist" / latest.read_text().strip()
    return None


def require_archive() -> Path:
    """The archive, or skip; ``make test`` sets ``CHANGEOVER_REQUIRE_IMAGE`` so a missing
    image fails there instead of skipping."""
    path = archive_path()
    if path is not None and path.exists():
        return path
    message = f"no image archive ({path or 'dist/image-latest.txt missing'}): run `make image`"
    if os.environ.get("CHANGEOVER_REQUIRE_IMAGE"):
        pytest.fail(message)
    pytest.skip(message)


def _blob(tf: tarfile.TarFile, digest: str) -> bytes:
    algo, hexdigest = digest.split(":", 1)
    member = tf.extractfile(f"blobs/{algo}/{hexdigest}")
    assert member is not None, digest
    return member.read()


def unpack(archive: Path, dest: Path) -> Image:
    """Read the OCI layout's index, manifest and config; apply the layers in order."""
    rootfs = dest / "rootfs"
    rootfs.mkdir()
    with tarfile.open(archive) as tf:
        index = json.loads(_blob_or_file(tf, "index.json"))
        manifest = json.loads(_blob(tf, index["manifests"][0]["digest"]))
        config = json.loads(_blob(tf, manifest["config"]["digest"]))
        for layer in manifest["layers"]:
            layer_path = dest / "layer.tar"
            layer_path.write_bytes(_blob(tf, layer["digest"]))
            # tar keeps owners and modes (we run as root), as a runtime's unpacker does.
            subprocess.run(
                ["tar", "-C", str(rootfs), "--numeric-owner", "-xf", str(layer_path)],
                check=True,
            )
            layer_path.unlink()
    return Image(archive, config, rootfs)


def _blob_or_file(tf: tarfile.TarFile, name: str) -> bytes:
    member = tf.extractfile(name)
    assert member is not None, name
    return member.read()
