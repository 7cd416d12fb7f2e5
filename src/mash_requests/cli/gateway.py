"""``mash-requests gateway check``: prove the mail gateway works before a real send.

Thin: the gateway's own ``check()`` connects and authenticates; this module loads the
config, calls it, prints one line and picks the exit code.
"""

from __future__ import annotations

from pathlib import Path

import click

from mash_requests.cli._common import CONTEXT_SETTINGS, json_option, json_output, library_errors

_CONFIG_HELP = (
    "Config file (TOML) whose [gateway] section names the gateway and its settings. "
    "Default: $MASH_REQUESTS_CONFIG, else ./mash-requests.toml, else the built-in defaults."
)


@click.group("gateway", context_settings=CONTEXT_SETTINGS)
def gateway() -> None:
    """The mail gateway that takes the requests: outbox, SMTP, Exchange EWS or Microsoft Graph."""


@gateway.command(
    "check",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests gateway check
  mash-requests gateway check --config /etc/mash/mash-requests.toml
  MASH_SMTP_PASSWORD=… mash-requests gateway check --config mash-requests.toml
  mash-requests gateway check --json

\b
What each gateway checks (nothing is ever sent):
  smtp    connect, STARTTLS or TLS (certificate verified), AUTH
  ews     authenticate and open the mailbox's Sent Items
  graph   get a token from Entra ID and read the mailbox's Sent Items
  outbox  the folder exists and can be written

\b
On success one line says what was verified, e.g.
  ok: smtp: connected to smtp.council.example:587 over TLSv1.3, authenticated as mash@… (LOGIN)
On failure one line says what failed, then the server's (or OpenSSL's) own words, then
what to do; send-request's outcome and the dispatch log give the same sentence, e.g.
  Error: the certificate of SMTP server smtp.council.example:587 is not trusted: unable to
  get local issuer certificate; set ca_file to the CA that signed it, or have the server's
  certificate fixed
  Error: the SMTP server refused the credentials (smtp.council.example:587, AUTH LOGIN as
  mash@…): 535 5.7.8 Authentication credentials invalid; check username and the password
  (password_env or password_file)

\b
Exit codes: 0 the gateway works; 1 it does not (unreachable, refused, certificate not
trusted); 2 bad configuration (nothing was contacted).""",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help=_CONFIG_HELP)
@json_option
def check(config_path: Path | None, as_json: bool = False) -> None:
    """Connect and authenticate to the configured gateway without sending anything."""
    from mash_requests.config import load_settings
    from mash_requests.gateways import Checkable

    with json_output("gateway check", as_json) as run:
        run.update(gateway=None, checked=None)
        with library_errors():
            # A connection check opens no referral form: its password need not be set.
            settings = load_settings(config_path, form_secrets=False)
            run.update(gateway=settings.gateway.kind)
            opened = settings.gateway.open()
            try:
                if isinstance(opened, Checkable):
                    line = opened.check()
                else:
                    line = f"{opened.name}: opened; this gateway has nothing more to check"
            finally:
                opened.close()
        run.update(checked=line)
        if not run.enabled:
            click.echo(f"ok: {line}")
