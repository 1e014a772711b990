"""``kubectl changeover ...``: the kubectl plugin (the ``kubectl-changeover`` executable).

kubectl runs ``kubectl-changeover`` from PATH with the words after ``changeover``. The plugin
speaks kubectl's dialect, as Argo Rollouts' plugin does, and runs the same commands as
``changeover --platform kubernetes``:

    kubectl changeover get rollout NAME [-w]     kubectl changeover list rollouts
    kubectl changeover promote NAME [--full]     kubectl changeover abort NAME
    kubectl changeover retry rollout NAME        kubectl changeover pause|resume NAME
    kubectl changeover undo NAME [--to-revision N]
    kubectl changeover status|history|delete NAME     kubectl changeover apply -f FILE
    kubectl changeover dashboard [--port 3101]   kubectl changeover version
    kubectl changeover promote|abort|pause|resume|retry|status flag NAME  (or flag/NAME)
    kubectl changeover history flag NAME      kubectl changeover undo flag NAME [--to-revision N]
    kubectl changeover get flags

kubectl's own ``--kubeconfig``, ``--context`` and ``-n/--namespace`` work anywhere on the
line (kubectl passes plugin flags through; ``$KUBECONFIG`` as usual). Resource words
(``rollout``, ``rollouts``, ``ro``) are accepted where kubectl users type them.
"""

from __future__ import annotations

import os
import sys

from changeover import __version__

_KINDS = {"rollout", "rollouts", "ro", "rollout.changeover.dev", "rollouts.changeover.dev"}
_FLAG_KINDS = {"flag", "flags", "flag.changeover.dev", "flags.changeover.dev"}
_VERBS = {
    "get",
    "list",
    "promote",
    "abort",
    "retry",
    "pause",
    "resume",
    "undo",
    "status",
    "history",
    "delete",
    "apply",
    "dashboard",
}
_GLOBAL = {"--kubeconfig": "kubeconfig", "--context": "context", "-n": "namespace"}
_GLOBAL["--namespace"] = "namespace"


class PluginUsageError(Exception):
    """The command line is not one the plugin knows; the message says what is expected."""


def _take_globals(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """kubectl's connection flags, wherever they are, and the words left."""
    found: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        flag, eq, value = word.partition("=")
        if flag in _GLOBAL:
            if not eq:
                if i + 1 >= len(args):
                    raise PluginUsageError(f"{flag} needs a value")
                value = args[i + 1]
                i += 1
            found[_GLOBAL[flag]] = value
        else:
            rest.append(word)
        i += 1
    return found, rest


def translate(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The ``changeover`` command line for a plugin command line, and the environment it
    needs (the kubeconfig context).

    >>> translate(["get", "rollout", "web", "-w", "-n", "apps"])[0]
    ['get', 'web', '-w', '--platform', 'kubernetes', '--namespace', 'apps']
    >>> translate(["dashboard", "--port", "0", "-n", "apps"])[0]
    ['dashboard', '--port', '0', '--platform', 'kubernetes', '--namespace', 'apps']
    >>> translate(["promote", "flag", "checkout", "-n", "shop"])[0]
    ['promote', 'flag/checkout', '--platform', 'kubernetes', '--namespace', 'shop']
    >>> translate(["--context=prod", "retry", "rollout", "web"])
    (['retry', 'web', '--platform', 'kubernetes'], {'CHANGEOVER_KUBE_CONTEXT': 'prod'})
    """
    found, rest = _take_globals(args)
    if not rest or rest[0] in ("help", "-h", "--help"):
        raise PluginUsageError(__doc__.split("\n\n")[1].strip() if __doc__ else "")
    verb, words = rest[0], rest[1:]
    if verb == "version":
        return ["--version"], {}
    if verb not in _VERBS:
        raise PluginUsageError(f"unknown command {verb!r}; expected one of {sorted(_VERBS)}")
    if words and words[0].lower() in _KINDS:
        words = words[1:]
    elif words and words[0].lower() in _FLAG_KINDS:
        # ``promote flag checkout`` is ``promote flag/checkout``; ``get flags`` lists them.
        named = len(words) > 1 and not words[1].startswith("-")
        words = [f"flag/{words[1]}", *words[2:]] if named else ["flags", *words[1:]]
    if verb == "list":
        verb = "get"
    argv = [verb, *words, "--platform", "kubernetes"]
    if "kubeconfig" in found:
        argv += ["--kubeconfig", found["kubeconfig"]]
    if "namespace" in found:
        argv += ["--namespace", found["namespace"]]
    env = {"CHANGEOVER_KUBE_CONTEXT": found["context"]} if "context" in found else {}
    return argv, env


def run() -> None:
    """The ``kubectl-changeover`` entry point."""
    try:
        argv, env = translate(sys.argv[1:])
    except PluginUsageError as exc:
        print(f"kubectl changeover: {exc}", file=sys.stderr)
        sys.exit(2)
    if argv == ["--version"]:
        print(f"kubectl-changeover {__version__}")
        return
    os.environ.update(env)
    sys.argv = ["kubectl changeover", *argv]
    from changeover.cli import main

    main.run()
