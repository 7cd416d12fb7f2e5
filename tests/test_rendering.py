"""Rendering requests: sandboxed, strict, marked, and carrying the references and deadline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mash_requests.case import Case, parse_case
from mash_requests.errors import TemplateError
from mash_requests.partners import Partner
from mash_requests.rendering import Renderer, format_due

EXAMPLE = Path(__file__).parents[1] / "examples" / "cases" / "MASH-2026-0412.json"
POLICE = Partner("police", "Testshire Police", ("mash@testshire.police.uk",), "police")
DUE = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def case(**child: str) -> Case:
    data = json.loads(EXAMPLE.read_text())
    data["child"].update(child)
    return parse_case(data, source="test")


def render(renderer: Renderer, the_case: Case | None = None, partner: Partner = POLICE):  # type: ignore[no-untyped-def]
    return renderer.render(
        case=the_case or case(),
        partner=partner,
        request_ref="MASH-2026-0412-POLICE-ABCDE",
        due=DUE,
        rag_hours=24,
        form_filename="MASH-referral-form-MASH-2026-0412.pdf",
    )


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(marking="OFFICIAL-SENSITIVE", mash_name="Testbury MASH")


@pytest.mark.parametrize("template", ["police", "health", "education", "probation", "housing"])
def test_every_shipped_template_renders(renderer: Renderer, template: str) -> None:
    """Each shipped partner template renders with the marking, references and deadline."""
    partner = Partner(template, "Agency", ("a@nhs.net",), template)
    rendered = render(renderer, partner=partner)
    assert rendered.subject.startswith("OFFICIAL-SENSITIVE: ")
    assert "MASH-2026-0412" in rendered.subject
    assert "MASH-2026-0412-POLICE-ABCDE" in rendered.subject
    for body in (rendered.text, rendered.html):
        words = " ".join(body.split())  # the plain text is wrapped at 76 columns
        assert format_due(DUE) in words
        assert "Consent" in body
        assert "Information sharing" in body
        assert "quote the request reference" in words


def test_missing_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    """A template using an undefined variable fails, naming it, instead of rendering a blank."""
    for suffix in ("subject.j2", "html.j2"):
        (tmp_path / f"police.{suffix}").write_text(
            (Path(__file__).parents[1] / "templates" / f"police.{suffix}").read_text()
        )
    (tmp_path / "police.txt.j2").write_text(
        '{% extends "_base.txt.j2" %}{% block asks %}{{ child.nhs_number }}{% endblock %}'
    )
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError, match="nhs_number"):
        render(renderer)


def test_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    """A template cannot reach Python internals."""
    (tmp_path / "police.subject.j2").write_text(
        "{{ case.__class__.__mro__[1].__subclasses__() }} {{ case.case_ref }} {{ request_ref }}"
    )
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError):
        render(renderer)


def test_subject_without_references_is_refused(tmp_path: Path) -> None:
    """An override subject that drops the references is refused."""
    (tmp_path / "police.subject.j2").write_text("Request for information")
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError, match="case reference"):
        render(renderer)


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    """A broken template names the file and line."""
    (tmp_path / "police.txt.j2").write_text("line one\n{% if %}\n")
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError, match=r"police.txt.j2: syntax error at line 2"):
        render(renderer)


def test_missing_template_is_named(renderer: Renderer) -> None:
    """A partner naming a template that does not exist gets a clear error."""
    partner = Partner("ycs", "Youth Justice", ("y@nhs.net",), "youth-justice")
    with pytest.raises(TemplateError, match=r"youth-justice.subject.j2: not found"):
        render(renderer, partner=partner)


def test_html_escapes_case_text(renderer: Renderer) -> None:
    """Case text is escaped in HTML, never interpreted."""
    rendered = render(renderer, case(name="<script>alert(1)</script>"))
    assert "<script>alert(1)</script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(min_size=1, max_size=60).filter(
        lambda s: s.strip() and "\n" not in s and "\r" not in s
    )
)
def test_any_child_name_renders_and_never_reaches_the_subject(
    renderer: Renderer, name: str
) -> None:
    """Whatever the name, rendering succeeds and the subject does not depend on it."""
    rendered = render(renderer, case(name=name.strip()))
    assert rendered.subject == render(renderer, case(name="Someone Else")).subject


def test_runtime_error_in_a_template_is_a_template_error(tmp_path: Path) -> None:
    """A template that divides by zero gives a TemplateError naming it and the line."""
    (tmp_path / "police.txt.j2").write_text("line one\n{{ rag_hours / 0 }}\n")
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError, match=r"police.txt.j2: ZeroDivisionError at line 2"):
        render(renderer)


def test_template_that_is_not_utf8_is_a_template_error(tmp_path: Path) -> None:
    """A template saved in another encoding gives a clear TemplateError."""
    (tmp_path / "police.txt.j2").write_bytes("caf\u00e9 {{ request_ref }}".encode("latin-1"))
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError, match="not UTF-8"):
        render(renderer)
