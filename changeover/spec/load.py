"""Reading spec YAML into models, with every problem reported at once in the user's words.

Two stages, both collecting instead of stopping at the first problem:

1. ``load_path`` / ``load_text`` turn files, directories (``*.yaml``/``*.yml``, sorted, like
   ``kubectl apply -f DIR``) or a string into ``LoadedDocument``\\ s: one per non-empty YAML
   document. Unreadable, binary or malformed input becomes a ``SpecError`` naming file, line
   and column.
2. ``parse_documents`` / ``parse_rollouts`` build ``models.Rollout``\\ s and translate
   pydantic's errors into plain expectations at camelCase field paths::

       rollouts.yaml#2: spec.strategy.canary.steps[2].setWeight: expected an integer from 0
       to 100, got 150 (line 14)

Who calls it: ``validation`` (``lint``, ``read``) and through it the CLI's ``apply`` and
``lint``; the controller's HTTP API calls ``load_text`` + ``parse_documents`` on a request
body. Cross-field rules live in ``spec.rules`` (port clashes) and ``validation`` (router
capabilities, metric providers).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from changeover import errors
from changeover.spec import flag as spec_flag
from changeover.spec import messages, models
from changeover.spec.document import LoadedDocument as LoadedDocument
from changeover.spec.document import Loc

# Kinds that share our apiVersion but are not rollouts: kept for the analysis layer.
OTHER_KINDS = ("AnalysisTemplate",)
KINDS = ("Rollout", "Flag", *OTHER_KINDS)

# Manifests of tools we will import (spec/import/) rather than apply directly.
_FOREIGN_API_GROUPS = {
    "argoproj.io": "an Argo Rollouts manifest",
    "flagger.app": "a Flagger manifest",
}

# A YAML alias bomb ("billion laughs") expands to more nodes than any real spec has; past
# this many we refuse the document instead of letting validation walk it for minutes.
_MAX_NODES = 100_000
# Deeper than any spec (the API refuses more than 64 levels in a request body already).
MAX_DEPTH = 48


@dataclass(frozen=True)
class Specs:
    """What a set of documents holds once parsed."""

    rollouts: list[models.Rollout]
    sources: list[str]  # label of each rollout's document, parallel to ``rollouts``
    other: list[LoadedDocument]  # AnalysisTemplate documents, kept for analysis
    warnings: list[errors.SpecProblem] = field(default_factory=list)
    flags: list[spec_flag.Flag] = field(default_factory=list)
    flag_sources: list[str] = field(default_factory=list)  # parallel to ``flags``


# --- stage 1: YAML ---------------------------------------------------------------------


def load_text(text: str, *, source: str = "<string>") -> list[LoadedDocument]:
    """The non-empty documents in ``text``; SpecError if it is not valid YAML mappings."""
    docs, problems = _not_empty(*_documents(text, source), source)
    if problems:
        raise errors.SpecError(problems)
    return docs


def load_path(path: str | os.PathLike[str]) -> list[LoadedDocument]:
    """The documents of a file, of every ``*.yaml``/``*.yml`` in a directory, or of stdin
    (``-``). Raises one SpecError carrying every problem of every file."""
    docs, problems = collect_path(path)
    if problems:
        raise errors.SpecError(problems)
    return docs


def collect_path(
    path: str | os.PathLike[str],
) -> tuple[list[LoadedDocument], list[errors.SpecProblem]]:
    """Like ``load_path`` but returns the problems beside whatever did load, so ``lint``
    can go on to report field problems of the good files in the same run."""
    name = os.fspath(path)
    if name == "-":
        return _not_empty(*_documents(sys.stdin.read(), "<stdin>"), "<stdin>")
    target = Path(name)
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            return [], [messages.problem(name, "no *.yaml or *.yml files in this directory")]
        docs: list[LoadedDocument] = []
        problems: list[errors.SpecProblem] = []
        # An empty file among others is skipped, as kubectl does; only an empty whole is wrong.
        for file in files:
            more, found = _file_documents(file)
            docs += more
            problems += found
        return _not_empty(docs, problems, name)
    return _not_empty(*_file_documents(target), name)


def _not_empty(
    docs: list[LoadedDocument], problems: list[errors.SpecProblem], source: str
) -> tuple[list[LoadedDocument], list[errors.SpecProblem]]:
    if not docs and not problems:
        problems = [
            messages.problem(source, "empty: expected a Rollout (apiVersion, kind, metadata, spec)")
        ]
    return docs, problems


def _file_documents(path: Path) -> tuple[list[LoadedDocument], list[errors.SpecProblem]]:
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], [messages.problem(source, "no such file or directory")]
    except PermissionError:
        return [], [messages.problem(source, "cannot read: permission denied")]
    except IsADirectoryError:
        return [], [messages.problem(source, "is a directory")]
    except OSError as exc:
        return [], [messages.problem(source, f"cannot read: {exc.strerror or exc}")]
    # NUL never occurs in YAML text; without this check a binary file surfaces as a
    # confusing "unacceptable character" from the YAML reader.
    if b"\x00" in raw:
        return [], [
            messages.problem(source, "not a text file (it contains NUL bytes); expected YAML")
        ]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [messages.problem(source, f"not UTF-8 text (bad byte at offset {exc.start})")]
    return _documents(text, source)


class _Loader(yaml.SafeLoader):
    """SafeLoader: plain data only, never Python objects from tags, and no integer longer
    than ``_MAX_INT_DIGITS`` (Python refuses past 4,300 digits; no spec needs 40)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value).replace("_", "")
        if sum(c.isdigit() for c in text) > _MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of more than {_MAX_INT_DIGITS} digits", node.start_mark
            )
        return super().construct_yaml_int(node)


