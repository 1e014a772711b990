"""Importers: Argo Rollouts (``Rollout``, ``AnalysisTemplate``) and Flagger (``Canary``)
manifests into changeover documents, with a ``Note`` for every field not carried over.

    result = import_path("argo/")          # files, a directory, or "-" for stdin
    result.documents                       # changeover Rollouts and AnalysisTemplates
    result.notes                           # one Note per field not carried over

``convert(docs, source)`` does the same for parsed documents; documents that are already
changeover's pass through, Deployments named by a Flagger ``targetRef`` lend their pod
template, anything else is reported and skipped. The operator uses ``convert`` to read an
Argo Rollout directly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from changeover import errors
from changeover.spec.importers import argo, flagger
from changeover.spec.importers.report import Note, Notes, Result

JSON = dict[str, Any]


def convert(docs: list[JSON], source: str = "") -> Result:
    result = Result()
    deployments = {
        str(d.get("metadata", {}).get("name")): d
        for d in docs
        if isinstance(d, dict) and d.get("kind") == "Deployment"
    }
    used = set()
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        api, kind = str(doc.get("apiVersion", "")), doc.get("kind")
        if api.startswith("argoproj.io/") and kind == "Rollout":
            used.add(str((doc.get("spec") or {}).get("workloadRef", {}).get("name")))
            result.extend(argo.rollout(doc, source, deployments))
        elif api.startswith("argoproj.io/") and kind in (
            "AnalysisTemplate",
            "ClusterAnalysisTemplate",
        ):
            result.extend(argo.analysis_template(doc, source))
        elif api.startswith("flagger.app/") and kind == "Canary":
            used.add(str((doc.get("spec") or {}).get("targetRef", {}).get("name")))
            result.extend(flagger.canary(doc, source, deployments))
        elif api.startswith("changeover.dev/"):
            result.documents.append(doc)
        elif kind != "Deployment":
            name = (doc.get("metadata") or {}).get("name")
            notes = Notes(source)
            notes.drop(f"{kind}/{name}", f"{api} {kind} is not a rollout: left out")
            result.notes += notes.items
    for name in deployments:
        if name not in used:
            result.notes.append(
                Note(source, f"Deployment/{name}", "no Canary targets it: left out")
            )
    return result


def import_path(path: str) -> Result:
    result = Result()
    if path == "-":
        result.extend(convert(_parse(sys.stdin.read(), "<stdin>"), "<stdin>"))
        return result
    p = Path(path)
    files = (
        sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json"))
        if p.is_dir()
        else [p]
    )
    all_docs: list[tuple[JSON, str]] = []
    for f in files:
        try:
            text = f.read_text()
        except OSError as exc:
            raise errors.SpecError.single(
                file=str(f), path="", message=f"cannot read: {exc}"
            ) from exc
        all_docs += [(d, str(f)) for d in _parse(text, str(f))]
    # One pass over every document so a Canary finds its Deployment in another file.
    deployments = [d for d, _ in all_docs if isinstance(d, dict) and d.get("kind") == "Deployment"]
    for doc, source in all_docs:
        if isinstance(doc, dict) and doc.get("kind") == "Deployment":
            continue
        part = convert([doc, *deployments], source)
        part.notes = [n for n in part.notes if not n.path.startswith("Deployment/")]
        result.extend(part)
    return result


def _parse(text: str, source: str) -> list[JSON]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise errors.SpecError.single(file=source, path="", message=f"not YAML: {exc}") from exc


__all__ = ["Note", "Result", "convert", "import_path"]
