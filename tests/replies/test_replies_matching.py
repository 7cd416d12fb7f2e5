"""Which request a message is about, and whether it counts for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replies_helpers import Sent, reply

from mash_requests.audit.events import Event, EventKind
from mash_requests.audit.sqlite import SQLiteEventStore
from mash_requests.partners import AllowList, Partner, PartnerDirectory
from mash_requests.replies.classify import parse_message
from mash_requests.replies.matching import (
    Mash,
    RequestLookup,
    match_message,
    mentions,
    reference_candidates,
)

REF = "MASH-2026-0412-POLICE-1BAC7"
MID = f"<{REF}.3c9f0e1d2b4a5968@testbury.gov.uk>"
POLICE = Sent(
    "police", REF, MID, f"OFFICIAL-SENSITIVE: AMBER - Request for information - Ref {REF}"
)
DIRECTORY = PartnerDirectory(
    {
        "police": Partner("police", "Testshire Police", ("mash@testshire.police.uk",), "police"),
        "health": Partner("health", "Health", ("safeguarding@nhs.net",), "health"),
    },
    AllowList.parse(["*.police.uk", "nhs.net", "testbury.gov.uk"], where="test"),
)


def _request(ref: str, message_id: str, partner: str, *, sent: bool = True) -> list[Event]:
    common = {
        "case_ref": ref.rsplit("-", 2)[0],
        "request_ref": ref,
        "request_key": f"key-{ref}",
        "partner": partner,
        "recipients": ("mash@testshire.police.uk",),
        "sender": "mash@testbury.gov.uk",
        "message_id": message_id,
    }
    events = [Event(EventKind.PREPARED, details={"rag": "amber"}, **common)]  # type: ignore[arg-type]
    events.append(Event(EventKind.SENT if sent else EventKind.FAILED, **common))  # type: ignore[arg-type]
    return events


@pytest.fixture
def lookup(tmp_path: Path) -> Iterator[RequestLookup]:
    store = SQLiteEventStore(tmp_path / "log.sqlite3")
    store.append_many(
        [
            *_request(REF, MID, "police"),
            *_request("MASH-2026-0412-HEALTH-88FB6", "<h@testbury.gov.uk>", "health"),
            *_request(
                "MASH/2026/7-POLICE-AAAAA",
                "<MASH.2026.7-POLICE-AAAAA.0123456789abcdef@testbury.gov.uk>",
                "police",
            ),
            *_request("MASH-2026-0412-POLICE-FA11D", "<f@testbury.gov.uk>", "police", sent=False),
        ]
    )
    yield RequestLookup(store)
    store.close()


def _match(lookup: RequestLookup, data: bytes):  # type: ignore[no-untyped-def]
    return match_message(parse_message(data), lookup, DIRECTORY)


def test_in_reply_to_carrying_our_message_id_matches(lookup: RequestLookup) -> None:
    """A reply whose In-Reply-To is the request's Message-ID is matched by it."""
    found = _match(lookup, reply(POLICE, subject="RE: something else"))
    assert found.counts and found.request and found.request.request_ref == REF
    assert found.matched_by == "in_reply_to"


def test_references_are_used_when_in_reply_to_is_someone_elses(lookup: RequestLookup) -> None:
    """A reply to a colleague's forward still matches through References."""
    data = reply(
        POLICE,
        threaded=False,
        subject="RE: FW: hello",
        headers={
            "In-Reply-To": "<fw.1@testshire.police.uk>",
            "References": f"{MID} <fw.1@testshire.police.uk>",
        },
    )
    found = _match(lookup, data)
    assert found.counts and found.matched_by == "references"


def test_a_reference_with_a_slash_is_found_from_the_message_id(lookup: RequestLookup) -> None:
    """Our Message-ID turns '/' into '.': such a request is still found by its Message-ID."""
    sent = Sent(
        "police",
        "MASH/2026/7-POLICE-AAAAA",
        "<MASH.2026.7-POLICE-AAAAA.0123456789abcdef@testbury.gov.uk>",
        "x",
    )
    found = _match(lookup, reply(sent, subject="RE: x"))
    assert found.request and found.request.request_ref == "MASH/2026/7-POLICE-AAAAA"


def test_the_subject_reference_matches_when_threading_headers_were_stripped(
    lookup: RequestLookup,
) -> None:
    """Gateways that drop In-Reply-To leave the subject: the reference in it matches."""
    found = _match(
        lookup, reply(POLICE, threaded=False, subject=f"AW: [SECURE] RE: {POLICE.subject}")
    )
    assert found.counts and found.matched_by == "subject"


def test_a_reference_inside_a_longer_token_does_not_match(lookup: RequestLookup) -> None:
    """…-POLICE-1BAC7A is another reference: no request is matched."""
    for subject in (f"RE: Ref {REF}A", f"RE: Ref X{REF}", f"RE: Ref {REF}.2"):
        assert _match(lookup, reply(None, subject=subject)).request is None