_MAX_INT_DIGITS = 40
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _documents(text: str, source: str) -> tuple[list[LoadedDocument], list[errors.SpecProblem]]:
    found: list[tuple[int, Any, dict[Loc, int]]] = []
    problems: list[errors.SpecProblem] = []
    index = 0
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader already rejects control characters here
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                lines: dict[Loc, int] = {}
                problems += _walk(node, (), lines, source, index, set(), [0])
                found.append((index, loader.construct_document(node), lines))
            index += 1
    except yaml.MarkedYAMLError as exc:
        problems.append(_yaml_problem(source, exc))
    except yaml.YAMLError as exc:
        problems.append(messages.problem(source, f"malformed YAML: {exc}"))
    except RecursionError:
        problems.append(messages.problem(source, "malformed YAML: nested too deeply"))
    except ValueError as exc:  # a scalar no constructor could take
        problems.append(messages.problem(source, f"malformed YAML: {str(exc)[:200]}"))
    finally:
        if loader is not None:
            loader.dispose()

    non_empty = [(i, data, lines) for i, data, lines in found if data is not None]
    multi = len(non_empty) > 1 or index > 1
    docs: list[LoadedDocument] = []
    for i, data, lines in non_empty:
        doc = LoadedDocument(source=source, index=i, data={}, multi=multi, lines=lines)
        if isinstance(data, dict):
            docs.append(dataclasses.replace(doc, data=data))
        else:
            problems.append(
                messages.problem(
                    doc.label,
                    "expected a mapping with apiVersion, kind, metadata and spec, "
                    f"got {messages.show(data)}",
                    line=lines.get(()),
                )
            )
    # Duplicate-key problems were found before we knew whether the file is multi-document.
    return docs, [_relabel(p, source, multi) for p in problems]


