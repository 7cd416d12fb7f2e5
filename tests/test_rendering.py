"""Rendering requests: sandboxed, strict, marked, and carrying the references and deadline."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mash_requests.case import Case, Rag, parse_case
from mash_requests.deadlines import Timescales, describe_hours
from mash_requests.errors import TemplateError
from mash_requests.partners import Partner
from mash_requests.rendering import Renderer, Replaces, format_date, format_due, wrap_text

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


def test_missing_template_says_where_templates_are_looked_for(renderer: Renderer) -> None:
    """Without a templates folder, the error names the shipped templates and [mash] templates."""
    partner = Partner("ycs", "Youth Justice", ("y@nhs.net",), "youth-justice")
    with pytest.raises(TemplateError) as caught:
        render(renderer, partner=partner)
    assert "not found in the shipped templates (" in str(caught.value)
    assert "set [mash] templates" in str(caught.value)


def test_an_included_template_that_is_missing_is_named_with_where_it_was_looked_for(
    tmp_path: Path,
) -> None:
    """{% include "nope.j2" %} of a file that is nowhere says that nope.j2, included, was not
    found, and names the templates folder and the shipped templates."""
    (tmp_path / "police.txt.j2").write_text('{% include "nope.j2" %}\n')
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError) as caught:
        render(renderer)
    message = str(caught.value)
    assert message.startswith("template police.txt.j2: the template it includes, nope.j2, was")
    assert f"not found in the [mash] templates folder {tmp_path} or the shipped templates" in (
        message
    )
    assert "{% include %}" in message


def test_a_computed_include_name_is_not_quoted(tmp_path: Path) -> None:
    """An include whose name comes from the case is reported without the name: it may be a
    child's detail."""
    (tmp_path / "police.txt.j2").write_text("{% include child.name %}\n")
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError) as caught:
        render(renderer, case(name="Alexandra"))
    assert "a template it includes (a name it computes, not shown)" in str(caught.value)
    assert "Alexandra" not in str(caught.value)


def test_html_escapes_case_text(renderer: Renderer) -> None:
    """Case text is escaped in HTML, never interpreted."""
    rendered = render(renderer, case(name="<script>alert(1)</script>"))
    assert "<script>alert(1)</script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    # Any name a case may hold: one line, no control characters or bidi controls.
    name=st.text(
        alphabet=st.characters(
            blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
            blacklist_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
        ),
        min_size=1,
        max_size=60,
    ).filter(lambda s: s.strip())
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


# -- how the request reads ---------------------------------------------------------------


def test_timescale_reads_as_people_say_it(renderer: Renderer) -> None:
    """24 hours reads "AMBER (24 hours)" in both bodies, never "24.0 hours"."""
    rendered = render(renderer)
    for body in (rendered.text, rendered.html):
        assert "AMBER (24 hours)" in body
        assert "24.0" not in body


def test_working_hours_are_named_as_such() -> None:
    """A rating counted in working hours reads "AMBER (24 working hours)"."""
    timescales = replace(Timescales.defaults(), working_hours=frozenset({Rag.AMBER}))
    renderer = Renderer(marking="OFFICIAL", mash_name="M", timescales=timescales)
    rendered = render(renderer)
    assert "AMBER (24 working hours)" in rendered.text
    assert "AMBER (24 working hours)" in rendered.html


def test_red_reads_in_hours_and_is_high_importance(renderer: Renderer) -> None:
    """A RED case reads "RED (4 hours)" and its request is marked high importance."""
    rendered = renderer.render(
        case=parse_case({**json.loads(EXAMPLE.read_text()), "rag": "red"}, source="t"),
        partner=POLICE,
        request_ref="MASH-2026-0412-POLICE-ABCDE",
        due=DUE,
        rag_hours=4.0,
        form_filename="f.pdf",
    )
    assert "RED (4 hours)" in rendered.text
    assert rendered.importance == "high"
    assert render(renderer).importance == "normal"


@pytest.mark.parametrize(
    ("hours", "working", "text"),
    [(1, False, "1 hour"), (2.5, False, "2.5 hours"), (0.5, True, "30 working minutes"),
     (72, False, "72 hours"), (24.0, True, "24 working hours")],
)  # fmt: skip
def test_describe_hours(hours: float, working: bool, text: str) -> None:
    """Hours are written without a needless decimal, minutes below an hour."""
    assert describe_hours(hours, working=working) == text


def test_dates_read_the_same_everywhere(renderer: Renderer) -> None:
    """The date of birth and the deadline use one format: "9 April 2016", "27 November 2026"."""
    rendered = render(renderer)
    for body in (rendered.text, rendered.html):
        assert "9 April 2016" in body
        assert "04/2016" not in body and "2016-04-09" not in body
        assert "27 November 2026" in body
    assert format_date(date(2016, 4, 9)) == "9 April 2016"


