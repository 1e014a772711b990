"""Build changeover's OCI image without a container registry: ``make image``.

The root filesystem is a minimal Debian (``debootstrap --variant=minbase``, the host's own
release, with Debian's ``python3``), cached by its package list. changeover's wheel and its
runtime dependencies' wheels (from PyPI, at build time) are installed into
``/opt/changeover/site-packages`` with the host's pip, together with the mypyc-compiled
router modules ``make fast`` built (same CPython minor version as Debian's). No compiler
or package manager cache is left inside; a user ``changeover`` (uid 10001) owns nothing but
its home. ``buildah`` assembles the image from scratch, sets the entrypoint, user and OCI
labels, and writes ``dist/changeover-<version>-g<commit>.oci.tar`` (``podman load -i`` /
``docker load -i``, see docs) plus a report of its size and contents.

The tag is reproducible from the version and commit; layer timestamps are the commit's
time (``SOURCE_DATE_EPOCH``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UID = 10001
SITE = "opt/changeover/site-packages"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Debian packages the image needs at run time, beyond minbase.
PACKAGES = ("python3", "ca-certificates")
# Left out of the image: documentation, manuals, locales, package lists and caches.
PRUNE = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/cache/debconf/templates.dat-old",
    "var/lib/apt/lists",
    "var/log",
)
ENTRYPOINT = """#!/usr/bin/python3 -sE
import sys
sys.path.insert(0, "/{site}")
from changeover.{module} import {func}
sys.exit({func}())
"""


class BuildError(Exception):
    """A step of the build failed; the message says which and why."""


def run(argv: list[str], **kw: object) -> str:
    """Run ``argv`` (never a shell string); return stdout, or raise naming the command."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise BuildError(
            f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n" + "\n".join(tail)
        )
    return str(proc.stdout)


def version() -> str:
    ns: dict[str, str] = {}
    text = (ROOT / "changeover" / "__init__.py").read_text()
    for line in text.splitlines():
        if line.startswith("__version__"):
            ns["v"] = line.split("=", 1)[1].strip().strip("\"'")
    if "v" not in ns:
        raise BuildError("changeover/__init__.py: no __version__ line")
    return ns["v"]


def commit() -> tuple[str, int]:
    """The short commit (``-dirty`` if the tree has changes) and its commit time."""
    short = run(["git", "-C", str(ROOT), "rev-parse", "--short=8", "HEAD"]).strip()
    epoch = int(run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"]).strip())
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return (short + "-dirty" if dirty.strip() else short), epoch


def base_rootfs(cache: Path) -> Path:
    """A tarball of the minimal Debian tree, built once per package list and suite."""
    key = hashlib.sha256(f"{SUITE} {MIRROR} {PACKAGES}".encode()).hexdigest()[:12]
    tarball = cache / f"rootfs-{SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed (make image installs it with apt-get)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tree = Path(tmp) / "rootfs"
        print(f"[image] debootstrap {SUITE} (once; cached in {cache})", flush=True)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(tree),
                MIRROR,
            ]
        )
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", str(tree), "--numeric-owner", "-cf", str(partial), "."])
        partial.rename(tarball)
    return tarball


