"""The documentation says what the code says. The generated reference pages
(tools/docs_hooks.py) hold every spec field, CLI command and error class, and a page asking
for a section that does not exist fails the build instead of printing nothing; every
``changeover ...`` command line in README.md and docs/ names a command and options that
exist."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer

from changeover import errors, spec
from changeover.spec import analysis

ROOT = Path(__file__).resolve().parent.parent


def _hooks() -> ModuleType:
    path = ROOT / "tools" / "docs_hooks.py"
    loaded = importlib.util.spec_from_file_location("docs_hooks", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    sys.modules["docs_hooks"] = module
    loaded.loader.exec_module(module)
    return module


hooks = _hooks()


def _aliases(schema: dict[str, Any]) -> set[str]:
    names = set(schema.get("properties", {}))
    for sub in schema.get("$defs", {}).values():
        names |= set(sub.get("properties", {}))
    return names


def test_spec_reference_has_every_field_of_every_kind() -> None:
    page = hooks.on_page_markdown("<!-- generated: spec-fields -->", page=None)
    for model in (spec.Rollout, analysis.AnalysisTemplate):
        for name in _aliases(model.model_json_schema(by_alias=True, mode="validation")):
            assert f"| `{name}` |" in page, name
    # camelCase as written in YAML, never the Python name.
    assert "| `progressDeadlineSeconds` |" in page
    assert "progress_deadline_seconds" not in page


def test_cli_reference_has_every_command() -> None:
    page = hooks.cli_commands()
    group = typer.main.get_command(hooks._typer_app())
    ctx = group.context_class(group, info_name="changeover")
    commands = group.list_commands(ctx)
    assert {"apply", "promote", "status", "serve"} <= set(commands)
    for name in commands:
        assert f"changeover {name}" in page, name
    assert "| `--wait` |" in page


def test_metric_names_reference_has_every_builtin_metric() -> None:
    from changeover.analysis.providers import builtin

    page = hooks.on_page_markdown("<!-- generated: builtin-provider-metrics -->", page=None)
    assert all(f"`{name}`" in page for name in builtin.METRICS)


def test_exit_codes_reference_names_each_error_with_its_code() -> None:
    page = hooks.exit_codes()
    assert f"| `SpecError` | {errors.SpecError.exit_code} |" in page
    assert f"| `NotFound` | {errors.NotFound.exit_code} |" in page


def test_an_unknown_generated_section_fails_the_build() -> None:
    with pytest.raises(ValueError, match="unknown generated section 'no-such-page'"):
        hooks.on_page_markdown("text\n<!-- generated: no-such-page -->\n", page=None)


def _command_lines(text: str) -> list[tuple[int, str]]:
    """``changeover ...`` lines of code blocks and inline code, comments and pipes cut off."""
    found: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        stripped = line.strip().removeprefix("$ ")
        if fenced and stripped.startswith("changeover "):
            candidates = [stripped]
        else:
            candidates = re.findall(r"`(changeover [^`]+)`", line)
        for candidate in candidates:
            found.append((number, re.split(r"\s[#|>&]", candidate)[0]))
    return found


def _options(command: Any, ctx: Any) -> set[str]:
    return {
        name
        for param in command.get_params(ctx)
        for name in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
    }


def _stale(line: str, group: Any) -> str | None:
    """What in ``line`` names no command or option of the CLI (None: nothing)."""
    try:
        words = shlex.split(line)[1:]
    except ValueError:
        return None
    ctx = group.context_class(group, info_name="changeover")
    command, path, allowed = group, "changeover", _options(group, ctx)
    while words and not words[0].startswith("-") and hasattr(command, "list_commands"):
        name = words.pop(0)
        if name.isupper():  # a placeholder: `changeover COMMAND --help`
            return None
        sub = command.get_command(ctx, name)
        if sub is None:
            return f"no command `{path} {name}`"
        ctx = sub.context_class(sub, info_name=name, parent=ctx)
        command, path = sub, f"{path} {name}"
    allowed |= _options(command, ctx)
    for word in words:
        option = word.split("=")[0]
        if option.startswith("-") and option != "-" and option not in allowed:
            return f"`{path}` has no option {option}"
    return None


def test_every_command_line_in_the_docs_exists() -> None:
    group = typer.main.get_command(hooks._typer_app())
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    stale = [
        f"{page.relative_to(ROOT)}:{number}: {problem}"
        for page in pages
        for number, line in _command_lines(page.read_text())
        if (problem := _stale(line, group)) is not None
    ]
    assert stale == []


def test_a_misspelt_option_in_the_docs_is_found() -> None:
    group = typer.main.get_command(hooks._typer_app())
    lines = _command_lines(
        "run `changeover apply -f x.yaml --wiat` then\n```sh\n"
        "$ changeover frobnicate NAME  # no such command\n```\n"
    )
    assert [_stale(line, group) for _, line in lines] == [
        "`changeover apply` has no option --wiat",
        "no command `changeover frobnicate`",
    ]


def test_the_readme_links_to_files_that_exist() -> None:
    """The front page links into docs/ by path (it is read on a forge, not in the site)."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)", text)
    assert "docs/index.md" in targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert missing == []


def _prose(text: str) -> str:
    """The text outside fenced code blocks (examples there name the user's files)."""
    return "\n".join(re.split(r"^```.*?^```", text, flags=re.M | re.S))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_every_file_and_module_the_docs_name_exists() -> None:
    """A moved or renamed module must take the docs with it: each repository path
    (``changeover/traffic/base.py``, ``bench/``) and dotted name (``changeover.api.server``)
    in README.md and docs/ outside code examples must exist."""
    stale = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        prose = _prose(page.read_text())
        paths = re.findall(
            r"(?<![\w/.-])((?:changeover|tests|bench|examples|tools)/[\w./-]*\w/?)", prose
        )
        stale += [f"{page.name}: {p}" for p in paths if not (ROOT / p).exists()]
        names = re.findall(r"`(changeover(?:\.[A-Za-z_]\w*)+)", prose)
        stale += [f"{page.name}: {n}" for n in names if n != "changeover.dev" and not _resolves(n)]
    assert stale == []