def test_form_values_read_as_the_request_does() -> None:
    """The form's date of birth and rating are the very words of the request sent with it."""
    timescales = replace(Timescales.defaults(), working_hours=frozenset({Rag.AMBER}))
    renderer = Renderer(
        marking="OFFICIAL-SENSITIVE", mash_name="Testbury MASH", timescales=timescales
    )
    the_case = case()
    values = the_case.form_values(
        {"child_dob": "child.date_of_birth", "rating": "rag"}, timescales=timescales
    )
    assert values == {"child_dob": "9 April 2016", "rating": "AMBER (24 working hours)"}
    rendered = render(renderer, the_case)
    for body in (rendered.text, rendered.html):
        assert values["child_dob"] in body and values["rating"] in body


EARLIER = Replaces("MASH-2026-0412-POLICE-1BAC7", datetime(2026, 11, 26, 13, 15, tzinfo=UTC))


def resend(renderer: Renderer):  # type: ignore[no-untyped-def]
    return renderer.render(
        case=case(),
        partner=POLICE,
        request_ref="MASH-2026-0412-POLICE-ABCDE",
        due=DUE,
        rag_hours=24,
        form_filename="MASH-referral-form-MASH-2026-0412.pdf",
        replaces=EARLIER,
    )


def test_resend_is_marked_after_the_marking_and_says_what_it_replaces(
    renderer: Renderer,
) -> None:
    """A resend: "<marking>: [RESEND] …" and "This replaces request <ref> sent on <time>."."""
    rendered = resend(renderer)
    assert rendered.subject.startswith("OFFICIAL-SENSITIVE: [RESEND] AMBER - ")
    sentence = (
        "This replaces request MASH-2026-0412-POLICE-1BAC7 sent on "
        "Thursday 26 November 2026 at 13:15 (UTC)."
    )
    for body in (rendered.text, rendered.html):
        assert sentence in " ".join(body.split())


def test_resend_marker_follows_a_marking_the_template_wrote_itself(tmp_path: Path) -> None:
    """A subject template that starts with the marking keeps it first, the marker after."""
    (tmp_path / "police.subject.j2").write_text(
        "{{ marking }} - {{ case.case_ref }} - {{ request_ref }}"
    )
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    subject = resend(renderer).subject
    assert subject == "OFFICIAL - [RESEND] MASH-2026-0412 - MASH-2026-0412-POLICE-ABCDE"


def test_first_request_carries_no_resend_words(renderer: Renderer) -> None:
    """A request that replaces nothing has no marker and no "This replaces" line."""
    rendered = render(renderer)
    assert "[RESEND]" not in rendered.subject
    assert "replaces" not in rendered.text and "replaces" not in rendered.html


def test_resend_body_that_hides_the_earlier_request_is_refused(tmp_path: Path) -> None:
    """A custom body that leaves out which request a resend replaces is a TemplateError."""
    (tmp_path / "_base.txt.j2").write_text(
        "{{ marking }}\n{{ request_ref }} {{ due_text }}\n{{ marking }}\n"
    )
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    render(renderer)  # not a resend: fine
    with pytest.raises(TemplateError, match="which request it replaces"):
        resend(renderer)


def test_plain_text_is_wrapped_within_78_columns(renderer: Renderer) -> None:
    """Every line of the plain text fits 78 columns, long concerns and names included."""
    long_case = case(address="Flat 12, " * 20 + "Eastbury EB3 2QT")
    rendered = render(renderer, long_case)
    assert max(len(line) for line in rendered.text.splitlines()) <= 78
    assert "Flat 12, Flat 12," in rendered.text  # the words are all there, re-flowed


def test_wrapping_never_breaks_a_reference_or_a_url() -> None:
    """A request reference and a URL longer than the line stay whole on a line of their own."""
    url = "https://safeguarding.example/cases/" + "x" * 80
    text = "  Reply quoting MASH-2026-0412-EDUCATION-C7BCD, see " + url + " and thanks " * 8
    wrapped = wrap_text(text)
    assert "MASH-2026-0412-EDUCATION-C7BCD" in wrapped.split("\n")[0]
    assert any(line.strip() == url for line in wrapped.split("\n"))
    assert " ".join(wrapped.split()) == " ".join(text.split())


def test_wrapped_lines_hang_under_their_label() -> None:
    """A wrapped "Address:" line continues under the value, a bullet under its text."""
    wrapped = wrap_text("  Address:       " + "word " * 30 + "\n  - " + "ask " * 30)
    lines = wrapped.split("\n")
    assert lines[1].startswith(" " * 17) and not lines[1].startswith(" " * 18)
    bullet = lines.index(next(line for line in lines if line.startswith("  - ")))
    assert lines[bullet + 1].startswith("    ask")


