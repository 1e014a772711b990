"""Is an import's output valid? The checks of ``changeover lint``, on converted documents.

``import_path`` calls ``problems`` once per source file with what that file became (and
every converted document, so an AnalysisTemplate from another file of the same import
counts as known). Errors come back naming the *source* file and the field's path in the
converted document, which is the source's path wherever the field kept its name::

    argo/template.yaml: metadata.name: expected a name of lowercase letters ... got 'REPLACEME'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from changeover import errors, validation
from changeover.spec import load

JSON = dict[str, Any]


def problems(
    documents: Sequence[JSON], source: str, *, others: Sequence[JSON] = ()
) -> list[errors.SpecProblem]:
    """The errors (not warnings) `changeover lint` reports for ``documents``."""
    names = {_template_name(d) for d in documents}
    borrowed: dict[str, JSON] = {}
    for doc in others:
        name = _template_name(doc)
        if name is not None and name not in names:
            borrowed.setdefault(name, doc)
    mine = [load.LoadedDocument(source=source, index=i, data=d) for i, d in enumerate(documents)]
    extra = [
        load.LoadedDocument(source="(another imported file)", index=i, data=d)
        for i, d in enumerate(borrowed.values())
    ]
    try:
        found = validation.check_documents([*mine, *extra])[1]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # A shape the checks themselves trip on: still an answer naming the file.
        return [
            errors.SpecProblem(
                file=source, path="", message=f"the converted documents cannot be checked: {exc}"
            )
        ]
    return [
        dataclasses.replace(p, file=source)
        for p in found
        if p.severity != "warning" and p.file != "(another imported file)"
    ]


def _template_name(doc: JSON) -> str | None:
    if doc.get("kind") != "AnalysisTemplate":
        return None
    return str((doc.get("metadata") or {}).get("name"))
