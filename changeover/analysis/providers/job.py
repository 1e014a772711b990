"""The ``job`` metric provider: run a command; its exit code is the verdict.

Argo Rollouts runs a Kubernetes Job, and so does the operator on Kubernetes
(``operator.analysis_job``, which replaces this provider there); on the local platform the
job is a process (an argv list, never a shell string), in its own process group::

    provider:
      job:
        command: [python3, tests/smoke.py, --url, "http://127.0.0.1:8080"]
        env: {TARGET: canary}
        workingDir: /srv/app
        timeoutSeconds: 300     # default 300; a job that runs longer is killed: Failed

Argo Rollouts' own shape, a Kubernetes Job, is read too: the first container's ``command``
plus ``args`` is the argv, its ``env`` list the environment and ``activeDeadlineSeconds``
the timeout (the image is not used: the job runs here, beside the replicas)::

    job:
      spec:
        backoffLimit: 1
        activeDeadlineSeconds: 120
        template:
          spec:
            containers:
              - {name: smoke, image: curlimages/curl, command: [curl, -fsS], args: [http://...]}

Exit code 0 → Successful, anything else → Failed; ``result`` is the exit code and the
message the end of the job's output. A command that cannot start (no such file) is an
Error. When the run is stopped the measurement's task is cancelled and the whole process
group is killed (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from typing import Any

from changeover import childenv, statedir
from changeover.analysis.providers import base
from changeover.spec import process_checks

DEFAULT_TIMEOUT = 300.0
GRACE_SECONDS = 2.0
_OUTPUT_KEPT = 4096
_KEYS = ("command", "env", "workingDir", "timeoutSeconds")


def from_kubernetes_job(config: Mapping[str, Any]) -> dict[str, Any]:
    """Argo's ``job: {spec: {template: {spec: {containers: [...]}}}}`` as our config;
    ValueError when it has no container with a command."""
    try:
        job_spec = config["spec"]
        containers = job_spec["template"]["spec"]["containers"]
        container = containers[0]
        if not isinstance(container, dict):
            raise TypeError
    except (KeyError, IndexError, TypeError):
        raise ValueError(
            "expected command: [...] or a Kubernetes Job (spec.template.spec.containers)"
        ) from None
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if not argv:
        raise ValueError("the Job's container has no command or args to run here")
    env = {
        str(e["name"]): str(e.get("value", ""))
        for e in container.get("env") or []
        if isinstance(e, dict) and "name" in e
    }
    out: dict[str, Any] = {"command": argv, "env": env}
    if container.get("workingDir"):
        out["workingDir"] = container["workingDir"]
    if job_spec.get("activeDeadlineSeconds"):
        out["timeoutSeconds"] = job_spec["activeDeadlineSeconds"]
    return out


def problems(config: Mapping[str, Any]) -> list[str]:
    if "spec" in config and "command" not in config:
        try:
            config = from_kubernetes_job(config)
        except ValueError as exc:
            return [str(exc)]
    out = [
        f"unknown field {key!r}; expected one of {', '.join(_KEYS)}"
        for key in config
        if key not in _KEYS
    ]
    command = config.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str | int | float) for a in command)
    ):
        out.append("command: expected an argv list such as [python3, smoke.py]")
    env = config.get("env", {})
    if not isinstance(env, Mapping):
        out.append("env: expected a mapping of NAME: value")
    elif isinstance(command, list):
        where = process_checks.problems("", command, env, config.get("workingDir"))
        out += [f"{path.lstrip('.')}: {message}" for path, message in where]
    timeout = config.get("timeoutSeconds", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        out.append(f"timeoutSeconds: expected a positive number, got {timeout!r}")
    return out


async def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the job's process group, SIGKILL it if it lingers; then drain its pipe so the
    transport closes now, not when the event loop is gone."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), wait)
    # The group may still hold the pipe (a grandchild that ignored SIGTERM): kill it too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError, OSError, ValueError):
        await asyncio.wait_for(process.communicate(), 5.0)


class JobProvider:
    name = "job"

    async def measure(
        self,
        config: Mapping[str, Any],
        *,
        args: Mapping[str, str],
        context: base.MeasureContext,
    ) -> base.ProviderResult:
        found = problems(config)
        if found:
            raise base.ProviderError(f"provider.job: {found[0]}")
        if "spec" in config and "command" not in config:
            config = from_kubernetes_job(config)
        argv = [str(a) for a in config["command"]]
        env = {**childenv.base(), **{str(k): str(v) for k, v in config.get("env", {}).items()}}
        env.setdefault("ROLLOUT", context.rollout)
        if context.canary_revision is not None:
            env.setdefault("CANARY_REVISION", str(context.canary_revision))
        if context.stable_revision is not None:
            env.setdefault("STABLE_REVISION", str(context.stable_revision))
        timeout = float(config.get("timeoutSeconds", DEFAULT_TIMEOUT))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=config.get("workingDir"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                umask=statedir.child_umask(),
            )
        except OSError as exc:
            raise base.ProviderError(
                f"job {argv[0]}: cannot start: {exc.strerror or exc}"
            ) from None
        try:
            output, timed_out = await _collect(process, timeout)
        except asyncio.CancelledError:
            await _kill(process)
            raise
        tail = output[-_OUTPUT_KEPT:].decode(errors="replace").strip()
        last = tail.splitlines()[-1] if tail else ""
        if timed_out:
            return base.ProviderResult(
                value=None,
                phase="Failed",
                message=f"job {argv[0]} timed out after {timeout:g}s"
                + (f": {last}" if last else ""),
            )
        code = process.returncode if process.returncode is not None else -1
        phase: base.MeasurementPhase = "Successful" if code == 0 else "Failed"
        why = f"job {argv[0]} exited with {code}" + (f": {last}" if last else "")
        return base.ProviderResult(value=code, phase=phase, message=why)


async def _collect(process: asyncio.subprocess.Process, seconds: float) -> tuple[bytes, bool]:
    """The job's output (its end, bounded) and whether it had to be killed for time."""
    kept = bytearray()

    async def read() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            kept.extend(chunk)
            del kept[: max(0, len(kept) - 4 * _OUTPUT_KEPT)]
        await process.wait()

    try:
        await asyncio.wait_for(read(), seconds)
    except TimeoutError:
        await _kill(process)
        return bytes(kept), True
    return bytes(kept), False


base.register("job", JobProvider, problems=problems)
