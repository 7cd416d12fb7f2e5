"""Loading the configuration: defaults, the directory, and every mistake named at load time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mash_requests.config import load_log_settings, load_settings
from mash_requests.errors import ConfigError

BASE = """
[mash]
sender = "mash@testbury.gov.uk"

[directory]
allowed_domains = ["*.police.uk", "nhs.net"]

[partners.police]
name = "Testshire Police"
addresses = ["{address}"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mash-requests.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_config_means_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no file anywhere, the outbox and SQLite log go under ./mash-data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASH_REQUESTS_CONFIG", raising=False)
    settings = load_settings(None)
    assert settings.gateway.kind == "outbox"
    assert settings.log.path == tmp_path / "mash-data" / "dispatch-log.sqlite3"
    assert settings.marking == "OFFICIAL-SENSITIVE"
    assert len(settings.directory) == 0


def test_config_is_found_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$MASH_REQUESTS_CONFIG names the file when --config is not given."""
    path = write(tmp_path, BASE.format(address="mash@testshire.police.uk"))
    monkeypatch.setenv("MASH_REQUESTS_CONFIG", str(path))
    assert load_settings(None).directory.keys() == ["police"]


@pytest.mark.parametrize(
    "address", ["mash@gmail.com", "mash@police.uk.evil.com", "mash@evilpolice.uk", "a b@nhs.net"]
)
def test_address_outside_allow_list_is_refused_at_load(tmp_path: Path, address: str) -> None:
    """An address whose domain is not allowed stops the config from loading."""
    with pytest.raises(ConfigError, match="partner 'police'"):
        load_settings(write(tmp_path, BASE.format(address=address)))


def test_suffix_entry_matches_subdomains_only(tmp_path: Path) -> None:
    """'*.police.uk' allows met.police.uk and deeper names."""
    settings = load_settings(write(tmp_path, BASE.format(address="a@mash.met.police.uk")))
    assert settings.directory.get("police").addresses == ("a@mash.met.police.uk",)


def test_retired_gsi_domain_is_refused(tmp_path: Path) -> None:
    """The retired gcsx/gsi domains cannot be allow-listed."""
    text = BASE.format(address="a@x.police.uk").replace('"nhs.net"', '"*.gcsx.gov.uk"')
    with pytest.raises(ConfigError, match="retired government"):
        load_settings(write(tmp_path, text))


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    """A misspelt key is an error naming it, not silently ignored."""
    text = BASE.format(address="a@x.police.uk").replace("[mash]", "[mash]\nmarkign = 'X'")
    with pytest.raises(ConfigError, match=r"\[mash\] markign: unknown key"):
        load_settings(write(tmp_path, text))


def test_literal_secret_is_refused(tmp_path: Path) -> None:
    """A password written in the config is refused; it must come from env or a file."""
    text = BASE.format(address="a@x.police.uk") + '\n[form]\npassword = "hunter2"\n'
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert "password_env" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[mash\n"))


def test_missing_config_file(tmp_path: Path) -> None:
    """--config naming a missing file says so."""
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    """A number where text belongs is named with the table and key."""
    text = BASE.format(address="a@x.police.uk") + "\n[timescales]\nred_hours = 'soon'\n"
    with pytest.raises(ConfigError, match=r"\[timescales\] red_hours: expected a number"):
        load_settings(write(tmp_path, text))


def test_example_config_loads() -> None:
    """The shipped example config is valid."""
    settings = load_settings(Path(__file__).parents[1] / "examples" / "mash-requests.toml")
    assert settings.directory.keys() == ["police", "health", "education", "probation", "housing"]


def test_log_settings_load_without_gateway_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Auditors can find the log even when the gateway's secret is not set."""
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    text = BASE.format(address="a@x.police.uk") + (
        '\n[gateway]\ntype = "graph"\n[gateway.graph]\nmailbox = "mash@testbury.gov.uk"\n'
        'tenant_id = "t"\nclient_id = "c"\nclient_secret_env = "NO_SUCH_SECRET"\n'
        '\n[log]\npath = "evidence/log.sqlite3"\n'
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="NO_SUCH_SECRET"):
        load_settings(path)
    assert load_log_settings(path).path == tmp_path / "evidence" / "log.sqlite3"


# -- the operator ([mash] operator, $MASH_OPERATOR) -------------------------------------------

OK = BASE.format(address="mash@testshire.police.uk")


@pytest.mark.parametrize(
    "value", ["\r=1+1", "jsmith\nadmin", "tab\there", "x" * 101, "   "], ids=repr
)
def test_bad_operator_in_the_environment_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """An operator name that is not one short printable line is refused at load, naming
    $MASH_OPERATOR as its source."""
    monkeypatch.setenv("MASH_OPERATOR", value)
    with pytest.raises(ConfigError, match="environment variable MASH_OPERATOR"):
        load_settings(write(tmp_path, OK))


def test_bad_operator_in_the_config_names_the_key(tmp_path: Path) -> None:
    """A multi-line [mash] operator is refused, naming the file and key."""
    text = OK.replace("[mash]\n", '[mash]\noperator = "a\\nb"\n')
    with pytest.raises(ConfigError, match=r"mash-requests\.toml: \[mash\] operator: .*one line"):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize("value", ["Testbury\\nMASH", "Testbury\\r\\nBcc: x", "tab\\there"])
def test_a_mash_name_that_is_not_one_line_is_refused_at_load(tmp_path: Path, value: str) -> None:
    """A line break (or other control character) in [mash] name is refused at load, naming the
    file and key, as marking is (the auditors' report settings too): not first at send time,
    blaming the case or template."""
    from mash_requests.config import load_report_settings

    path = write(tmp_path, OK.replace("[mash]\n", f'[mash]\nname = "{value}"\n'))
    for load in (load_settings, load_report_settings):
        with pytest.raises(ConfigError, match=r"mash-requests\.toml: \[mash\] name: .*one line"):
            load(path)


def test_good_operator_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain name from the environment is the operator, trimmed."""
    monkeypatch.setenv("MASH_OPERATOR", " Sam Okafor ")
    assert load_settings(write(tmp_path, OK)).operator == "Sam Okafor"


# -- gateway tables that are not in use ---------------------------------------------------------

SMTP_UNUSED = """
[gateway]
type = "outbox"

[gateway.smtp]
host = "smtp.council.example"
mailbox = "mash@testbury.gov.uk"
auth = "plain"
username = "mash"
"""


def test_typo_in_an_unused_gateway_table_is_refused(tmp_path: Path) -> None:
    """A mistyped key in [gateway.smtp] is refused even while the outbox is in use."""
    text = OK + SMTP_UNUSED + 'password_env = "SMTP_PASSWORD"\nprot = 587\n'
    with pytest.raises(ConfigError, match=r"\[gateway\.smtp\] prot: unknown key"):
        load_settings(write(tmp_path, text))


def test_inline_password_in_an_unused_gateway_table_is_refused(tmp_path: Path) -> None:
    """A password written into an unused [gateway.smtp] is refused at load."""
    text = OK + SMTP_UNUSED + 'password = "hunter2"\n'
    with pytest.raises(ConfigError, match=r"\[gateway\.smtp\] password: secrets are not written"):
        load_settings(write(tmp_path, text))


#: Gateway tables, each with a literal secret it would not read in its setting (or would).
LITERAL_SECRETS = {
    "smtp password, auth none": (
        "smtp",
        'host = "smtp.council.example"\nmailbox = "mash@testbury.gov.uk"\npassword = "hunter2"\n',
        "password",
    ),
    "smtp client_secret, auth plain": (
        "smtp",
        'host = "smtp.council.example"\nmailbox = "mash@testbury.gov.uk"\nauth = "plain"\n'
        'username = "mash"\npassword_env = "SMTP_PASSWORD"\nclient_secret = "hunter2"\n',
        "client_secret",
    ),
    "ews password, auth oauth": (
        "ews",
        'mailbox = "mash@testbury.gov.uk"\nendpoint = "https://mail.council.example/EWS"\n'
        'auth = "oauth"\ntenant_id = "council.onmicrosoft.com"\nclient_id = "app"\n'
        'client_secret_env = "EWS_SECRET"\npassword = "hunter2"\n',
        "password",
    ),
    "ews client_secret, auth ntlm": (
        "ews",
        'mailbox = "mash@testbury.gov.uk"\nendpoint = "https://mail.council.example/EWS"\n'
        'username = "mash"\npassword_env = "EWS_PASSWORD"\nclient_secret = "hunter2"\n',
        "client_secret",
    ),
    "graph client_secret": (
        "graph",
        'mailbox = "mash@testbury.gov.uk"\ntenant_id = "council.onmicrosoft.com"\n'
        'client_id = "app"\nclient_secret = "hunter2"\n',
        "client_secret",
    ),
}


@pytest.mark.parametrize("in_use", [True, False], ids=["in use", "unused"])
@pytest.mark.parametrize("case", LITERAL_SECRETS, ids=str)
def test_a_secret_written_in_a_gateway_table_is_named_as_one_in_every_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, in_use: bool
) -> None:
    """A literal password or client_secret in a gateway table is refused as a secret with
    what to write instead (as [replies.imap] says), never as an unknown key, whether or not
    the table's auth reads it; the value is not quoted."""
    for name in ("SMTP_PASSWORD", "EWS_SECRET", "EWS_PASSWORD"):
        monkeypatch.setenv(name, "from-the-environment")
    kind, table, key = LITERAL_SECRETS[case]
    gateway_type = kind if in_use else "outbox"
    text = OK + f'\n[gateway]\ntype = "{gateway_type}"\n\n[gateway.{kind}]\n{table}'
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    message = str(caught.value)
    assert (
        f"[gateway.{kind}] {key}: secrets are not written in the config; "
        f'use {key}_env = "VARIABLE" or {key}_file = "path/to/file"'
    ) in message
    assert "hunter2" not in message


def test_a_secret_the_gateways_auth_does_not_read_says_when_it_is_read(tmp_path: Path) -> None:
    """SMTP with auth = "none": a literal password says it is read with auth plain or login,
    and a password_env is refused as not read (not as a misspelt key)."""
    smtp = '\n[gateway]\ntype = "smtp"\n\n[gateway.smtp]\nhost = "smtp.council.example"\n'
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, OK + smtp + 'password = "hunter2"\n'))
    assert str(caught.value).endswith(
        "[gateway.smtp] password: secrets are not written in the config; use "
        'password_env = "VARIABLE" or password_file = "path/to/file" '
        "(read with auth = 'plain' or 'login')"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, OK + smtp + 'password_env = "SMTP_PASSWORD"\n'))
    assert str(caught.value).endswith(
        "[gateway.smtp] password_env: is not read here: password is read with auth = 'plain' "
        "or 'login'; set that, or remove it"
    )


