"""Manifests nobody has shown us will have fields in shapes the converters do not expect
(a null where a mapping belongs, a string for a list). Whatever the shape, `changeover
import` either converts or refuses with a SpecError naming the file: never a traceback.
Each real fixture is bent at every field of its Rollout/Canary spec, one at a time."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from changeover import errors, importers
from changeover.importers import check

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
SOURCES = [p for p in sorted(FIXTURES.rglob("*.yaml")) if "linkerd" not in p.name]
ODD: tuple[Any, ...] = (None, "x", [], {}, -1)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(value, dict):
        out += [p for k, v in value.items() for p in _paths(v, (*path, k))]
    elif isinstance(value, list):
        out += [p for i, v in enumerate(value) for p in _paths(v, (*path, i))]
    return out


def _bent(doc: Any, path: tuple[Any, ...], odd: Any) -> Any:
    doc = copy.deepcopy(doc)
    at = doc
    for key in path[:-1]:
        at = at[key]
    at[path[-1]] = odd
    return doc


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_any_shape_converts_or_is_refused_by_file(source: Path) -> None:
    docs = [d for d in yaml.safe_load_all(source.read_text()) if d]
    for i, doc in enumerate(docs):
        if doc.get("kind") not in ("Rollout", "Canary", "AnalysisTemplate", "MetricTemplate"):
            continue
        for path in _paths(doc.get("spec"), ("spec",)):
            for odd in ODD:
                bent = [*docs[:i], _bent(doc, path, odd), *docs[i + 1 :]]
                try:
                    result = importers.convert(bent, str(source))
                    check.problems(result.documents, str(source))
                except errors.SpecError as exc:
                    assert all(p.file == str(source) for p in exc.problems), exc
