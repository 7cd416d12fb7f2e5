"""Actions that reach outside the document are active content, wherever a viewer runs them.

A form that posts the child's details to a URL when a partner clicks (SubmitForm), loads
data from a file (ImportData), or opens another document (GoToR, GoToE) is not safe to
send. Each is generated in every place the JavaScript and Launch search covers; plain URI
links, named actions and GoTo within the document stay allowed.
"""

from __future__ import annotations

from typing import Any

import pytest

from mash_requests.referral_form import Reason, check_form
from test_referral_form import REF, build_pdf

ACTIONS = {
    "SubmitForm": (
        "<< /S /SubmitForm /F << /FS /URL /F (https://collect.example.org/marf) >> /Flags 4 >>"
    ),
    "ImportData": "<< /S /ImportData /F (child-details.fdf) >>",
    "GoToR": "<< /S /GoToR /F (another-case.pdf) /D [0 /Fit] /NewWindow true >>",
    "GoToE": "<< /S /GoToE /D [0 /Fit] /T << /R /C /N (attached.pdf) >> >>",
}


def placed(action: str, place: str) -> dict[str, Any]:
    """build_pdf options putting ``action`` (raw PDF syntax) in one place a viewer runs it."""
    rect = "/Rect [0 0 10 10]"
    return {
        "open-action": {"catalog": f"/OpenAction {action}"},
        "names-tree": {
            "catalog": "/Names << /JavaScript << /Names [(init) 100 0 R] >> >>",
            "objects": {100: action},
        },
        "document-aa": {"catalog": f"/AA << /WC {action} >>"},
        "page-aa": {"page_extra": f"/AA << /O {action} >>"},
        "link": {"annots": [f"<< /Type /Annot /Subtype /Link {rect} /A {action} >>"]},
        "widget-action": {
            "annots": [f"<< /Type /Annot /Subtype /Widget /FT /Btn /T (send) {rect} /A {action} >>"]
        },
        "widget-aa": {
            "annots": [
                f"<< /Type /Annot /Subtype /Widget /FT /Tx /T (email) {rect} "
                f"/AA << /Bl {action} >> >>"
            ]
        },
        "field-parent-aa": {
            "catalog": "/AcroForm << /Fields [100 0 R] >>",
            "annots": [f"<< /Type /Annot /Subtype /Widget /Parent 100 0 R {rect} >>"],
            "objects": {100: f"<< /FT /Tx /T (total) /Kids [6000 0 R] /AA << /C {action} >> >>"},
        },
        "next-chain": {
            "catalog": "/OpenAction << /S /GoTo /D [10 0 R /Fit] /Next 100 0 R >>",
            "objects": {100: action},
        },
        "next-array": {
            "catalog": "/OpenAction << /S /Named /N /FirstPage /Next [101 0 R 100 0 R] >>",
            "objects": {100: action, 101: "<< /S /GoTo /D [10 0 R /Fit] >>"},
        },
        "bookmark": {
            "catalog": "/Outlines 100 0 R",
            "objects": {
                100: "<< /Type /Outlines /First 101 0 R /Last 101 0 R /Count 1 >>",
                101: f"<< /Title (Send) /Parent 100 0 R /A {action} >>",
            },
        },
    }[place]


WHERE = {
    "open-action": "the document's open action",
    "names-tree": "/Names /JavaScript",
    "document-aa": "the document's additional actions",
    "page-aa": "page 1's additional actions",
    "link": "page 1",
    "widget-action": "page 1",
    "widget-aa": "page 1",
    "field-parent-aa": "page 1",  # reached through its widget's /Parent
    "next-chain": "the document's open action",
    "next-array": "the document's open action",
    "bookmark": "a bookmark",
}


@pytest.mark.parametrize("place", WHERE)
@pytest.mark.parametrize("name", ACTIONS)
def test_an_action_reaching_outside_is_active_content(name: str, place: str) -> None:
    """SubmitForm, ImportData, GoToR and GoToE are refused in every place, named with it."""
    data = build_pdf(
        (f"Case {REF}",), fields={"case_reference": REF}, **placed(ACTIONS[name], place)
    )
    verdict = check_form(data, REF)
    assert verdict.reason is Reason.ACTIVE_CONTENT, verdict.detail
    assert f"{name} action" in verdict.detail
    assert WHERE[place] in verdict.detail


def test_the_refusal_says_what_to_do() -> None:
    """The sentence says actions reaching outside are not sent, and to print to a new PDF."""
    data = build_pdf((f"Case {REF}",), catalog=f"/OpenAction {ACTIONS['SubmitForm']}")
    detail = check_form(data, REF).detail
    assert "sends the form's contents outside the document" in detail
    assert "actions that reach outside the document are not sent" in detail
    assert "print the form to a new PDF" in detail


ALLOWED = {
    "URI": "<< /S /URI /URI (https://www.example.gov.uk/mash) >>",
    "Named": "<< /S /Named /N /Print >>",
    "GoTo": "<< /S /GoTo /D [10 0 R /Fit] >>",
}


@pytest.mark.parametrize("place", ["open-action", "link", "widget-action", "bookmark", "page-aa"])
@pytest.mark.parametrize("name", ALLOWED)
def test_uri_links_named_actions_and_goto_stay_allowed(name: str, place: str) -> None:
    """Plain URI links, named actions and in-document GoTo do not make a form active."""
    data = build_pdf(
        (f"Case {REF}",), fields={"case_reference": REF}, **placed(ALLOWED[name], place)
    )
    assert check_form(data, REF).accepted


def test_a_submit_action_behind_a_uri_link_is_still_found() -> None:
    """A URI link whose /Next chain submits the form is refused for the SubmitForm."""
    link = (
        "<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] "
        f"/A << /S /URI /URI (https://example.org) /Next {ACTIONS['SubmitForm']} >> >>"
    )
    verdict = check_form(build_pdf((f"Case {REF}",), annots=[link]), REF)
    assert verdict.reason is Reason.ACTIVE_CONTENT
    assert "SubmitForm" in verdict.detail
