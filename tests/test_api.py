"""The Python API's inputs: partners as asked, a case in every form judged by the same rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

import mash_requests
from mash_requests import Case, Child, Consent, ConsentStatus, Rag, Worker
from mash_requests.audit.events import EventKind
from workspace import Workspace

#: What a test's case holds that no error or log entry may repeat.
CHILD_NAME = "Leo Hartley"
CHILD_DOB = "2016-04-09"


def rejections(workspace: Workspace) -> list[Any]:
    return [e for e in workspace.events() if e.kind is EventKind.REJECTED]


def typed_case(workspace: Workspace) -> Case:
    """A valid Case built by hand, as a script would, with an absolute form path."""
    return Case(
        case_ref="MASH-2026-0412",
        contact_id="CON-88213",
        rag=Rag.AMBER,
        child=Child(name=CHILD_NAME, date_of_birth=date(2016, 4, 9), address="14 Alder Row"),
        consent=Consent(status=ConsentStatus.GIVEN, reason="", given_by="Mother"),
        concerns="Summary of the concerns",
        worker=Worker(name="Sam Okafor", role="Social worker", email="sam.okafor@eastbury.gov.uk"),
        partners=("police", "health"),
        referral_form=workspace.forms / "MASH-2026-0412.pdf",
    )


def mapping_case(workspace: Workspace) -> dict[str, Any]:
    """A valid case as a mapping, its form given by an absolute path."""
    data = workspace.example_case()
    data["referral_form"] = str(workspace.forms / "MASH-2026-0412.pdf")
    return data


# -- the partners asked ---------------------------------------------------------------------


def test_an_empty_partner_list_is_refused_and_logged(workspace: Workspace) -> None:
    """partners=[] (a list filtered down to nothing) sends nothing, not the case's own."""
    settings = mash_requests.load_settings(workspace.config)
    with pytest.raises(mash_requests.InputError) as caught:
        mash_requests.send_request(settings, mapping_case(workspace), [])
    assert (caught.value.reason, caught.value.field) == ("no_partners", "partners")
    assert workspace.outbox_files() == []
    assert [(e.reason, e.case_ref) for e in rejections(workspace)] == [
        ("no_partners", "MASH-2026-0412")
    ]


def test_an_empty_partner_list_is_refused_in_a_dry_run_too(workspace: Workspace) -> None:
    """A dry run refuses partners=[] as a send does (and logs nothing)."""
    settings = mash_requests.load_settings(workspace.config)
    with pytest.raises(mash_requests.InputError, match="empty list"):
        mash_requests.send_request(settings, mapping_case(workspace), [], dry_run=True)
    assert not workspace.log_path.exists() or rejections(workspace) == []


@pytest.mark.parametrize("partners", ["police", b"police", 7, ["police", 7]])
def test_partners_that_are_not_a_list_of_keys_are_refused(
    workspace: Workspace, partners: Any
) -> None:
    """A str is a Sequence[str] too, but "police" must not ask partners "p", "o" …"""
    settings = mash_requests.load_settings(workspace.config)
    with pytest.raises(mash_requests.InputError, match="expected a list of partner keys") as caught:
        mash_requests.send_request(settings, mapping_case(workspace), partners)
    assert (caught.value.reason, caught.value.field) == ("usage", "partners")
    assert workspace.outbox_files() == []


def test_partners_may_be_any_iterable_of_keys(workspace: Workspace) -> None:
    """A generator of keys asks exactly those partners (read once, not found empty later)."""
    settings = mash_requests.load_settings(workspace.config)
    asked = (key for key in ["health", "police"])
    result = mash_requests.send_request(settings, mapping_case(workspace), asked, dry_run=True)
    assert [o.partner for o in result.outcomes] == ["health", "police"]


def test_a_case_whose_partners_are_a_str_is_refused(workspace: Workspace) -> None:
    """Case(partners="police") is refused naming the field, not sent to "p", "o" …"""
    settings = mash_requests.load_settings(workspace.config)
    case = replace(typed_case(workspace), partners="police")  # type: ignore[arg-type]
    with pytest.raises(mash_requests.CaseFileError, match="field partners: expected a list"):
        mash_requests.send_request(settings, case)
    assert [e.reason for e in rejections(workspace)] == ["invalid_case"]


