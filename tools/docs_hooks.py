"""MkDocs hook: the reference pages that must not drift from the code are written from it.

A page holds a marker line such as ``<!-- generated: spec-fields -->``; at build time the
marker is replaced by what the code says today:

- ``spec-fields``: every field of each kind in ``KINDS``, from the pydantic models' JSON
  schema (names as written in YAML, types, defaults, bounds, required);
- ``cli-commands``: every command of the Typer app with its arguments and options;
- ``exit-codes``: the error classes of ``changeover.errors`` and the exit code of each;
- ``router-metrics``, ``builtin-provider-metrics``: the metric names, from the registries;
- ``import-layers``: the ``layers`` import-linter contract of pyproject.toml;
- ``changelog``: CHANGELOG.md, which lives at the repository's root;
- ``bench-results``: bench/RESULTS.md, which the benchmarks write.

mkdocs.yml names this file under ``hooks``; ``make docs`` and the strict build in
``make lint`` run it. An unknown marker fails the build.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
ROOT = Path(__file__).resolve().parent.parent


def on_page_markdown(markdown: str, **_: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated section {name!r} (known: {sorted(GENERATORS)})")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


# --- the spec -------------------------------------------------------------------------------


# Every kind a spec file may hold: (kind, module, model class).
KINDS = (
    ("Rollout", "changeover.spec", "Rollout"),
    ("AnalysisTemplate", "changeover.spec.analysis", "AnalysisTemplate"),
    ("Flag", "changeover.spec.flag", "Flag"),
)


def spec_fields() -> str:
    out: list[str] = []
    for kind, module, name in KINDS:
        model = getattr(importlib.import_module(module), name)
        schema = model.model_json_schema(by_alias=True, mode="validation")
        defs = schema.get("$defs", {})
        out.append(f"## {kind}\n")
        out.extend(_schema_tables(kind, schema, defs))
    return "\n".join(out)


def _schema_tables(kind: str, root: dict[str, Any], defs: dict[str, Any]) -> Iterator[str]:
    """One table per object type reachable from ``root``, in the order first met."""
    seen: set[str] = set()
    queue: list[tuple[str, dict[str, Any]]] = [(kind, root)]
    while queue:
        name, schema = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if name != kind:  # the kind's own fields sit right under its "## kind" heading
            yield f"### {name} {{#{_anchor(kind, name)}}}\n"
        if doc := schema.get("description"):
            yield _one_paragraph(doc) + "\n"
        required = set(schema.get("required", []))
        props = schema.get("properties", {})
        if not props:
            yield "No fields.\n"
            continue
        yield "| field | type | default | constraints |"
        yield "|---|---|---|---|"
        for field, prop in props.items():
            refs = list(_refs(prop))
            queue.extend((ref, defs[ref]) for ref in refs if ref not in seen)
            default = "required" if field in required else _default(prop)
            yield (f"| `{field}` | {_type(kind, prop)} | {default} | {_constraints(prop)} |")
        yield ""


def _anchor(kind: str, name: str) -> str:
    return f"{kind}-{name}".lower()


def _one_paragraph(doc: str) -> str:
    text = inspect.cleandoc(doc)
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("|", "\\|")


def _refs(prop: dict[str, Any]) -> Iterator[str]:
    if "$ref" in prop:
        yield prop["$ref"].rsplit("/", 1)[1]
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in prop.get(key, []):
            yield from _refs(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(prop.get(key), dict):
            yield from _refs(prop[key])


def _type(kind: str, prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        ref = prop["$ref"].rsplit("/", 1)[1]
        return f"[{ref}](#{_anchor(kind, ref)})"
    for key in ("anyOf", "oneOf"):
        if key in prop:
            kinds = [_type(kind, sub) for sub in prop[key]]
            return " or ".join(k for k in kinds if k != "null") + (
                " or null" if "null" in kinds else ""
            )
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _type(kind, prop["allOf"][0])
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    t = prop.get("type")
    if t == "array":
        return f"list of {_type(kind, prop.get('items', {}))}"
    if t == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"map of {_type(kind, extra)}"
        return "mapping"
    return str(t) if t else "any"


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return ""
    value = prop["default"]
    if value is None:
        return ""
    text = repr(value) if not isinstance(value, str) else value
    if isinstance(value, bool):
        text = str(value).lower()
    return f"`{text}`".replace("|", "\\|")


_BOUNDS = {
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "minLength": "length ≥ {}",
    "maxLength": "length ≤ {}",
    "minItems": "at least {} item(s)",
    "maxItems": "at most {} items",
    "pattern": "matches `{}`",
}


def _constraints(prop: dict[str, Any]) -> str:
    found: list[str] = []
    for sub in [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]:
        for key, form in _BOUNDS.items():
            if key in sub:
                found.append(form.format(sub[key]))
    return ", ".join(dict.fromkeys(found)).replace("|", "\\|")


# --- the CLI --------------------------------------------------------------------------------


def cli_commands() -> str:
    import typer

    group = typer.main.get_command(_typer_app())
    # Typer ships its own copy of click: contexts come from the command's own class.
    ctx = group.context_class(group, info_name="changeover")
    out: list[str] = []
    out.extend(_command_doc(ctx, group, "changeover", level=2))
    return "\n".join(out)


def _typer_app() -> Any:
    """The app behind the ``changeover`` console script (pyproject.toml names it)."""
    import typer

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module = importlib.import_module(scripts["changeover"].split(":")[0])
    candidates = [module, *(m for m in _imported_modules(module))]
    for mod in candidates:
        for value in vars(mod).values():
            if isinstance(value, typer.Typer) and value.info.name == "changeover":
                return value
    raise LookupError("no Typer app named 'changeover' behind the console script")


def _imported_modules(module: Any) -> Iterator[Any]:
    for value in vars(module).values():
        if inspect.ismodule(value) and value.__name__.startswith("changeover."):
            yield value


def _command_doc(ctx: Any, command: Any, path: str, *, level: int) -> Iterator[str]:
    if level > 2:
        yield f"{'#' * level} `{path}`\n"
    if command.help and level > 2:
        yield inspect.cleandoc(command.help).split("\n\n")[0].replace("\b", "") + "\n"
    # Typer writes an argument as {name} in usage; --help shows NAME.
    pieces = [
        re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), piece)
        for piece in command.collect_usage_pieces(ctx)
    ]
    yield f"```\n{path} {' '.join(pieces)}\n```\n"
    rows = [_param_row(ctx, p) for p in command.get_params(ctx) if not p.hidden]
    rows = [r for r in rows if r]
    if rows:
        yield "| argument or option | help | default |"
        yield "|---|---|---|"
        yield from rows
        yield ""
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
            yield from _command_doc(sub_ctx, sub, f"{path} {name}", level=min(level + 1, 4))


def _param_row(ctx: Any, param: Any) -> str:
    if param.name == "help":
        return ""
    if param.param_type_name == "argument":
        names = f"`{(param.metavar or param.name or '').upper()}`"
    else:
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    help_text = (getattr(param, "help", None) or "").replace("\n", " ").replace("|", "\\|")
    envvar = getattr(param, "envvar", None)
    if envvar:
        help_text += f" (env: `{envvar}`)"
    default = ""
    show = getattr(param, "show_default", True)
    if (
        show is not False
        and param.default not in (None, False, (), [])
        and not callable(param.default)
    ):
        value = param.default.value if hasattr(param.default, "value") else param.default
        default = f"`{value}`".replace("|", "\\|")
    return f"| {names} | {help_text} | {default} |"


# --- exit codes -----------------------------------------------------------------------------


def exit_codes() -> str:
    from changeover import errors

    rows = ["| error class | exit code | what it means |", "|---|---|---|"]
    for name, cls in sorted(vars(errors).items()):
        if not (isinstance(cls, type) and issubclass(cls, errors.ChangeoverError)):
            continue
        doc = inspect.getdoc(cls) or ""
        first = _one_paragraph(doc.split("\n\n")[0]).replace("\n", " ")
        rows.append(f"| `{name}` | {cls.exit_code} | {first} |")
    return "\n".join(rows) + "\n"


# --- metric names ---------------------------------------------------------------------------


def router_metrics() -> str:
    """The families of the builtin router's ``/metrics``, read from one rendered sample."""
    from changeover.traffic.builtin import metrics, metrics_text
    from changeover.traffic.comparison import stats

    registry = metrics.Registry()
    registry.rollout("web").revision(1).record(200, 0.01)
    registry.rollout("web").revision(2).shadow = stats.ShadowStats()
    variant = metrics.variant_metrics(registry.rollout("web").revision(1).variants, "f", "on")
    assert variant is not None
    variant.record(200, 0.01)
    return _families_table(metrics_text.render(registry))