_WORDS = st.text(alphabet="abcdefghij -", min_size=1, max_size=40).filter(str.strip)


@settings(max_examples=15, deadline=None)
@given(
    first=st.lists(_WORDS, min_size=1, max_size=12),
    second=st.lists(_WORDS, min_size=1, max_size=12),
)
def test_a_renderer_reused_across_cases_renders_what_a_fresh_one_does(
    first: list[str], second: list[str]
) -> None:
    """The paragraphs a renderer keeps from earlier requests never change a later one: each
    request renders exactly as a new renderer renders it alone."""
    shared = Renderer(marking="OFFICIAL-SENSITIVE", mash_name="Testbury MASH")
    cases = [case(address=" ".join(first)), case(address=" ".join(second), name=" ".join(first))]
    for partner in (POLICE, replace(POLICE, name=" ".join(second) or "Agency")):
        for each in cases:
            alone = Renderer(marking="OFFICIAL-SENSITIVE", mash_name="Testbury MASH")
            assert render(shared, each, partner) == render(alone, each, partner)


def test_wrap_text_with_kept_paragraphs_is_wrap_text() -> None:
    """Wrapping with paragraphs kept from earlier texts gives the same text as without."""
    kept: dict[tuple[str, int, int], list[str]] = {}
    texts = [
        "  Address:       " + "word " * 30 + "\n  - " + "ask " * 30,
        "  Address:       " + "word " * 30 + "\n  - " + "ask " * 31,
        "  Address:       " + "word " * 30,
    ]
    for text in texts * 2:
        for width in (40, 76):
            assert wrap_text(text, width, filled=kept) == wrap_text(text, width)


def test_the_sandbox_reads_the_requests_data_as_the_plain_sandbox_does() -> None:
    """The fast path for the request's own data classes gives what jinja's immutable sandbox
    gives, field by field; anything else still goes through the sandbox's checks."""
    from dataclasses import fields

    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    ours = Renderer(marking="OFFICIAL", mash_name="M")._env
    plain = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    the_case = case()
    for obj in (the_case, the_case.child, the_case.worker, the_case.consent, POLICE):
        for field in fields(obj):  # type: ignore[arg-type]
            assert ours.getattr(obj, field.name) == plain.getattr(obj, field.name)
        for internal in ("__class__", "__dict__", "__init__", "_replace", "nonexistent"):
            assert type(ours.getattr(obj, internal)) is type(plain.getattr(obj, internal))


def test_sandbox_refuses_mutating_a_field_read_quickly(tmp_path: Path) -> None:
    """A value read by the fast path is still sandboxed: its methods cannot change it."""
    (tmp_path / "police.subject.j2").write_text(
        "{{ partner.addresses.__class__ }}{{ case.case_ref }} {{ request_ref }}"
    )
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError):
        render(renderer)


# -- a template shows values; it cannot act on the objects it is given ----------------------

REFS = "{{ case.case_ref }} {{ request_ref }}"


def _subject(tmp_path: Path, text: str) -> Renderer:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    (folder / "police.subject.j2").write_text(text + " " + REFS)
    return Renderer(marking="OFFICIAL", mash_name="M", override_dir=folder)


@pytest.mark.parametrize(
    "expression",
    [
        "case.referral_form.read_text()",
        "(case.referral_form.parent / 'other-childs-case.json').read_text()",
        "case.referral_form.unlink()",
        "case.referral_form.write_text('forged')",
        "case.referral_form.open().read()",
        "case.form_values({'x': 'child.name'})",
        "partner.__init__",
    ],
)
def test_a_template_cannot_act_on_the_objects_it_is_given(tmp_path: Path, expression: str) -> None:
    """The case's form is a pathlib.Path: jinja's own sandbox lets a template call its
    methods (read another child's case file into a request, write or delete files). Only
    plain values' methods may be called; the refusal names no data."""
    form = tmp_path / "form.pdf"
    form.write_bytes(b"%PDF-1.4 the form")
    (tmp_path / "other-childs-case.json").write_text('{"child": "Other Child"}')
    the_case = replace(case(name="Jayden Price"), referral_form=form)
    renderer = _subject(tmp_path, "{{ " + expression + " }}")
    with pytest.raises(TemplateError) as caught:
        render(renderer, the_case)
    message = str(caught.value)
    assert "not allowed" in message
    for secret in ("Other Child", "Jayden Price", str(tmp_path)):
        assert secret not in message
    assert form.read_bytes() == b"%PDF-1.4 the form"
    assert not (tmp_path / "forged").exists()