def test_a_mapping_may_give_partners_as_a_tuple(workspace: Workspace) -> None:
    """From Python a tuple is as good a list as a list (JSON files give lists)."""
    settings = mash_requests.load_settings(workspace.config)
    data = dict(mapping_case(workspace), partners=("police",))
    result = mash_requests.send_request(settings, data, dry_run=True)
    assert [o.partner for o in result.outcomes] == ["police"]


# -- a Case built by hand ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        (
            {"child": Child(name=CHILD_NAME, date_of_birth=20160409, address="a")},  # type: ignore[arg-type]
            "child.date_of_birth",
            "expected a real date as YYYY-MM-DD, got a number",
        ),
        (
            {"child": Child(name=CHILD_NAME, date_of_birth=datetime(2016, 4, 9, 12), address="a")},
            "child.date_of_birth",
            "got a date and time",
        ),
        (
            {"child": Child(name=CHILD_NAME, date_of_birth="09/04/2016", address="a")},  # type: ignore[arg-type]
            "child.date_of_birth",
            "expected a real date as YYYY-MM-DD",
        ),
        ({"child": {"name": CHILD_NAME}}, "child", "expected a Child, got an object"),
        ({"consent": "given"}, "consent", "expected a Consent, got a text"),
        ({"worker": None}, "worker", "expected a Worker, got null"),
        (
            {"consent": Consent(status="maybe", reason="", given_by="")},  # type: ignore[arg-type]
            "consent.status",
            "expected one of given, not_given, not_sought",
        ),
        ({"rag": "purple"}, "rag", "expected one of red, amber, green"),
        ({"concerns": None}, "concerns", "is missing"),
        ({"case_ref": 412}, "case_ref", "got a number"),
        ({"referral_form": b"form.pdf"}, "referral_form", "expected text, got bytes"),
        ({"partners": ("police", 7)}, "partners", "entry 2 is a number"),
    ],
)
def test_a_case_with_wrong_types_is_refused_as_a_mapping_is(
    workspace: Workspace, change: dict[str, Any], field: str, expected: str
) -> None:
    """A Case built with wrong-typed fields gives CaseFileError naming the field, logged."""
    settings = mash_requests.load_settings(workspace.config)
    case = replace(typed_case(workspace), **change)
    with pytest.raises(mash_requests.CaseFileError) as caught:
        mash_requests.send_request(settings, case)
    error = caught.value
    assert error.field == field
    assert f"field {field}: " in str(error)
    assert expected in str(error)
    assert CHILD_NAME not in str(error)
    assert workspace.outbox_files() == []
    logged = rejections(workspace)
    assert [e.reason for e in logged] == ["invalid_case"]
    assert CHILD_NAME not in str(logged[0].detail)


def test_a_case_with_a_date_of_birth_as_iso_text_is_read(workspace: Workspace) -> None:
    """A str date of the file's form (as a case system's JSON gives it) is simply read."""
    settings = mash_requests.load_settings(workspace.config)
    case = replace(
        typed_case(workspace),
        child=Child(name=CHILD_NAME, date_of_birth=CHILD_DOB, address="a"),  # type: ignore[arg-type]
        rag="red",  # type: ignore[arg-type]
        consent=Consent(status="given", reason="", given_by=""),  # type: ignore[arg-type]
    )
    result = mash_requests.send_request(settings, case, ["police"], dry_run=True)
    assert [str(o.outcome) for o in result.outcomes] == ["dry_run"]


def test_a_typed_case_is_sent(workspace: Workspace) -> None:
    """A Case with the documented types sends as its mapping would."""
    settings = mash_requests.load_settings(workspace.config)
    result = mash_requests.send_request(settings, typed_case(workspace))
    assert [str(o.outcome) for o in result.outcomes] == ["sent", "sent"]


