"""The operational log (-v, --log-file, --log-format json): useful to an operator, and never
holding a child's details or a secret, through a real SMTP server."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from smtp_server import PASSWORD, USER, Server

from mash_requests._logging import AllowListFilter, JsonFormatter, TextFormatter
from mash_requests.cli import main
from workspace import CONFIG_TEMPLATE, Workspace

HMAC_KEY = "hmac-key-7f3a9c2e5b1d8f4a0c6e1b9d3f7a2c5e8b0d4f6a"
FORM_PASSWORD = "form-password-4e8b2a"
#: What the example case holds about the child, in every way it could be written.
CHILD_DETAILS = [
    "Leo Hartley", "Hartley", "2016-04-09", "9 April 2016", "09/04/2016", "14 Alder Row",
    "EB3 2QT", "arrived hungry", "unexplained bruise", "new partner has moved in",
]  # fmt: skip
SECRETS = [PASSWORD, HMAC_KEY, FORM_PASSWORD]


def smtp_workspace(workspace: Workspace, server: Server, ca_file: Path) -> Path:
    config = CONFIG_TEMPLATE.replace("[retry]", "[retry]\nmax_seconds = 30") + "\n".join(
        [
            "[gateway]",
            'type = "smtp"',
            "[gateway.smtp]",
            'host = "127.0.0.1"',
            f"port = {server.port}",
            f'ca_file = "{ca_file}"',
            'auth = "login"',
            f'username = "{USER}"',
            'mailbox = "mash@testbury.gov.uk"',
            'password_env = "TEST_SMTP_PASSWORD"',
            "timeout = 5",
            "[log]",
            'hmac_key_env = "TEST_LOG_KEY"',
            "[form]",
            'password_env = "TEST_FORM_PASSWORD"',
        ]
    )
    workspace.config.write_text(config + "\n", encoding="utf-8")
    return workspace.write_case(workspace.example_case())


def test_verbose_json_log_of_a_send_holds_no_child_details_or_secrets(
    workspace: Workspace, starttls_server: Server, ca_file: Path
) -> None:
    """A -vv JSON-log send-request through SMTP logs each step; no child detail or secret."""
    case = smtp_workspace(workspace, starttls_server, ca_file)
    starttls_server.handler.script = ["451"]  # one transient failure: an attempt_failed line
    log_file = workspace.root / "mash.log"
    env = {
        **os.environ,
        "TEST_SMTP_PASSWORD": PASSWORD,
        "TEST_LOG_KEY": HMAC_KEY,
        "TEST_FORM_PASSWORD": FORM_PASSWORD,
    }
    send_request = Path(sys.executable).with_name("send-request")
    args = ["--config", str(workspace.config), "--case", str(case)]
    done = subprocess.run(
        [str(send_request), "-vv", "--log-format", "json", "--log-file", str(log_file), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(starttls_server.handler.delivered) == 2
    text = log_file.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    sent = [r for r in records if r["message"] == "request sent"]
    assert sorted(r["partner"] for r in sent) == ["health", "police"]
    assert all(r["case_ref"] == "MASH-2026-0412" and r["outcome"] == "sent" for r in sent)
    assert [r["outcome"] for r in records if r["message"] == "attempt failed"] == ["attempt_failed"]
    assert any(r["level"] == "DEBUG" for r in records)  # -vv: the debug lines too
    everything = text + done.stdout + done.stderr
    leaked = [value for value in CHILD_DETAILS + SECRETS if value in everything]
    assert leaked == []


def test_log_options_go_before_the_subcommand(workspace: Workspace) -> None:
    """mash-requests -v --log-file F send-request … writes text lines to F, not the console."""
    case = workspace.write_case(workspace.example_case())
    log_file = workspace.root / "mash.log"
    args = ["-v", "--log-file", str(log_file), "send-request", "--config", str(workspace.config)]
    result = CliRunner().invoke(main, [*args, "--case", str(case)])
    assert result.exit_code == 0, result.output
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert any(" INFO mash_requests.dispatch: request sent " in line for line in lines)
    assert "mash_requests.dispatch" not in result.output


def test_the_log_says_how_each_run_ended(workspace: Workspace) -> None:
    """-v --log-file: each run's last line is "command ended" with its exit code, for a
    scheduled task's history: 0 for a send, 2 for the same case again (refused) and for a
    config that cannot be loaded, from both commands; the Error: line stays on stderr."""
    case = workspace.write_case(workspace.example_case())
    log_file = workspace.root / "mash.log"
    logging_args = ["-v", "--log-format", "json", "--log-file", str(log_file)]
    send = ["send-request", "--config", str(workspace.config), "--case", str(case)]
    assert CliRunner().invoke(main, [*logging_args, *send]).exit_code == 0
    again = subprocess.run(
        [str(Path(sys.executable).with_name("send-request")), *logging_args, *send[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 2 and "Error: case MASH-2026-0412" in again.stderr
    bad = CliRunner().invoke(
        main, [*logging_args, "audit", "verify", "--config", str(workspace.root / "none.toml")]
    )
    assert bad.exit_code == 2
    records = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    ended = [r for r in records if r["message"] == "command ended"]
    assert [r["exit_code"] for r in ended] == [0, 2, 2]
    starts = [i for i, r in enumerate(records) if r["message"] == "command started"]
    ends = [i for i, r in enumerate(records) if r["message"] == "command ended"]
    assert ends == [*(s - 1 for s in starts[1:]), len(records) - 1]  # each run's last line
    assert "Error" not in log_file.read_text(encoding="utf-8")


def test_an_unwritable_log_file_is_a_usage_error(workspace: Workspace) -> None:
    """A --log-file in a folder that does not exist exits 2 with one Error line; nothing sent."""
    case = workspace.write_case(workspace.example_case())
    missing = workspace.root / "no-such-folder" / "mash.log"
    result = CliRunner().invoke(
        main,
        ["--log-file", str(missing), "send-request", "--config", str(workspace.config),
         "--case", str(case)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: log file {missing}: cannot be opened")
    assert workspace.outbox_files() == []


def test_verbose_and_quiet_together_are_refused() -> None:
    """-v with -q is a usage error (exit 2)."""
    result = CliRunner().invoke(main, ["-v", "-q", "schema", "case"])
    assert result.exit_code == 2
    assert "give --verbose or --quiet, not both" in result.output


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "mash_requests.x", logging.INFO, __file__, 1, "request sent", (), None
    )
    record.__dict__.update(extra)
    return record


def test_extra_fields_off_the_allow_list_are_never_written() -> None:
    """An extra field not on the allow-list is stripped and named as withheld, in both formats."""
    for formatter in (JsonFormatter(), TextFormatter()):
        record = _record(request_ref="R-1", child_name="Leo Hartley", body="Dear police")
        assert AllowListFilter().filter(record)
        line = formatter.format(record)
        assert "Leo Hartley" not in line and "Dear police" not in line
        assert "R-1" in line and "child_name" in line


def test_text_values_cannot_forge_a_second_line() -> None:
    """A value with a line break is quoted, so one record is always one line."""
    record = _record(case_ref="MASH-1\n2026-01-01 INFO forged")
    assert "\n" not in TextFormatter().format(record)
