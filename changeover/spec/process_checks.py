"""What the OS refuses in a process's argv, environment and working directory, found at
``lint``/``apply`` instead of when the replica (or hook, or job) is started.

``execve`` takes C strings, so a NUL anywhere cannot be passed, and an environment entry is
``NAME=value``, so a name with ``=`` (or an empty one) cannot be one. Started anyway, such a
process fails inside ``subprocess`` with a ``ValueError`` that no user sees: the replica
is simply never started. These checks name the field instead::

    >>> for path, why in problems("spec.template", ["app", "a\\x00b"], {"A=B": "1"}, None):
    ...     print(f"{path}: {why}")
    spec.template.command[1]: contains a NUL character, which no process argument can hold
    spec.template.env["A=B"]: a variable name cannot contain '='

Who calls it: ``spec.rules`` (process templates, recreate hooks, and the containers of
a pod template, which the API server would store and the kubelet then fail to start) and
the ``job`` metric provider's ``problems``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from changeover.spec import messages

Problem = tuple[str, str]  # (field path, what is wrong)


def problems(
    root: str, command: Sequence[object], env: Mapping[Any, object], working_dir: object
) -> list[Problem]:
    """Every field under ``root`` (``command``, ``env``, ``workingDir``) a process cannot
    carry."""
    out: list[Problem] = []
    parts = tuple(part for part in root.split(".") if part)
    for i, arg in enumerate(command):
        if "\0" in str(arg):
            out.append((f"{root}.command[{i}]", _NUL.format("process argument")))
    if command and not str(command[0]).strip():
        out.append((f"{root}.command[0]", "expected a program to run, got an empty string"))
    for name, value in env.items():
        key = str(name)
        path = messages.render_path((*parts, "env", key))
        if not key:
            out.append((f"{root}.env", "a variable name cannot be empty"))
        elif "=" in key:
            out.append((path, "a variable name cannot contain '='"))
        elif "\0" in key:
            out.append((path, _NUL.format("variable name")))
        if "\0" in str(value):
            out.append((path, _NUL.format("environment value")))
    if isinstance(working_dir, str) and "\0" in working_dir:
        out.append((f"{root}.workingDir", _NUL.format("path")))
    return out


_NUL = "contains a NUL character, which no {} can hold"


def container_problems(root: str, pod_spec: Mapping[str, Any]) -> list[Problem]:
    """``problems`` for each container of a pod spec (``command`` + ``args``, the ``env``
    list of ``{name, value}``, ``workingDir``); shapes the API server checks are skipped."""
    out: list[Problem] = []
    containers = pod_spec.get("containers")
    for i, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, Mapping):
            continue
        at = f"{root}.containers[{i}]"
        for key in ("command", "args"):
            items = container.get(key)
            for j, arg in enumerate(items if isinstance(items, list) else []):
                if "\0" in str(arg):
                    out.append((f"{at}.{key}[{j}]", _NUL.format("process argument")))
        env = container.get("env")
        for j, entry in enumerate(env if isinstance(env, list) else []):
            if not isinstance(entry, Mapping):
                continue
            name, value = str(entry.get("name", "")), entry.get("value")
            if "=" in name or "\0" in name:
                out.append((f"{at}.env[{j}].name", "a variable name cannot contain '=' or NUL"))
            if isinstance(value, str) and "\0" in value:
                out.append((f"{at}.env[{j}].value", _NUL.format("environment value")))
        working_dir = container.get("workingDir")
        if isinstance(working_dir, str) and "\0" in working_dir:
            out.append((f"{at}.workingDir", _NUL.format("path")))
    return out