# -- characters a field may not hold ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("child", "name"), "Leo\x00Hartley", "contains a control character (U+0000)"),
        (("child", "name"), "Leo\tHartley", "contains a tab"),
        (("child", "name"), "Leo\u202eyeltraH", "contains U+202E, a character that reorders"),
        (("child", "name"), "Leo\u2028Hartley", "must be on one line"),
        (("worker", "name"), "Sam\x1b[31mOkafor", "contains a control character (U+001B)"),
        (("worker", "role"), "Social\u2066worker", "contains U+2066"),
        (("consent", "given_by"), "Mother\x07", "contains a control character (U+0007)"),
        (("child", "address"), "14 Alder Row\x00", "contains a control character (U+0000)"),
        (("concerns",), "Concerns\x0bmore", "contains a control character (U+000B)"),
        (("concerns",), "Concerns \u202eeno", "contains U+202E"),
    ],
)
def test_control_and_bidi_characters_are_refused_naming_the_field(
    workspace: Workspace, path: tuple[str, ...], value: str, expected: str
) -> None:
    """NUL, tabs, escapes and bidi overrides are refused; the error never repeats the value."""
    settings = mash_requests.load_settings(workspace.config)
    data = mapping_case(workspace)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(mash_requests.CaseFileError) as caught:
        mash_requests.send_request(settings, data)
    assert caught.value.field == ".".join(path)
    assert expected in str(caught.value)
    assert value not in str(caught.value)
    assert workspace.outbox_files() == []


def test_multi_line_fields_keep_line_breaks_and_tabs(workspace: Workspace) -> None:
    """The address and the concerns may span lines, and tabs pasted with them are kept."""
    settings = mash_requests.load_settings(workspace.config)
    data = mapping_case(workspace)
    data["child"]["address"] = "14 Alder Row\r\nEastbury"
    data["concerns"] = "First:\tschool\nSecond:\thome"
    result = mash_requests.send_request(settings, data, ["police"], dry_run=True)
    assert [str(o.outcome) for o in result.outcomes] == ["dry_run"]


# -- a relative referral form --------------------------------------------------------------


def test_a_mappings_relative_form_not_found_names_the_field_and_folder(
    workspace: Workspace,
) -> None:
    """Without base_dir a relative form is looked for in the current folder: say so."""
    settings = mash_requests.load_settings(workspace.config)
    data = dict(workspace.example_case(), referral_form="MASH-2026-0412.pdf")
    with pytest.raises(mash_requests.InputError) as caught:
        mash_requests.send_request(settings, data)
    error = caught.value
    assert (error.reason, error.field) == ("form_unreadable", "referral_form")
    assert f"resolved against the current folder {Path.cwd()}" in str(error)
    assert "absolute path, or base_dir" in str(error)
    assert [(e.reason, e.partner) for e in rejections(workspace)] == [
        ("form_unreadable", "police"),
        ("form_unreadable", "health"),
    ]


def test_a_mappings_relative_form_not_in_base_dir_names_base_dir(workspace: Workspace) -> None:
    """With base_dir the error says it was resolved against that folder."""
    settings = mash_requests.load_settings(workspace.config)
    data = dict(workspace.example_case(), referral_form="MASH-2026-0412.pdf")
    with pytest.raises(mash_requests.InputError, match="against base_dir") as caught:
        mash_requests.send_request(settings, data, base_dir=workspace.cases, dry_run=True)
    assert caught.value.field == "referral_form"


def test_a_mappings_relative_form_in_base_dir_is_sent(workspace: Workspace) -> None:
    """A relative form found under base_dir is the case's form."""
    settings = mash_requests.load_settings(workspace.config)
    data = dict(workspace.example_case(), referral_form="MASH-2026-0412.pdf")
    result = mash_requests.send_request(settings, data, ["police"], base_dir=workspace.forms)
    assert [str(o.outcome) for o in result.outcomes] == ["sent"]


def test_a_batch_case_whose_partners_are_a_str_is_a_bad_row(workspace: Workspace) -> None:
    """send_batch judges each Case as send_request does: a str of partners is a bad row."""
    from mash_requests.batch import BatchInvalidError, send_batch

    settings = mash_requests.load_settings(workspace.config)
    case = replace(typed_case(workspace), partners="police")  # type: ignore[arg-type]
    with pytest.raises(BatchInvalidError) as caught:
        send_batch(settings, [typed_case(workspace), case])
    [problem] = caught.value.result.problems
    assert problem.row == 2
    assert "field partners: expected a list of partner keys" in problem.message
    assert workspace.outbox_files() == []