def test_an_unknown_reference_is_kept_as_the_claim(lookup: RequestLookup) -> None:
    """A reference-shaped token the log does not know is named for the person who looks."""
    found = _match(lookup, reply(None, subject="RE: Ref MASH-2026-0412-POLICE-99999"))
    assert found.reason == "unknown_request"
    assert found.claimed_ref == "MASH-2026-0412-POLICE-99999"


def test_a_sender_outside_the_partner_is_not_counted(lookup: RequestLookup) -> None:
    """A correct reference from another domain (spoofed or forwarded) does not count."""
    found = _match(lookup, reply(POLICE, sender="someone@gmail.com"))
    assert found.request is not None and not found.counts
    assert found.reason == "sender_not_partner"


def test_another_partners_domain_does_not_count_for_this_partner(lookup: RequestLookup) -> None:
    """A health address answering the police request is not the police answering."""
    found = _match(lookup, reply(POLICE, sender="doctor@nhs.net"))
    assert found.reason == "sender_not_partner"


def test_any_address_in_the_partners_domain_counts(lookup: RequestLookup) -> None:
    """A colleague at the partner's domain (not its MASH mailbox) answers for the partner."""
    assert _match(lookup, reply(POLICE, sender="dc.jones@testshire.police.uk")).counts


def test_a_look_alike_domain_does_not_count(lookup: RequestLookup) -> None:
    """evil-testshire.police.uk is not testshire.police.uk."""
    found = _match(lookup, reply(POLICE, sender="x@eviltestshire.police.uk"))
    assert found.reason == "sender_not_partner"


def test_a_dmarc_failure_does_not_count(lookup: RequestLookup) -> None:
    """The receiving system said the sender's domain did not send it: not counted."""
    data = reply(
        POLICE, headers={"Authentication-Results": "mx; dmarc=fail header.from=testshire.police.uk"}
    )
    assert _match(lookup, data).reason == "authentication_failed"


def test_a_reply_to_a_request_that_was_never_sent_is_not_counted(lookup: RequestLookup) -> None:
    """A request whose send failed cannot have been answered by email."""
    found = _match(lookup, reply(None, subject="RE: Ref MASH-2026-0412-POLICE-FA11D"))
    assert found.reason == "request_not_sent"


def test_no_reference_at_all(lookup: RequestLookup) -> None:
    """A message about nothing we sent is unmatched with reason no_reference."""
    assert _match(lookup, reply(None, subject="Lunch on Friday?")).reason == "no_reference"


def test_two_requests_named_in_one_subject_are_left_to_a_person(lookup: RequestLookup) -> None:
    """A subject naming two of our requests is not guessed at."""
    found = _match(
        lookup,
        reply(None, subject=f"RE: {REF} and MASH-2026-0412-HEALTH-88FB6", sender="a@nhs.net"),
    )
    assert found.request is None and found.reason == "several_requests"


# -- property tests --------------------------------------------------------------------------

PREFIXES = [
    "RE:",
    "Re:",
    "re:",
    "AW:",
    "Aw:",
    "SV:",
    "R:",
    "Antw:",
    "FW:",
    "Fwd:",
    "[SECURE]",
    "[EXTERNAL]",
    "OFFICIAL-SENSITIVE:",
    "OFFICIAL:",
]
REFS = st.builds(
    lambda case, partner, token: f"{case}-{partner}-{token}",
    st.from_regex(r"[A-Z]{2,5}-20[0-9]{2}-[0-9]{3,5}", fullmatch=True),
    st.sampled_from(["POLICE", "HEALTH", "EDUCATION", "ADULT_SOCIAL_CARE"]),
    st.from_regex(r"[0-9A-F]{5}", fullmatch=True),
)