def test_unused_gateway_needs_no_secret_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unused gateway's *_env variable is checked for shape but need not be set."""
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    text = OK + SMTP_UNUSED + 'password_env = "SMTP_PASSWORD"\n'
    assert load_settings(write(tmp_path, text)).gateway.kind == "outbox"


def test_unused_gateway_with_a_bad_value_is_refused(tmp_path: Path) -> None:
    """A wrong type in an unused [gateway.graph] is refused, naming the key."""
    text = OK + (
        '[gateway.graph]\nmailbox = "mash@testbury.gov.uk"\ntenant_id = "t"\n'
        'client_id = "c"\nclient_secret_env = "GRAPH_SECRET"\ntimeout = "soon"\n'
    )
    with pytest.raises(ConfigError, match=r"\[gateway\.graph\] timeout: expected a number"):
        load_settings(write(tmp_path, text))


class _PathLike:
    """An os.PathLike that is not a Path (as some frameworks' path objects are)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return str(self.path)


@pytest.mark.parametrize("kind", [str, _PathLike])
def test_load_settings_takes_a_str_or_any_path_like(tmp_path: Path, kind: type) -> None:
    """load_settings("mash-requests.toml") reads the file as a Path would."""
    path = write(tmp_path, BASE.format(address="mash@testshire.police.uk"))
    settings = load_settings(kind(path))
    assert settings.source == path
    assert list(settings.directory.keys()) == ["police"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_config_or_secret_file_that_is_a_named_pipe_is_refused_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a FIFO blocks until something writes to it: refused at once, exit 2."""
    from click.testing import CliRunner

    from mash_requests.cli import main

    fifo = tmp_path / "mash-requests.toml"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["overdue", "--config", str(fifo)])
    assert result.exit_code == 2
    assert "is a named pipe (FIFO), not a regular file" in result.output
