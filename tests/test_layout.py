"""The package's layout holds as STYLE.md and issue 10.12 ask, so it cannot drift back.

The exception tree is the ground floor: ``errors.py`` imports nothing of the package at run
time (a type may be named under ``TYPE_CHECKING``), and never the referral-form check, which
once imported it back. The referral-form check is a package whose files are its parts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mash_requests

PACKAGE = Path(mash_requests.__file__).parent


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(module named, whether only under TYPE_CHECKING) for every import in ``path``."""

    def visit(node: ast.AST, typing_only: bool) -> Iterator[tuple[str, bool]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, typing_only
        elif isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or ""), typing_only
        for child in ast.iter_child_nodes(node):
            under = typing_only or (isinstance(node, ast.If) and _is_type_checking(node))
            yield from visit(child, under)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")), False)


def ours(module: str) -> bool:
    return module.startswith((".", "mash_requests"))


def test_errors_imports_nothing_of_the_package_at_run_time() -> None:
    """errors.py imports no module of mash_requests except, at most, for type hints."""
    found = [m for m, typing_only in imports(PACKAGE / "errors.py") if ours(m) and not typing_only]
    assert found == []


def test_errors_never_imports_the_referral_form_check() -> None:
    """errors.py names nothing of referral_form, even for type hints: the old circle is gone."""
    found = [m for m, _ in imports(PACKAGE / "errors.py") if "referral_form" in m]
    assert found == []


def test_referral_form_is_a_package_whose_files_are_its_parts() -> None:
    """Reading, the safety walk, case binding, filling and the verdict each have a file."""
    folder = PACKAGE / "referral_form"
    assert not (PACKAGE / "referral_form.py").exists()
    parts = {path.stem for path in folder.glob("*.py")}
    assert {"reading", "safety", "binding", "filling", "files", "check", "verdict"} <= parts