@given(
    ref=REFS,
    prefixes=st.lists(st.sampled_from(PREFIXES), max_size=6),
    spaces=st.sampled_from([" ", "  ", "\t"]),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_prefixes_in_any_order_and_case_never_stop_a_match(
    ref: str, prefixes: list[str], spaces: str
) -> None:
    """Any number of reply prefixes, tags and markings, in any order, leave the reference found."""
    subject = spaces.join([*prefixes, "Request for information - Ref", ref])
    assert ref in reference_candidates(subject)
    assert mentions(subject, ref)
    assert mentions(subject.upper(), ref) and mentions(subject.lower(), ref)


@given(
    ref=REFS,
    before=st.sampled_from(["", "X", "9", "a-", "Ref:", "(", "[", "é"]),
    after=st.sampled_from(["", "A", "0", "-2", ".1", "_v2", "/3", ")", ".", ",", " 7"]),
)
@settings(max_examples=300)
def test_no_reference_is_ever_found_inside_a_longer_token(
    ref: str, before: str, after: str
) -> None:
    """Letters, digits or connectors joined to the reference make it another reference.

    As for case references in forms, "…7 7" on one line counts as one split reference.
    """
    text = f"RE: {before}{ref}{after} thanks"
    joined_before = (
        bool(before) and (before[-1].isalnum() or before[-1] in "-_/.") and before not in ("Ref:",)
    )
    joined_after = (
        after[:1].isalnum()
        or (after[:1] in "-_/." and after[1:2].isalnum())
        or (after == " 7" and ref[-1].isdigit())
    )
    if joined_before or joined_after:
        assert not mentions(text, ref)
    else:
        assert mentions(text, ref)
        assert ref in reference_candidates(text)


@given(ref=REFS, noise=st.from_regex(r"[A-F0-9]{1,3}|[-_./][A-F0-9]{1,3}", fullmatch=True))
def test_a_longer_reference_never_yields_the_shorter_one(ref: str, noise: str) -> None:
    """Candidates are whole tokens: a longer reference is never taken for ours."""
    text = f"RE: {ref}{noise}"
    assert ref not in reference_candidates(text)
    assert not mentions(text, ref)


@given(
    ref=REFS,
    before=st.text(alphabet="ab9 -_./:[]()é", max_size=4),
    after=st.text(alphabet="ab9 -_./:[]()é", max_size=4),
    upper=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_mentions_agrees_with_the_case_reference_matcher(
    ref: str, before: str, after: str, upper: bool
) -> None:
    """On one-line text, subject matching gives exactly contains_case_ref's answer."""
    from mash_requests.referral_form import contains_case_ref

    text = f"RE: {before}{ref}{after}"
    text = text.upper() if upper else text
    assert mentions(text, ref) == contains_case_ref(text, ref)


@given(
    message_id=st.from_regex(r"<[A-Za-z0-9.$_-]{1,40}@[a-z0-9.-]{1,20}>", fullmatch=True),
    folded=st.booleans(),
    case=st.sampled_from(["Message-ID", "Message-Id", "MESSAGE-ID"]),
)
def test_the_fast_message_id_is_the_parsed_one(message_id: str, folded: bool, case: str) -> None:
    """Deciding "already seen" from the header block gives the same id as a full parse."""
    from mash_requests.replies.classify import message_id_of

    separator = "\r\n " if folded else " "
    head = f"From: a@testshire.police.uk\r\n{case}:{separator}{message_id}\r\nSubject: x\r\n"
    data = (head + "\r\nbody\r\n").encode()
    assert message_id_of(data) == parse_message(data).message_id == message_id


# -- the MASH's own mail is never a partner's answer ----------------------------------------

MASH = Mash.of("mash@testbury.gov.uk", "mash-replies@testbury.gov.uk")
COUNCIL = PartnerDirectory(
    {
        "education": Partner(
            "education", "Education", ("education.safeguarding@testbury.gov.uk",), "education"
        ),
    },
    AllowList.parse(["testbury.gov.uk"], where="test"),
)
EDUCATION_REF = "MASH-2026-0412-EDUCATION-C7BCD"
EDUCATION = Sent(
    "education",
    EDUCATION_REF,
    f"<{EDUCATION_REF}.5e2b8f1a0c9d4e37@testbury.gov.uk>",
    f"OFFICIAL-SENSITIVE: AMBER - Request for information - Ref {EDUCATION_REF}",
)


@pytest.fixture
def council(tmp_path: Path) -> Iterator[RequestLookup]:
    """A request to education, which shares the MASH's domain (the council's)."""
    store = SQLiteEventStore(tmp_path / "council.sqlite3")
    store.append_many(_request(EDUCATION_REF, EDUCATION.message_id, "education"))
    yield RequestLookup(store)
    store.close()


def _council_match(lookup: RequestLookup, data: bytes):  # type: ignore[no-untyped-def]
    return match_message(parse_message(data), lookup, COUNCIL, MASH)


def test_a_copy_of_the_request_itself_never_answers_it(council: RequestLookup) -> None:
    """A Bcc or journal copy of our own request (its own Message-ID) is not its answer."""
    data = reply(
        EDUCATION,
        sender="mash@testbury.gov.uk",
        subject=EDUCATION.subject,
        threaded=False,
        message_id=EDUCATION.message_id,
    )
    found = _council_match(council, data)
    assert not found.counts and found.reason == "own_message"


@pytest.mark.parametrize(
    "sender", ["mash@testbury.gov.uk", "mash-replies@testbury.gov.uk", "sam.okafor@testbury.gov.uk"]
)
def test_mail_from_the_mash_never_answers_a_partner_sharing_its_domain(
    council: RequestLookup, sender: str
) -> None:
    """The MASH's mailboxes, and anyone else at its domain who is not one of the partner's
    listed addresses (a worker forwarding the reply, a colleague's note), do not close the
    request: the directory cannot tell them from the partner's staff."""
    data = reply(EDUCATION, sender=sender, subject=f"FW: RE: {EDUCATION.subject}")
    found = _council_match(council, data)
    assert not found.counts and found.reason == "from_the_mash"


def test_the_partners_listed_address_at_the_mashs_domain_answers(council: RequestLookup) -> None:
    found = _council_match(
        council, reply(EDUCATION, sender="education.safeguarding@testbury.gov.uk")
    )
    assert found.counts and found.request is not None
