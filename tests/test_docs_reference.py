"""The documentation's generated reference pages (tools/docs_hooks.py) say what the code
says: every spec field, every CLI command and every error class appear, and a page asking
for a section that does not exist fails the build instead of printing nothing."""

from __future__ import annotations

import importlib.util
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


def test_exit_codes_reference_names_each_error_with_its_code() -> None:
    page = hooks.exit_codes()
    assert f"| `SpecError` | {errors.SpecError.exit_code} |" in page
    assert f"| `NotFound` | {errors.NotFound.exit_code} |" in page


def test_an_unknown_generated_section_fails_the_build() -> None:
    with pytest.raises(ValueError, match="unknown generated section 'no-such-page'"):
        hooks.on_page_markdown("text\n<!-- generated: no-such-page -->\n", page=None)