def wheels(dest: Path) -> None:
    """changeover's wheel and its runtime dependencies' wheels (no dev extras)."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "--wheel-dir", str(dest), str(ROOT)])
    with (ROOT / "pyproject.toml").open("rb") as f:
        requirements = tomllib.load(f)["project"]["dependencies"]
    run([*pip, "wheel", "--only-binary=:all:", "--wheel-dir", str(dest), *requirements])


def install(tree: Path, wheelhouse: Path) -> None:
    site = tree / SITE
    site.mkdir(parents=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "-q",
            "install",
            "--no-index",
            "--no-compile",
            "--find-links",
            str(wheelhouse),
            "--target",
            str(site),
            "changeover",
        ]
    )
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts naming the host's python
    compiled = ROOT / "changeover" / "traffic" / "builtin"
    target = site / "changeover" / "traffic" / "builtin"
    # The mypyc build runs only with the digest of exactly these sources (compiled.py).
    for path in [*compiled.glob("*.so"), compiled / "fast__mypyc.sources"]:
        if path.exists():
            shutil.copy2(path, target / path.name)
    for name, module, func in (
        ("changeover", "cli.main", "run"),
        ("kubectl-changeover", "cli.kubectl_plugin", "run"),
    ):
        script = tree / "usr" / "local" / "bin" / name
        script.write_text(ENTRYPOINT.format(site=SITE, module=module, func=func))
        script.chmod(0o755)


def add_user(tree: Path) -> None:
    with (tree / "etc" / "passwd").open("a") as f:
        f.write(f"changeover:x:{UID}:{UID}:changeover:/home/changeover:/usr/sbin/nologin\n")
    with (tree / "etc" / "group").open("a") as f:
        f.write(f"changeover:x:{UID}:\n")
    home = tree / "home" / "changeover"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, UID, UID)
    home.chmod(0o700)


def prune(tree: Path) -> None:
    for rel in PRUNE:
        path = tree / rel
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir(mode=0o755)
    for cache in tree.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    # Byte-compiled by the image's own python, so the first start does not write .pyc files.
    run(["chroot", str(tree), "/usr/bin/python3", "-m", "compileall", "-q", "-j", "0", "/" + SITE])


def du(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def report(tree: Path, archive: Path, tag: str) -> str:
    site = tree / SITE
    dists = sorted(p.name.removesuffix(".dist-info") for p in site.glob("*.dist-info"))
    biggest = sorted(((du(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)
    tools = [t for t in ("gcc", "cc", "make", "pip", "pip3") if _on_path(tree, t)]
    lines = [
        f"image           changeover:{tag}",
        f"archive         {archive} ({archive.stat().st_size / 2**20:.1f} MiB)",
        f"root filesystem {du(tree) / 2**20:.1f} MiB",
        f"python packages {du(site) / 2**20:.1f} MiB in /{SITE}",
        "largest:         "
        + ", ".join(f"{name} {size / 2**20:.1f} MiB" for size, name in biggest[:6]),
        f"user            changeover ({UID}:{UID})",
        f"build tools     {', '.join(tools) if tools else 'none'} on PATH",
        "distributions   " + ", ".join(dists),
    ]
    return "\n".join(lines) + "\n"


def _on_path(tree: Path, tool: str) -> bool:
    return any((tree / d / tool).exists() for d in ("usr/bin", "usr/local/bin", "bin", "sbin"))


def buildah(tree: Path, tag: str, epoch: int, ver: str, rev: str, archive: Path) -> None:
    if shutil.which("buildah") is None:
        raise BuildError("buildah is not installed (make image installs it with apt-get)")
    store = ["--storage-driver", "vfs"]
    ctr = run(["buildah", *store, "from", "--name", f"changeover-build-{os.getpid()}", "scratch"])
    ctr = ctr.strip()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            layer = Path(tmp) / "rootfs.tar"
            run(["tar", "-C", str(tree), "--numeric-owner", "-cf", str(layer), "."])
            run(["buildah", *store, "add", ctr, str(layer), "/"])
        labels = {
            "org.opencontainers.image.title": "changeover",
            "org.opencontainers.image.description": "Progressive delivery operator and CLI",
            "org.opencontainers.image.version": ver,
            "org.opencontainers.image.revision": rev,
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.source": "https://github.com/changeover/changeover",
        }
        config = ["buildah", *store, "config"]
        for key, value in labels.items():
            config += ["--label", f"{key}={value}"]
        config += [
            "--entrypoint",
            json.dumps(["/usr/local/bin/changeover"]),
            "--cmd",
            json.dumps(["serve", "--platform", "kubernetes"]),
            "--user",
            f"{UID}:{UID}",
            "--workingdir",
            "/home/changeover",
            "--env",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "--env",
            "HOME=/home/changeover",
            "--env",
            "PYTHONUNBUFFERED=1",
            "--port",
            "8080",
            ctr,
        ]
        run(config)
        image = f"localhost/changeover:{tag}"
        run(["buildah", *store, "commit", "--timestamp", str(epoch), "--rm", ctr, image])
        ctr = ""
        archive.unlink(missing_ok=True)
        run(["buildah", *store, "push", image, f"oci-archive:{archive}:changeover:{tag}"])
        _forget_older(store, image)
    finally:
        if ctr:
            subprocess.run(["buildah", *store, "rm", ctr], capture_output=True, check=False)


def _forget_older(store: list[str], keep: str) -> None:
    """Drop earlier builds' images from buildah's store (each is a full copy with vfs)."""
    listed = run(["buildah", *store, "images", "--format", "{{.Name}}:{{.Tag}}"])
    for ref in listed.split():
        if ref.startswith("localhost/changeover:") and ref != keep:
            subprocess.run(["buildah", *store, "rmi", ref], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist"))
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "changeover-image"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("make image: needs root (debootstrap, chroot, buildah)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        ver = version()
        rev, epoch = commit()
        tag = f"{ver}-g{rev}"
        base = base_rootfs(Path(args.cache))
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            tree = Path(tmp) / "rootfs"
            tree.mkdir()
            with tarfile.open(base) as tf:
                tf.extractall(tree, filter="fully_trusted")
            wheelhouse = Path(tmp) / "wheels"
            print("[image] wheels: changeover and its runtime dependencies", flush=True)
            wheels(wheelhouse)
            install(tree, wheelhouse)
            add_user(tree)
            prune(tree)
            archive = out / f"changeover-{tag}.oci.tar"
            print(f"[image] buildah: changeover:{tag}", flush=True)
            buildah(tree, tag, epoch, ver, rev, archive)
            text = report(tree, archive, tag)
        (out / f"changeover-{tag}.report.txt").write_text(text)
        (out / "image-latest.txt").write_text(f"{archive.name}\n")
        print(text, end="")
        return 0
    except BuildError as exc:
        print(f"make image: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
