"""Commands that change things: ``apply`` (and ``--wait``), ``promote``, ``abort``,
``retry``, ``pause``, ``resume``, ``undo``, ``delete``.

``apply`` checks every file on the client first (so a typo is reported with its line,
without a server, and all files' problems at once), then sends each file's documents as
written; the server validates again and answers with what it did per rollout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from changeover import errors
from changeover.cli import app as app_mod
from changeover.cli import render, wait

app = app_mod.app
JSON = dict[str, Any]


def _load(paths: list[str]) -> tuple[list[tuple[str, list[JSON]]], list[errors.SpecProblem]]:
    """Documents grouped by file (in order), and the warnings; SpecError with every error
    of every path."""
    from changeover import validation
    from changeover.spec import load

    batches: dict[str, list[JSON]] = {}
    problems: list[errors.SpecProblem] = []
    warnings: list[errors.SpecProblem] = []
    for path in paths:
        try:
            if path == "-":
                # stdin can be read only once: check and load the same text.
                text = sys.stdin.read()
                warnings += validation.read_text(text, source="<stdin>").warnings
                docs = load.load_text(text, source="<stdin>")
            else:
                warnings += validation.read(path).warnings
                docs = load.load_path(path)
        except errors.SpecError as exc:
            problems += exc.problems
            continue
        for doc in docs:
            batches.setdefault(doc.source, []).append(doc.data)
    if problems:
        raise errors.SpecError(problems)
    # Each path is checked on its own: a template in another file of this apply is fine.
    templates = {
        str((d.get("metadata") or {}).get("name"))
        for docs in batches.values()
        for d in docs
        if d.get("kind") == "AnalysisTemplate"
    }
    warnings = [w for w in warnings if validation.absent_template(w) not in templates]
    return list(batches.items()), warnings


def _describe(status: JSON) -> str:
    step = render.step_text(status)
    where = f", step {step}" if step != "-" else ""
    message = f": {status['message']}" if status.get("message") else ""
    return f"{status.get('phase', 'Unknown')}{where}{message}"


@app.command()
def apply(
    files: Annotated[
        list[str],
        typer.Option("--filename", "-f", help="Spec file or directory (repeatable; - for stdin)."),
    ],
    wait_: Annotated[
        bool,
        typer.Option(
            "--wait", help="Block until a terminal phase: exit 0 Healthy, 1 Aborted/Degraded."
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to --wait before giving up (exit 1).")
    ] = 1800.0,
    output: app_mod.OutputOpt = app_mod.Output.TABLE,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    context: app_mod.ContextOpt = None,
) -> None:
    """Create or update rollouts from spec files."""
    batches, warnings = _load(files)
    for problem in warnings:
        app_mod.err_line(str(problem), style="yellow")
    results: list[JSON] = []
    # Files with AnalysisTemplates go first: the server checks that a rollout's templates
    # exist, whatever order the files were named in.
    batches.sort(key=lambda b: not any(d.get("kind") == "AnalysisTemplate" for d in b[1]))
    with app_mod.Where(server, token, platform, kubeconfig, namespace, context).backend() as client:
        for source, documents in batches:
            results += client.apply(documents, source=source)
        if output is app_mod.Output.TABLE:
            for r in results:
                if r.get("kind") == "AnalysisTemplate":
                    app_mod.say(f"analysistemplate/{r['name']} {r['action']}")
                elif r.get("kind") == "Flag":
                    app_mod.say(f"flag/{r['name']} {r['action']} (revision {r['revision']})")
                else:
                    app_mod.say(f"rollout/{r['name']} {r['action']} (revision {r['revision']})")
        if not wait_:
            if output is app_mod.Output.JSON:
                app_mod.print_json({"results": results})
            return
        waiters = [
            wait.Waiter(
                name=r["name"], revision=r.get("revision"), unchanged=r["action"] == "unchanged"
            )
            for r in results
            if r.get("kind", "Rollout") == "Rollout"
        ]
        wait.wait_all(client, waiters, timeout=timeout, on_change=_progress(output))
    failed = [w for w in waiters if w.last.get("phase") != "Healthy"]
    if output is app_mod.Output.JSON:
        app_mod.print_json({"results": results, "statuses": [w.last for w in waiters]})
    else:
        for w in waiters:
            style = "red" if w in failed else "green"
            app_mod.say(f"rollout/{w.name}: {_describe(w.last)}", style=style)
    if failed:
        raise typer.Exit(1)


def _progress(output: app_mod.Output) -> Callable[[wait.Waiter, JSON], None]:
    hinted: set[str] = set()

    def show(waiter: wait.Waiter, status: JSON) -> None:
        if wait.is_terminal(status):
            return  # the outcome gets its own final line; old news is not progress
        # Progress goes to stderr so -o json keeps stdout machine-readable.
        app_mod.err_line(f"rollout/{waiter.name}: {_describe(status)}", style="dim")
        paused = status.get("phase") == "Paused"
        if paused and waiter.name not in hinted and output is app_mod.Output.TABLE:
            hinted.add(waiter.name)
            app_mod.err_line(
                f"  waiting: `changeover promote {waiter.name}` continues, "
                f"`changeover abort {waiter.name}` rolls back",
                style="dim",
            )

    return show


def _run(verb: str, name: str, where: app_mod.Where, body: JSON | None = None) -> None:
    with where.backend() as client:
        status = client.command(name, verb, body)
    shown = name if name.startswith("flag/") else f"rollout/{name}"
    app_mod.say(f"{shown} {_PAST[verb]}: {_describe(status)}")


_PAST = {
    "promote": "promoted",
    "abort": "aborted",
    "retry": "retried",
    "pause": "paused",
    "resume": "resumed",
    "undo": "rolled back",
}


@app.command()
def promote(
    name: app_mod.NameArg,
    full: Annotated[
        bool, typer.Option("--full", help="Skip the remaining steps and analysis.")
    ] = False,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    context: app_mod.ContextOpt = None,
) -> None:
    """Continue past the current pause (or with --full, finish the rollout now)."""
    _run(
        "promote",
        name,
        app_mod.Where(server, token, platform, kubeconfig, namespace, context),
        {"full": full},
    )


def _register_state_change(verb: str, help_text: str) -> None:
    """Register ``changeover VERB NAME``: one state change of one rollout, no options of its
    own."""

    def command(
        name: app_mod.NameArg,
        server: app_mod.ServerOpt = None,
        token: app_mod.TokenOpt = None,
        platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
        kubeconfig: app_mod.KubeconfigOpt = None,
        namespace: app_mod.NamespaceOpt = None,
        context: app_mod.ContextOpt = None,
    ) -> None:
        _run(verb, name, app_mod.Where(server, token, platform, kubeconfig, namespace, context))

    command.__doc__ = help_text
    app.command(verb)(command)


# In this order after promote: the order `changeover --help` lists them.
_register_state_change("abort", "Send all traffic back to stable and scale the new revision down.")
_register_state_change("retry", "Start an aborted or degraded rollout again from its first step.")
_register_state_change("pause", "Hold the rollout where it is until resume or promote.")
_register_state_change("resume", "Continue a rollout paused by `changeover pause`.")


@app.command()
def undo(
    name: app_mod.NameArg,
    to_revision: Annotated[
        int | None,
        typer.Option(
            "--to-revision",
            min=1,
            help="Revision to go back to (default: the last one that was Healthy).",
        ),
    ] = None,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    context: app_mod.ContextOpt = None,
) -> None:
    """Roll forward to an earlier revision's template (see `changeover history`)."""
    _run(
        "undo",
        name,
        app_mod.Where(server, token, platform, kubeconfig, namespace, context),
        {"toRevision": to_revision},
    )


@app.command()
def delete(
    name: app_mod.NameArg,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    context: app_mod.ContextOpt = None,
) -> None:
    """Stop every replica of a rollout and forget it."""
    with app_mod.Where(server, token, platform, kubeconfig, namespace, context).backend() as client:
        client.delete(name)
    app_mod.say(f"{name if name.startswith('flag/') else f'rollout/{name}'} deleted")
