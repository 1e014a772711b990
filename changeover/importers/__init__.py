"""Importers: Argo Rollouts (``Rollout``, ``AnalysisTemplate``) and Flagger (``Canary``,
``MetricTemplate``) manifests, and flagd flag definitions, into changeover documents, with a
``Note`` for every field not carried over.

    result = import_path("argo/")          # files, a directory, or "-" for stdin
    result.documents                       # changeover Rollouts and AnalysisTemplates
    result.notes                           # one Note per field not carried over
    result.problems                        # what `changeover lint` says of the output

``import_path`` checks what it wrote the way ``changeover lint`` does, per source file; a
file whose conversion would not pass (or that changeover cannot run at all: no targetRef,
a name Kubernetes refuses, YAML that does not parse) makes ``import_path`` raise
``SpecError`` naming that file and field, so nothing half-converted reaches the user.

``convert(docs, source)`` converts parsed documents without that check: documents that are
already changeover's pass through, Deployments named by a Flagger ``targetRef`` or an Argo
``workloadRef`` lend their pod template, Flagger MetricTemplates are written into the
Canaries that use them, anything else is reported and skipped. The operator uses
``convert`` to read an Argo Rollout directly.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from changeover import errors
from changeover.importers import argo, check, flagd, flagger
from changeover.importers.report import Note, Notes, Result
from changeover.spec import load

JSON = dict[str, Any]
_HELPERS = {"Deployment", "MetricTemplate"}


def _kind(doc: JSON) -> str:
    return str(doc.get("kind"))


def convert(docs: Sequence[JSON], source: str = "", *, context: Sequence[JSON] = ()) -> Result:
    """Convert ``docs``; ``context`` holds more documents (other files') that only lend
    Deployments and MetricTemplates."""
    result = Result()
    docs, context = unlisted(docs), unlisted(context)
    pool = [d for d in [*docs, *context] if isinstance(d, dict)]
    deployments = {_name(d): d for d in pool if _kind(d) == "Deployment"}
    templates = {
        _name(d): d
        for d in pool
        if _kind(d) == "MetricTemplate" and str(d.get("apiVersion")).startswith("flagger.app/")
    }
    for doc in docs:
        if not isinstance(doc, dict):
            raise errors.SpecError.single(
                file=source, path="", message="expected a YAML mapping (a Kubernetes object)"
            )
        result.extend(_one(doc, source, deployments, templates))
    _unused(docs, result, source)
    return result


def unlisted(docs: Sequence[Any]) -> list[Any]:
    """``docs`` with every ``kind: List`` (what ``kubectl get rollouts -o yaml`` prints, or
    a ``RolloutList``) replaced by its items."""
    out: list[Any] = []
    for doc in docs:
        items = doc.get("items") if isinstance(doc, dict) else None
        if isinstance(items, list) and _kind(doc).endswith("List"):
            out += unlisted(items)
        else:
            out.append(doc)
    return out


def _name(doc: JSON) -> str:
    return str(_map(doc, "metadata").get("name"))


def _map(doc: Any, key: str) -> JSON:
    """``doc[key]`` when both are mappings, else ``{}`` (odd shapes are judged later)."""
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def _one(
    doc: JSON, source: str, deployments: dict[str, JSON], templates: dict[str, JSON]
) -> Result:
    try:
        return _convert_one(doc, source, deployments, templates)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # A manifest shaped unlike anything the converters know (a mapping where a list
        # belongs, a null step): an error naming the file and document, not a traceback.
        raise errors.SpecError.single(
            file=source,
            path=f"{_kind(doc)}/{_name(doc)}",
            message=f"cannot be read as {doc.get('apiVersion')} {_kind(doc)}: a field has an "
            f"unexpected shape ({type(exc).__name__}: {exc}); check it with the tool's own "
            "validation (kubectl apply --dry-run=server) first",
        ) from exc


def _convert_one(
    doc: JSON, source: str, deployments: dict[str, JSON], templates: dict[str, JSON]
) -> Result:
    api, kind = str(doc.get("apiVersion", "")), _kind(doc)
    if api.startswith("argoproj.io/") and kind == "Rollout":
        return argo.rollout(doc, source, deployments)
    if api.startswith("argoproj.io/") and kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
        return argo.analysis_template(doc, source)
    if api.startswith("flagger.app/") and kind == "Canary":
        return flagger.canary(doc, source, deployments, templates)
    if api.startswith("changeover.dev/"):
        return Result(documents=[doc])
    if flagd.is_flagd(doc):
        return flagd.flag_definitions(doc, source)
    if kind in _HELPERS:
        return Result()
    notes = Notes(source)
    # An Argo or Flagger resource that is not converted is lost (an Experiment, an
    # AnalysisRun); a Service, Ingress or Secret beside the rollout is the user's own and
    # stays as it is (the rollout refers to it by name): apply it as before.
    ours_to_convert = api.startswith(("argoproj.io/", "flagger.app/"))
    notes.drop(
        f"{kind}/{_name(doc)}",
        f"{api} {kind} is not a rollout: left out"
        + ("" if ours_to_convert else " (apply it as it is)"),
        loss=ours_to_convert,
    )
    return Result(notes=notes.items)


def _unused(docs: Sequence[JSON], result: Result, source: str) -> None:
    """A Deployment or MetricTemplate in the file that nothing imported used."""
    used = set()
    for doc in docs:
        spec = _map(doc, "spec")
        used.add(("Deployment", str(_map(spec, "targetRef").get("name"))))
        used.add(("Deployment", str(_map(spec, "workloadRef").get("name"))))
        metrics = _map(spec, "analysis").get("metrics")
        for metric in metrics if isinstance(metrics, list) else []:
            used.add(
                ("MetricTemplate", str(_map(_map({"m": metric}, "m"), "templateRef").get("name")))
            )
    for doc in docs:
        if (
            isinstance(doc, dict)
            and _kind(doc) in _HELPERS
            and (_kind(doc), _name(doc)) not in used
        ):
            result.notes.append(
                Note(source, f"{_kind(doc)}/{_name(doc)}", "nothing imported uses it: left out")
            )


def import_path(path: str) -> Result:
    """Convert a file, every ``*.yaml``/``*.yml``/``*.json`` of a directory, or stdin
    (``-``), and check the output; SpecError (every problem, by source file) if any file
    cannot be imported."""
    if path == "-":
        files = [("<stdin>", sys.stdin.read())]
    else:
        p = Path(path)
        found = (
            sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json"))
            if p.is_dir()
            else [p]
        )
        files = [(str(f), _read(f)) for f in found]
    parsed: list[tuple[str, list[JSON]]] = []
    problems: list[errors.SpecProblem] = []
    for source, text in files:
        try:
            parsed.append((source, [d.data for d in load.load_text(text, source=source)]))
        except errors.SpecError as exc:
            problems += exc.problems
    everything = [doc for _, docs in parsed for doc in docs]
    result = Result()
    per_file: list[tuple[str, Result]] = []
    for source, docs in parsed:
        try:
            part = convert(docs, source, context=everything)
        except errors.SpecError as exc:
            problems += exc.problems
            continue
        per_file.append((source, part))
        result.extend(part)
    for source, part in per_file:
        wrong = check.problems(part.documents, source, others=result.documents)
        if wrong:
            # Refused: say what was left out too, since that is often why.
            wrong += [
                errors.SpecProblem(
                    file=n.source, path=n.path, message=f"{n.kind}: {n.message}", severity="warning"
                )
                for n in part.notes
                if n.kind == "dropped"
            ]
        problems += wrong
    if not problems and files and not result.documents:
        kinds = sorted(
            {_kind(d) for _, docs in parsed for d in unlisted(docs) if isinstance(d, dict)}
        ) or ["none"]
        problems.append(
            errors.SpecProblem(
                file=path,
                path="",
                message="nothing to import: expected an Argo Rollouts Rollout or "
                "AnalysisTemplate, a Flagger Canary, or flagd flag definitions (kinds found: "
                + ", ".join(kinds)
                + ")",
            )
        )
    if problems:
        raise errors.SpecError(problems)
    return result


def _read(f: Path) -> str:
    try:
        return f.read_text()
    except OSError as exc:
        raise errors.SpecError.single(file=str(f), path="", message=f"cannot read: {exc}") from exc


__all__ = ["Note", "Result", "convert", "import_path"]
