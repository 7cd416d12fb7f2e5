"""``--json``: one JSON document per run on stdout, errors included, exit codes unchanged."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from mash_requests.cli import main
from test_batch import make_cases, write_jsonl
from workspace import Workspace


def run_json(*args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``mash-requests ARGS --json``: (exit code, the one document on stdout, stderr)."""
    result = CliRunner().invoke(main, [*args, "--json"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    # The whole of stdout is one document: json.loads refuses anything before or after it.
    document = json.loads(result.stdout)
    assert document["exit_code"] == result.exit_code
    assert document["ok"] is (result.exit_code == 0)
    return result.exit_code, document, result.stderr


def send(workspace: Workspace, *args: str) -> tuple[int, dict[str, Any], str]:
    return run_json("send-request", "--config", str(workspace.config), *args)


# -- send-request --------------------------------------------------------------------------


def test_send_request_json_lists_each_request(workspace: Workspace) -> None:
    """A sent case: one document with the case, the count and every request's outcome."""
    case = workspace.write_case(workspace.example_case())
    code, document, _ = send(workspace, "--case", str(case))
    assert code == 0
    assert document["command"] == "send-request" and document["error"] is None
    assert document["case_ref"] == "MASH-2026-0412" and document["sent"] == 2
    requests = {r["partner"]: r for r in document["requests"]}
    assert set(requests) == {"police", "health"}
    police = requests["police"]
    assert police["outcome"] == "sent" and police["attempts"] == 1
    assert police["recipients"] == ["mash@testshire.police.uk"]
    assert police["request_ref"].startswith("MASH-2026-0412-POLICE-")
    assert police["message_id"].startswith("<") and police["reason"] is None
    assert datetime.fromisoformat(police["due"]).utcoffset() is not None  # ISO 8601, offset
    logged = {e.request_ref for e in workspace.events() if e.kind == "sent"}
    assert {r["request_ref"] for r in document["requests"]} == logged


def test_send_request_json_has_the_same_keys_when_it_fails(workspace: Workspace) -> None:
    """A script reads the same keys from a refused run as from a sent one."""
    case = workspace.write_case(workspace.example_case())
    _, sent, _ = send(workspace, "--case", str(case))
    _, refused, _ = send(workspace, "--case", str(case))
    assert list(sent) == list(refused)


def test_send_request_json_dry_run(workspace: Workspace) -> None:
    """A dry run: exit 0, each request dry_run, nothing sent."""
    case = workspace.write_case(workspace.example_case())
    code, document, _ = send(workspace, "--case", str(case), "--dry-run")
    assert code == 0 and document["dry_run"] is True and document["sent"] == 0
    assert {r["outcome"] for r in document["requests"]} == {"dry_run"}
    assert workspace.outbox_files() == []


def test_send_request_json_duplicate_carries_the_earlier_references(
    workspace: Workspace,
) -> None:
    """A duplicate: exit 2; reason, states, earlier references and the advice as fields."""
    case = workspace.write_case(workspace.example_case())
    _, first, _ = send(workspace, "--case", str(case))
    code, document, err = send(workspace, "--case", str(case))
    assert code == 2
    error = document["error"]
    assert error["type"] == "DuplicateRequestError" and error["reason"] == "duplicate"
    assert error["states"] == {"police": "sent", "health": "sent"}
    assert error["earlier"] == {r["partner"]: r["request_ref"] for r in first["requests"]}
    assert error["partners"] == ["police", "health"] and error["others"] == []
    assert error["case_ref"] == "MASH-2026-0412"
    assert "--resend" not in error["message"]  # the library's words name no flag
    assert any("--resend --reason TEXT" in line for line in error["advice"])
    assert err.startswith("Error: ")  # the person reading the task's history still sees it


def test_send_request_json_refused_form_carries_the_verdict(workspace: Workspace) -> None:
    """Another case's form: exit 2; the verdict's reason and fingerprint as fields."""
    data = workspace.example_case()
    data["referral_form"] = "../forms/MASH-2026-0413.pdf"
    code, document, _ = send(workspace, "--case", str(workspace.write_case(data)))
    assert code == 2
    error = document["error"]
    assert error["type"] == "FormRefusedError"
    assert error["reason"] == error["verdict"]["reason"] in ("wrong_case", "case_ref_missing")
    assert len(error["verdict"]["sha256"]) == 64


def test_send_request_json_bad_case_file_names_the_field(workspace: Workspace) -> None:
    """An invalid case file: exit 2, reason invalid_case and the field at fault."""
    data = workspace.example_case()
    data["child"]["date_of_birth"] = "31/02/2015"
    code, document, _ = send(workspace, "--case", str(workspace.write_case(data)))
    assert code == 2
    assert document["error"]["reason"] == "invalid_case"
    assert document["error"]["field"] == "child.date_of_birth"
    assert "31/02/2015" not in json.dumps(document["error"]["field"])


def test_send_request_json_bad_config_is_reason_config(
    workspace: Workspace, tmp_path: Path
) -> None:
    """A misspelt config key: exit 2, reason config."""
    config = tmp_path / "bad.toml"
    config.write_text('[mash]\nnmae = "x"\n', encoding="utf-8")
    case = workspace.write_case(workspace.example_case())
    code, document, _ = run_json("send-request", "--config", str(config), "--case", str(case))
    assert code == 2
    assert document["error"]["type"] == "ConfigError" and document["error"]["reason"] == "config"
    assert "nmae" in document["error"]["message"]


def test_send_request_json_usage_error_is_a_document_too(workspace: Workspace) -> None:
    """--partner with --all-partners: exit 2 and reason usage, still one document."""
    case = workspace.write_case(workspace.example_case())
    code, document, _ = send(
        workspace, "--case", str(case), "--partner", "police", "--all-partners"
    )
    assert code == 2 and document["error"]["reason"] == "usage"


def test_send_request_shortcut_takes_json(workspace: Workspace) -> None:
    """The ``send-request`` command itself takes --json as ``mash-requests send-request``."""
    from mash_requests.cli import _standalone, send_request

    case = workspace.write_case(workspace.example_case())
    command = _standalone(send_request, "send-request")
    args = ["--config", str(workspace.config), "--case", str(case), "--json"]
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sent"] == 2


# -- send-batch ----------------------------------------------------------------------------


def batch(workspace: Workspace, *args: str) -> tuple[int, dict[str, Any], str]:
    return run_json("send-batch", "--config", str(workspace.config), *args)


def test_send_batch_json_counts_every_outcome(workspace: Workspace) -> None:
    """A batch: every count (zeros too), no bad rows; a second run counts already_sent."""
    path = write_jsonl(workspace, make_cases(workspace, 2))
    code, document, _ = batch(workspace, str(path))
    assert code == 0 and document["command"] == "send-batch"
    assert document["counts"]["sent"] == 4
    assert document["counts"]["failed"] == 0 and document["counts"]["already_sent"] == 0
    assert document["bad_rows"] == [] and document["refused"] == []
    assert document["interrupted"] is False
    code, again, _ = batch(workspace, str(path))
    assert code == 0 and again["counts"]["sent"] == 0 and again["counts"]["already_sent"] == 4


def test_send_batch_json_has_the_same_keys_when_it_fails(workspace: Workspace) -> None:
    """An unreadable batch file gives the same keys as a batch that ran, counts all zero."""
    _, ran, _ = batch(workspace, str(write_jsonl(workspace, make_cases(workspace, 1))))
    missing = workspace.root / "missing.jsonl"
    code, failed, _ = batch(workspace, str(missing))
    assert code == 2 and list(ran) == list(failed)
    assert set(failed["counts"]) == set(ran["counts"]) and not any(failed["counts"].values())


def test_send_batch_json_bad_rows_are_listed_and_nothing_sent(workspace: Workspace) -> None:
    """Bad rows: exit 2, each row with its number and problem, reason batch_invalid."""
    cases = make_cases(workspace, 3)
    cases[1]["rag"] = "purple"
    code, document, _ = batch(workspace, str(write_jsonl(workspace, cases)))
    assert code == 2
    assert [row["row"] for row in document["bad_rows"]] == [2]
    assert "rag" in document["bad_rows"][0]["message"]
    assert document["error"]["reason"] == "batch_invalid"
    assert document["error"]["advice"] == [
        "Fix them, or pass --skip-invalid to send the valid rows"
    ]
    assert workspace.outbox_files() == []


def test_send_batch_json_skip_invalid_sends_the_rest_and_exits_1(workspace: Workspace) -> None:
    """--skip-invalid: the valid rows are sent, the bad one listed, exit 1 with no error."""
    cases = make_cases(workspace, 2)
    cases[0]["rag"] = "purple"
    path = write_jsonl(workspace, cases)
    code, document, _ = batch(workspace, str(path), "--skip-invalid")
    assert code == 1 and document["error"] is None
    assert document["counts"]["sent"] == 2 and [r["row"] for r in document["bad_rows"]] == [1]


def test_send_batch_json_refusals_are_rows_and_counts(workspace: Workspace) -> None:
    """A case refused while sending: its row and reason, and the refusal count per request."""
    cases = make_cases(workspace, 2)
    cases[1]["referral_form"] = cases[0]["referral_form"]  # another case's form
    code, document, _ = batch(workspace, str(write_jsonl(workspace, cases)))
    assert code == 1
    [refused] = document["refused"]
    assert refused["row"] == 2 and refused["case_ref"] == cases[1]["case_ref"]
    assert document["refusals"] == {refused["reason"]: 2}
    assert document["counts"]["rejected"] == 2 and document["counts"]["sent"] == 2


# -- gateway check -------------------------------------------------------------------------


def test_gateway_check_json_ok(workspace: Workspace) -> None:
    """gateway check --json: the gateway's kind and what was verified."""
    code, document, _ = run_json("gateway", "check", "--config", str(workspace.config))
    assert code == 0
    assert document["gateway"] == "outbox" and "writable" in document["checked"]


def test_gateway_check_json_failure_says_what_failed(tmp_path: Path) -> None:
    """An SMTP server that is not there: exit 1, failure connection, the sentence."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "c.toml"
    config.write_text(
        '[mash]\nsender = "mash@council.example"\n[gateway]\ntype = "smtp"\n'
        '[gateway.smtp]\nhost = "127.0.0.1"\nmailbox = "mash@council.example"\n'
        f'port = {port}\nsecurity = "none"\nauth = "none"\ntimeout = 2\n',
        encoding="utf-8",
    )
    code, document, _ = run_json("gateway", "check", "--config", str(config))
    assert code == 1, document
    error = document["error"]
    assert document["gateway"] == "smtp" and document["checked"] is None
    assert error["failure"] == "connection" and error["reason"] == "connection"
    assert error["error_class"] in ("transient", "permanent")
    assert str(port) in error["message"]


# -- the README's examples -----------------------------------------------------------------


def readme_examples() -> list[dict[str, Any]]:
    """The JSON documents shown in the README's "JSON output" section, parsed."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### JSON output", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def readme_example(command: str, *, ok: bool = True) -> dict[str, Any]:
    return next(d for d in readme_examples() if d["command"] == command and d["ok"] is ok)


def test_readme_examples_have_the_keys_real_runs_have(workspace: Workspace) -> None:
    """Each example in the README has exactly the keys of a real run of its command."""
    case = workspace.write_case(workspace.example_case())
    _, sent, _ = send(workspace, "--case", str(case), "--partner", "police")
    _, duplicate, _ = send(workspace, "--case", str(case), "--partner", "police")
    shown = readme_example("send-request")
    assert list(shown) == list(sent)
    assert list(shown["requests"][0]) == list(sent["requests"][0])
    assert list(readme_example("send-request", ok=False)["error"]) == list(duplicate["error"])
    _, ran, _ = batch(workspace, str(write_jsonl(workspace, make_cases(workspace, 1))))
    assert list(readme_example("send-batch")) == list(ran)
    assert list(readme_example("send-batch")["counts"]) == list(ran["counts"])
    _, checked, _ = run_json("gateway", "check", "--config", str(workspace.config))
    assert list(readme_example("gateway check", ok=False)) == list(checked)