def _walk(
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    source: str,
    index: int,
    active: set[int],
    count: list[int],
) -> list[errors.SpecProblem]:
    """Record the line of every path and catch duplicate keys, which PyYAML silently lets
    the last one win (``replicas: 2`` ... ``replicas: 5`` is almost always a mistake)."""
    count[0] += 1
    if count[0] > _MAX_NODES:
        raise yaml.YAMLError(f"document expands to more than {_MAX_NODES} nodes")
    lines.setdefault(loc, node.start_mark.line + 1)
    if id(node) in active:  # an alias that contains itself
        return []
    problems: list[errors.SpecProblem] = []
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key == "<<":
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    errors.SpecProblem(
                        file=f"{source}\0{index}",
                        path=messages.render_path(loc),
                        message=f"duplicate key '{key}' (line {seen[key]} and line {line})",
                    )
                )
            seen[key] = line
            lines[(*loc, key)] = line
            problems += _walk(value_node, (*loc, key), lines, source, index, active, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _walk(item, (*loc, i), lines, source, index, active, count)
    active.discard(id(node))
    return problems


def _relabel(problem: errors.SpecProblem, source: str, multi: bool) -> errors.SpecProblem:
    if "\0" not in problem.file:
        return problem
    index = int(problem.file.split("\0")[1])
    label = LoadedDocument(source=source, index=index, data={}, multi=multi).label
    return dataclasses.replace(problem, file=label)


def _yaml_problem(source: str, exc: yaml.MarkedYAMLError) -> errors.SpecProblem:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "malformed YAML"
    if "'\\t'" in what:
        what += " (YAML indents with spaces, never tabs)"
    context, where = exc.context, exc.context_mark
    if context and exc.problem and where is not None and where is not mark:
        # "while parsing a flow sequence" names the unclosed bracket or block; where it
        # started is usually where the typo is, lines above where the parser gave up.
        what += f" ({context} that starts at line {where.line + 1}, column {where.column + 1})"
    if mark is None:
        return messages.problem(source, f"malformed YAML: {what}")
    return messages.problem(
        source, f"malformed YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    )


# --- stage 2: models -------------------------------------------------------------------


def parse_rollouts(docs: Sequence[LoadedDocument]) -> list[models.Rollout]:
    """The Rollouts in ``docs``; one SpecError with every problem of every document."""
    return parse_documents(docs).rollouts


def parse_documents(docs: Sequence[LoadedDocument]) -> Specs:
    """Rollouts plus the other known kinds (AnalysisTemplate), or one SpecError."""
    specs, problems = collect_documents(docs)
    if problems:
        raise errors.SpecError(problems)
    return specs


def collect_documents(docs: Sequence[LoadedDocument]) -> tuple[Specs, list[errors.SpecProblem]]:
    """Like ``parse_documents`` but returns the problems beside what did parse."""
    rollouts: list[models.Rollout] = []
    sources: list[str] = []
    other: list[LoadedDocument] = []
    flags: list[spec_flag.Flag] = []
    flag_sources: list[str] = []
    problems: list[errors.SpecProblem] = []
    for doc in docs:
        too_deep = _too_deep(doc)
        if too_deep is not None:  # before any recursive walk (pydantic's included) sees it
            problems.append(too_deep)
            continue
        kind_problems, kind = _check_kind(doc)
        problems += kind_problems
        if kind in OTHER_KINDS:
            other.append(doc)
            continue
        if kind == "Flag":
            flag, found = _parse_flag(doc)
            problems += found
            if flag is not None and not kind_problems:
                flags.append(flag)
                flag_sources.append(doc.label)
            continue
        if kind != "Rollout":
            continue
        # apiVersion/kind were judged above; validate the rest so every problem shows.
        data = {**doc.data, "apiVersion": models.API_VERSION, "kind": "Rollout"}
        try:
            rollout = models.Rollout.model_validate(data)
        except pydantic.ValidationError as exc:
            problems += messages.translate(exc, doc)
            continue
        if not kind_problems:
            rollouts.append(rollout)
            sources.append(doc.label)
    problems += _flag_clashes(flags, flag_sources)
    specs = Specs(
        rollouts=rollouts, sources=sources, other=other, flags=flags, flag_sources=flag_sources
    )
    return specs, problems


def _flag_clashes(
    flags: Sequence[spec_flag.Flag], labels: Sequence[str]
) -> list[errors.SpecProblem]:
    """Two flags of one apply with one name, or answering to one OFREP key."""
    problems = []
    names: dict[str, str] = {}
    keys: dict[str, str] = {}
    for flag, label in zip(flags, labels, strict=True):
        if flag.name in names:
            message = f"flag {flag.name!r} is also defined in {names[flag.name]}"
            problems.append(messages.problem(label, message, path="metadata.name"))
        elif flag.key in keys:
            message = f"key {flag.key!r} is also the key of a flag in {keys[flag.key]}"
            problems.append(messages.problem(label, message, path="spec.key"))
        names.setdefault(flag.name, label)
        keys.setdefault(flag.key, label)
    return problems


def _parse_flag(doc: LoadedDocument) -> tuple[spec_flag.Flag | None, list[errors.SpecProblem]]:
    """The Flag in ``doc`` and every problem: fields, and between fields (on the raw
    document, so they show even when a field is also wrong)."""
    data = {**doc.data, "apiVersion": models.API_VERSION, "kind": "Flag"}
    cross = [
        messages.problem(
            doc.label,
            message,
            path=messages.render_path(("spec", *loc)),
            line=doc.line_of(("spec", *loc)),
        )
        for loc, message in spec_flag.cross_field_problems(doc.data.get("spec"))
    ]
    try:
        flag = spec_flag.Flag.model_validate(data, context={spec_flag.CROSS_CHECKED: True})
    except pydantic.ValidationError as exc:
        return None, [*messages.translate(exc, doc, root=spec_flag.Flag), *cross]
    return (None, cross) if cross else (flag, [])


def _too_deep(doc: LoadedDocument) -> errors.SpecProblem | None:
    """A problem at the first path nested deeper than ``MAX_DEPTH``, walked without
    recursion; None when the document is shallower."""
    stack: list[tuple[Any, Loc]] = [(doc.data, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            where = messages.render_path(loc[:MAX_DEPTH])
            return messages.problem(
                doc.label,
                f"nested more than {MAX_DEPTH} levels deep; no spec needs that",
                path=where,
                line=doc.line_of(loc),
            )
        if isinstance(value, dict):
            stack.extend((v, (*loc, str(k))) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
    return None


def _check_kind(doc: LoadedDocument) -> tuple[list[errors.SpecProblem], str | None]:
    """Problems with apiVersion/kind, and the kind to go on validating as (None: stop)."""
    api, kind = doc.data.get("apiVersion"), doc.data.get("kind")

    def problem(path: str, message: str) -> errors.SpecProblem:
        return messages.problem(doc.label, message, path=path, line=doc.line_of((path,)))

    group = api.split("/")[0] if isinstance(api, str) else ""
    if group in _FOREIGN_API_GROUPS:
        what = _FOREIGN_API_GROUPS[group]
        return [
            problem(
                "apiVersion",
                f"this is {what} ({api}); convert it with `changeover import` first, "
                f"or write apiVersion {models.API_VERSION}",
            )
        ], None
    problems: list[errors.SpecProblem] = []
    if api is None:
        problems.append(problem("apiVersion", f"missing; expected {models.API_VERSION}"))
    elif api != models.API_VERSION:
        problems.append(
            problem("apiVersion", f"expected {models.API_VERSION}, got {messages.show(api)}")
        )
    if kind is None:
        problems.append(problem("kind", f"missing; expected one of {', '.join(KINDS)}"))
        return problems, None
    if kind not in KINDS:
        hint = messages.suggest(str(kind), KINDS)
        problems.append(
            problem(
                "kind",
                f"unknown kind {messages.show(kind)}{hint}; expected one of {', '.join(KINDS)}",
            )
        )
        return problems, None
    # A Kubernetes Deployment with a stray kind: Rollout is still worth validating, but an
    # apiVersion from another group with a kind we do not know is someone else's manifest.
    return problems, str(kind)
