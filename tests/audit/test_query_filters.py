"""``audit query`` filters: a form's SHA-256 by prefix, and no silent "(0 requests)".

An auditor who gives a filter that cannot match anything (a shortened hash, a typo) must be
told so, not shown an empty list that reads as "that form was never sent".
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from audit_helpers import log_section, prepared, sent
from click.testing import CliRunner, Result

from mash_requests.audit import EventFilter, EventStore
from mash_requests.audit.query import request_states
from mash_requests.cli import main
from mash_requests.gateways import GATEWAY_MODULES

FORM = "084927668d04b1966fb4cdd3a375b550f7f7b0d6d4e3031d511870b2989a0922"
OTHER = "084927668d05" + "0" * 52  # shares 11 hex digits with FORM
REF_1 = "MASH-2026-0412-POLICE-1BAC7"
REF_2 = "MASH-2026-0413-POLICE-2CD08"
REF_3 = "MASH-2026-0414-HEALTH-3EF19"


@pytest.fixture
def filled(
    backend: str, store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Three requests in the log (two with FORM, one with OTHER); the config naming it."""
    for case_ref, ref, form, partner in (
        ("MASH-2026-0412", REF_1, FORM, "police"),
        ("MASH-2026-0413", REF_2, FORM, "police"),
        ("MASH-2026-0414", REF_3, OTHER, "health"),
    ):
        fields = {"request_ref": ref, "request_key": f"key-{ref}", "partner": partner}
        store.append_many(
            [prepared(case_ref, **fields), sent(case_ref, form_sha256=form, **fields)]
        )
    config = tmp_path / "mash-requests.toml"
    config.write_text(log_section(backend, store, monkeypatch), encoding="utf-8")
    return config


def query(config: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["audit", "query", "--format", "jsonl", *args, "--config", str(config)]
    )


def refs(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [json.loads(line)["request_ref"] for line in result.stdout.splitlines()]


@pytest.mark.parametrize(
    "given",
    [FORM, FORM.upper(), FORM[:12], FORM[:12].upper(), FORM[:40], f" {FORM[:12]} "],
    ids=["full", "full-upper", "12", "12-upper", "40", "spaces"],
)
def test_form_sha256_full_or_a_prefix_finds_the_requests(filled: Path, given: str) -> None:
    """The full hash, or its first 12 or more hex digits (any case), finds its requests."""
    assert refs(query(filled, "--form-sha256", given)) == [REF_1, REF_2]


def test_a_prefix_matches_only_hashes_that_start_with_it(filled: Path) -> None:
    """A prefix is a prefix: 084927668d05… is not 084927668d04…, and each finds its own."""
    assert refs(query(filled, "--form-sha256", OTHER[:12])) == [REF_3]
    assert refs(query(filled, "--form-sha256", OTHER)) == [REF_3]
    assert refs(query(filled, "--form-sha256", "f" * 12)) == []


def test_the_store_filters_by_prefix(filled: Path, store: EventStore) -> None:
    """EventFilter(form_sha256=prefix) on the store itself (each backend's SQL)."""
    states = request_states(store, EventFilter(form_sha256=FORM[:16]))
    assert [s.request_ref for s in states] == [REF_1, REF_2]
    assert [s.seq for s in store.events(EventFilter(form_sha256=OTHER[:12]))] == [6]  # its sent


@pytest.mark.parametrize(
    "given",
    ["zz", FORM[:11], FORM + "0", FORM[:12] + "g", "084927668d04…", ""],
    ids=["not-hex", "11", "65", "non-hex-digit", "ellipsis", "empty"],
)
def test_a_form_sha256_that_cannot_match_is_a_usage_error(filled: Path, given: str) -> None:
    """Not hex, fewer than 12 or more than 64 digits: exit 2 saying what to give."""
    result = query(filled, "--form-sha256", given)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--form-sha256'" in result.stderr
    assert "64 hex digits, or the first 12 or more" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("option", "given", "expected"),
    [
        ("--case-ref", "bad ref!", "expected a case reference"),
        ("--case-ref", "-MASH-1", "expected a case reference"),
        ("--case-ref", "MASH-2026-0412\n", "expected a case reference"),
        ("--request-ref", "bad ref!", "expected a request reference"),
        ("--request-ref", "MASH-2026-0412", "expected a request reference"),
        ("--request-ref", "MASH-2026-0412-POLICE-1BAC", "expected a request reference"),
        ("--request-ref", "bad ref!-POLICE-1BAC7", "expected a request reference"),
        ("--partner", "Police", "expected a partner key"),
        ("--partner", "police force", "expected a partner key"),
        ("--gateway", "exchange", "'exchange' is not one of"),
        ("--from", "2026-13-01", "expected YYYY-MM-DD"),
        ("--to", "yesterday", "expected YYYY-MM-DD"),
    ],
)
def test_a_filter_that_cannot_match_is_a_usage_error(
    filled: Path, option: str, given: str, expected: str
) -> None:
    """A case ref, request ref, partner key or gateway of the wrong shape: exit 2, not
    "(0 requests)"."""
    result = query(filled, option, given)
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.stderr and option in result.stderr
    assert expected in result.stderr
    assert result.stdout == ""


def test_well_formed_filters_still_select(filled: Path) -> None:
    """Filters of the right shape select as before."""
    assert refs(query(filled, "--case-ref", "MASH-2026-0413")) == [REF_2]
    assert refs(query(filled, "--request-ref", REF_3)) == [REF_3]
    assert refs(query(filled, "--partner", "health")) == [REF_3]
    assert refs(query(filled, "--gateway", "smtp")) == [REF_1, REF_2, REF_3]


def test_the_copies_kept_for_a_fast_help_are_current() -> None:
    """--gateway offers exactly the gateways a config can name, and --partner takes the
    directory's key pattern (copies, so that --help imports neither module)."""
    from mash_requests.partners import _KEY

    # By module name: mash_requests.cli.audit as an attribute is the click group.
    audit_cli = importlib.import_module("mash_requests.cli.audit")
    assert tuple(GATEWAY_MODULES) == audit_cli._GATEWAYS
    assert f"^{audit_cli._PARTNER_KEY.pattern}$" == _KEY.pattern