def rollout_metrics() -> str:
    """The rollout-level families ``serve`` adds to ``/metrics``, from one rendered sample."""
    from changeover.api import rollout_metrics as rendered

    status = {
        "name": "web",
        "phase": "Paused",
        "strategy": "canary",
        "revision": 2,
        "stableRevision": 1,
        "canaryRevision": 2,
        "currentStepIndex": 1,
        "totalSteps": 4,
        "weights": {"1": 80, "2": 20},
        "revisionStates": {"1": {"ready": 2, "desired": 2}, "2": {"ready": 1, "desired": 1}},
    }
    metric = {
        "name": "error-rate",
        "thresholds": {"success": {"operator": "<=", "value": 0.05}},
        "measurements": [{"value": 0.01}],
    }
    run = {"revision": 2, "kind": "step", "phase": "Running", "metrics": [metric]}
    return _families_table(rendered.render([status], {"web": [run]}))


def api_routes() -> str:
    """The control API's routes, from the route table ``serve`` runs (api.server)."""
    from changeover.api import server
    from changeover.testing.fake_service import FakeService

    rows = ["| method | path | what | token |", "|---|---|---|---|"]
    for route in server.build_router(FakeService(), token="x", loopback=True).routes:
        if route.documented:
            token = "yes" if route.mutating else "beyond loopback"
            rows.append(f"| {route.method} | `{route.template}` | {route.summary} | {token} |")
    return "\n".join(rows) + "\n"


