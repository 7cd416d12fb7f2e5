"""The case file's JSON Schema agrees with the loader: examples pass, refused files fail both."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from mash_requests.case import parse_case
from mash_requests.case_schema import case_schema
from mash_requests.cli import main
from mash_requests.errors import CaseFileError

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples" / "cases").glob("*.json")) + sorted(
    (ROOT / "src" / "mash_requests" / "starter" / "cases").glob("*.json")
)
VALIDATOR = Draft202012Validator(case_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLES[0].read_text(encoding="utf-8"))
    return data


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The schema itself passes the draft 2020-12 meta-schema."""
    Draft202012Validator.check_schema(case_schema())
    assert case_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_cases_are_valid(path: Path) -> None:
    """Every shipped example case (examples/ and the init starter) passes the schema."""
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(VALIDATOR.iter_errors(data)) == []
    parse_case(data, source=str(path))


def _set(data: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, key = dotted.split(".")
    target = data
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[key]
    else:
        target[key] = value
    return data


_DELETE = object()
INVALID = {
    "missing case_ref": ("case_ref", _DELETE),
    "case_ref with a space": ("case_ref", "MASH 2026"),
    "case_ref too long": ("case_ref", "M" * 65),
    "unknown rag": ("rag", "purple"),
    "impossible date": ("child.date_of_birth", "2015-02-31"),
    "date in another format": ("child.date_of_birth", "31/01/2015"),
    "name on two lines": ("child.name", "Leo\nHartley"),
    "blank concerns": ("concerns", "   "),
    "unknown field": ("nhs_number", "943 476 5919"),
    "unknown child field": ("child.nickname", "L"),
    "not_given without a reason": ("consent", {"status": "not_given"}),
    "bad worker email": ("worker.email", "sam.okafor"),
    "partners not a list": ("partners", "police"),
    "child not an object": ("child", "Leo"),
    "null contact_id": ("contact_id", None),
    "tab in a name": ("child.name", "Leo\tHartley"),
    "NUL in a name": ("child.name", "Leo\x00"),
    "right-to-left override in a name": ("worker.name", "Sam \u202eOkafor"),
    "line separator in a name": ("child.name", "Leo\u2028Hartley"),
    "NUL in the concerns": ("concerns", "seen\x00 at school"),
    "bidi isolate in the address": ("child.address", "1 High St \u2066x\u2069"),
    "control character in consent's reason": (
        "consent",
        {"status": "not_sought", "reason": "x\x07"},
    ),
}


@pytest.mark.parametrize("name", INVALID)
def test_a_case_the_loader_refuses_is_refused_by_the_schema(name: str) -> None:
    """Each invalid case is refused by the loader and by the schema alike."""
    field, value = INVALID[name]
    data = _set(example(), field, value)
    with pytest.raises(CaseFileError):
        parse_case(data, source="t.json")
    assert list(VALIDATOR.iter_errors(data)) != []


def test_schema_command_prints_the_schema() -> None:
    """`mash-requests schema case` prints the schema as JSON."""
    result = CliRunner().invoke(main, ["schema", "case"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == case_schema()