def test_plain_values_and_jinjas_helpers_still_work(tmp_path: Path) -> None:
    """What templates use stays callable: text and date methods, range, loop.cycle,
    namespace, macros, dict methods, filters."""
    renderer = _subject(
        tmp_path,
        "{% macro shout(x) %}{{ x.upper() }}{% endmacro %}"
        "{{ shout(child.name.split()[0]) }} {{ due.strftime('%Y') }} "
        "{% for i in range(2) %}{{ loop.cycle('a', 'b') }}{% endfor %} "
        "{% set ns = namespace(n=1) %}{{ ns.n }} {{ {'k': 1}.items()|list|length }} "
        "{{ partner.addresses|join(',') }}",
    )
    subject = render(renderer, case(name="Zoë Smith")).subject
    assert subject.startswith("OFFICIAL: ZOË 2026 ab 1 1 mash@testshire.police.uk ")


@pytest.mark.parametrize(
    "expression",
    [
        "{'a': 1}[child.name]",
        "case[child.address]",
        "child[worker.name]",
        "child|attr(child.name|replace(' ', '_'))",
        "child|attr('born' ~ child.date_of_birth.strftime('%Y%m%d'))",
        "case|attr('_' ~ child.name.split()[0])",
    ],
)
def test_a_template_error_never_quotes_case_data(tmp_path: Path, expression: str) -> None:
    """jinja quotes the key a template asked for, which a template can compute from the
    case: the error names the template and the line, not the child's name or address."""
    renderer = _subject(tmp_path, "{{ " + expression + " }}")
    the_case = case(name="Jayden Price")
    with pytest.raises(TemplateError) as caught:
        render(renderer, the_case)
    message = str(caught.value)
    assert message.startswith("template police.subject.j2: ")
    for secret in ("Jayden", "Price", the_case.child.address, the_case.worker.name, "born20"):
        assert secret not in message


def test_a_missing_field_is_still_named(tmp_path: Path) -> None:
    """A name written in the template itself is no case data: it is still quoted."""
    renderer = _subject(tmp_path, "{{ child.nhs_number }}")
    with pytest.raises(TemplateError, match="nhs_number"):
        render(renderer)


def test_a_body_without_the_marking_top_and_bottom_is_refused(tmp_path: Path) -> None:
    """README: the marking is at the top and bottom of every body. A text base that drops
    it (or an HTML one) is refused rather than sent unmarked."""
    (tmp_path / "_base.txt.j2").write_text("{{ request_ref }} {{ due_text }}\n{{ marking }}\n")
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError, match="start and end with the protective marking"):
        render(renderer)
    (tmp_path / "_base.txt.j2").unlink()
    (tmp_path / "_base.html.j2").write_text("<body><p>{{ request_ref }} {{ due_text }}</p></body>")
    with pytest.raises(
        TemplateError, match=r"html\.j2: the body must show, first and last, the protective marking"
    ):
        render(Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path))


def test_a_longer_marking_in_the_subject_does_not_pass_for_ours(tmp_path: Path) -> None:
    """'OFFICIAL-SENSITIVE-PERSONAL …' starts with 'OFFICIAL-SENSITIVE' but is not it."""
    _subject(tmp_path, "OFFICIAL-SENSITIVE-PERSONAL NOT PROTECTED")
    renderer = Renderer(
        marking="OFFICIAL-SENSITIVE", mash_name="M", override_dir=tmp_path / "templates"
    )
    assert render(renderer).subject.startswith(
        "OFFICIAL-SENSITIVE: OFFICIAL-SENSITIVE-PERSONAL NOT PROTECTED"
    )


@pytest.mark.parametrize(
    "html",
    [
        "<html><body><!-- {{ marking }} --><p>{{ request_ref }} {{ due_text }}</p>"
        "<!-- {{ marking }} --></body></html>",
        "<html><head><title>{{ marking }} {{ marking }}</title></head>"
        "<p>{{ request_ref }} {{ due_text }}</p></html>",
        '<body title="{{ marking }} {{ marking }}"><p>{{ request_ref }} {{ due_text }}</p></body>',
        "<body><p>NOT {{ marking }}</p><p>{{ request_ref }} {{ due_text }}</p>"
        "<p>NOT {{ marking }}</p></body>",
    ],
    ids=["comments", "title", "attribute", "not-the-marking"],
)
def test_the_html_marking_must_be_where_a_reader_sees_it(tmp_path: Path, html: str) -> None:
    """In a comment, the title or an attribute the marking is there but nobody sees it."""
    (tmp_path / "police.html.j2").write_text(html)
    renderer = Renderer(marking="OFFICIAL", mash_name="M", override_dir=tmp_path)
    with pytest.raises(TemplateError, match="protective marking"):
        render(renderer)