def _families_table(text: str) -> str:
    """A Markdown table of the metric families in a Prometheus exposition ``text``."""
    families: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            families[name] = [help_text, "", ""]
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            families[name][1] = kind
        elif "{" in line:
            sample = line.split("{", 1)[0]
            name = next((f for f in families if sample.startswith(f)), sample)
            if name in families and not families[name][2]:
                labels = re.findall(r"(\w+)=", line.split("{", 1)[1])
                families[name][2] = ", ".join(f"`{x}`" for x in labels if x != "le")
    rows = ["| name | type | labels | what |", "|---|---|---|---|"]
    rows += [f"| `{n}` | {k} | {lab} | {h} |" for n, (h, k, lab) in families.items()]
    return "\n".join(rows) + "\n"


def builtin_provider_metrics() -> str:
    """Every name ``builtin.METRICS`` accepts, grouped where the provider groups them; a
    name in no known group is listed as well, under "other"."""
    from changeover.analysis.providers import builtin

    groups = [
        ("from the router", builtin.ROUTER_METRICS),
        ("from the replicas' processes", builtin.PROCESS_METRICS),
        ("the shadow against the primary", getattr(builtin, "SHADOW_METRICS", ())),
    ]
    grouped = {m for _, names in groups for m in names}
    groups.append(("other", tuple(m for m in builtin.METRICS if m not in grouped)))
    return "".join(
        f"- {label}: {', '.join(f'`{m}`' for m in names)}\n" for label, names in groups if names
    )


def changelog() -> str:
    """CHANGELOG.md lives at the repository's root, where packagers look for it."""
    return (ROOT / "CHANGELOG.md").read_text()


def bench_results() -> str:
    """bench/RESULTS.md (the benchmarks write it) under the Benchmarks page: its title
    dropped and every heading one level down."""
    out: list[str] = []
    fenced = False
    for line in (ROOT / "bench" / "RESULTS.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("# "):
            continue
        elif not fenced and line.startswith("#"):
            line = "#" + line
        out.append(line)
    return "\n".join(out) + "\n"


def import_layers() -> str:
    """The ``layers`` import-linter contract of pyproject.toml, top layer first: ``|``
    joins modules that may not import each other, ``,`` modules that may."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c.get("type") == "layers")
    lines = []
    for layer in layers:
        joined = " ".join(layer.split()).replace("changeover.", "")
        lines.append(joined.replace(" : ", ", "))
    return "```\n" + "\n".join(lines) + "\n```\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "import-layers": import_layers,
    "bench-results": bench_results,
    "changelog": changelog,
    "spec-fields": spec_fields,
    "cli-commands": cli_commands,
    "exit-codes": exit_codes,
    "router-metrics": router_metrics,
    "rollout-metrics": rollout_metrics,
    "api-routes": api_routes,
    "builtin-provider-metrics": builtin_provider_metrics,
}
