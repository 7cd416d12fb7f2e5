"""The Python API's inputs: partners as asked, a case in every form judged by the same rules."""

from __future__ import annotations

from datetime import date
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
