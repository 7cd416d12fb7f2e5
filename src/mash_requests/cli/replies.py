"""``mash-requests replies``: fetch partners' replies, record answers that came another way.

Thin: the work is in :mod:`mash_requests.replies`; this module parses options, prints the
summary (never a subject or body) and picks exit codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mash_requests.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_INCOMPLETE,
    EXIT_OK,
    json_option,
    json_output,
    library_errors,
    require_log,
)

if TYPE_CHECKING:
    from mash_requests.replies.fetch import FetchResult

_CONFIG_HELP = (
    "Config file (TOML) whose [replies] table says where replies arrive. Default: "
    "$MASH_REQUESTS_CONFIG, else ./mash-requests.toml."
)
# A copy of mash_requests.replies.record.CHANNELS, so that --help imports nothing more.
_CHANNELS = ("phone", "email", "meeting", "system")

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help=_CONFIG_HELP
)


@click.group("replies", context_settings=CONTEXT_SETTINGS)
def replies() -> None:
    """Partners' answers: read them from the replies mailbox, or record those that came
    another way. What is still unanswered: 'mash-requests overdue'.

    The dispatch log gets one event per message (replied, auto_reply, bounced, read_receipt
    or unmatched) with times, the sender's address, the Message-ID and the attachments'
    SHA-256; never the subject or the body.
    """


@replies.command(
    "fetch",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests replies fetch
  mash-requests replies fetch --dry-run
  mash-requests replies fetch --config /etc/mash/mash-requests.toml
  mash-requests replies fetch --json

\b
Reads the messages that arrived since the last fetch from the source in [replies]
(a folder of .eml files, IMAP, Microsoft Graph or EWS) and never changes the mailbox.
A message counts as the partner's answer only when it refers to a request (In-Reply-To or
References carrying the request's Message-ID, or the request reference in the subject) and
comes from one of that partner's addresses or domains. Automatic replies and read receipts
are recorded but never count as answers. Run it as often as you like: each message is
recorded once, by its Message-ID, even by runs at the same time.

\b
Where replies arrive, in the config (the README's configuration reference has every key):
  [replies] source = "folder", folder = "replies"         .eml files, e.g. a mail rule's
  [replies] source = "imap"; [replies.imap] host, username, password_env (TLS on 993)
  [replies] source = "graph"; [replies.graph] mailbox, folder; the rest (tenant_id,
            client_id, client_secret_env) from [gateway.graph] unless given;
            the app needs Mail.Read
  [replies] source = "ews"; [replies.ews] mailbox, folder; the rest from [gateway.ews]
  [replies] address = "mash-replies@your.gov.uk": in every request's Reply-To too.
Only this command reads the mailbox's secret.

\b
Exit codes: 0 done, nothing needs a person; 1 some messages need a person (a bounce: the
partner never got the request; or an unmatched message: look at it in the mailbox), or the
mailbox could not be read; 2 bad configuration or no [replies] table.""",
)
@click.option("--dry-run", is_flag=True, help="Read, classify and match, and record nothing.")
@config_option
@json_option
def fetch(dry_run: bool, config_path: Path | None, as_json: bool = False) -> None:
    """Read new messages from the replies mailbox and record each in the dispatch log."""
    from mash_requests.config import load_settings
    from mash_requests.replies import fetch_replies

    with json_output("replies fetch", as_json) as run:
        run.update(
            dry_run=dry_run,
            source=None,
            since=None,
            already_seen=0,
            counts={},
            needs_attention=0,
            messages=[],
        )
        with library_errors():
            # Reading replies opens no referral form: its password need not be set.
            settings = load_settings(config_path, form_secrets=False)
            if settings.replies is not None:  # (else fetch_replies says [replies] is missing)
                require_log(settings.log)  # replies match requests in it: no log, no requests
            result = fetch_replies(settings, dry_run=dry_run)
        run.update(**_fetch_fields(result))
        if not run.enabled:
            _print_summary(result)
        click.get_current_context().exit(EXIT_INCOMPLETE if result.needs_attention else EXIT_OK)


def _fetch_fields(result: FetchResult) -> dict[str, Any]:
    """The fetch for --json: counts by kind, then each new message (never subject or body).

    An unmatched message gives its sender's domain only, as the text does: who wrote to the
    mailbox is not yet known to be a partner.
    """
    from mash_requests.audit.events import EventKind

    kinds = (
        EventKind.REPLIED,
        EventKind.AUTO_REPLY,
        EventKind.READ_RECEIPT,
        EventKind.BOUNCED,
        EventKind.UNMATCHED,
    )
    return {
        "dry_run": result.dry_run,
        "source": result.source,
        "since": result.since,
        "already_seen": result.already_seen,
        "counts": {str(kind): result.count(kind) for kind in kinds},
        "needs_attention": len(result.needs_attention),
        "messages": [
            {
                "kind": str(message.kind),
                "message_id": message.message_id,
                "received_at": message.received_at,
                "from_address": message.from_address if message.request_ref else None,
                "sender_domain": message.sender_domain,
                "request_ref": message.request_ref,
                "case_ref": message.case_ref,
                "partner": message.partner,
                "matched_by": message.matched_by,
                "reason": message.reason,
                "attachments": message.attachments,
                "bounce_status": message.bounce_status,
                "auto_type": message.auto_type,
            }
            for message in result.messages
        ],
    }


def _print_summary(result: FetchResult) -> None:
    from mash_requests.audit.events import EventKind

    verb = "would record" if result.dry_run else "recorded"
    since = f" since {result.since:%Y-%m-%d %H:%M} UTC" if result.since else ""
    click.echo(
        f"{result.source}: {len(result.messages)} new message(s){since}, {verb}; "
        f"{result.already_seen} already seen"
    )
    labels = (
        (EventKind.REPLIED, "replies from partners"),
        (EventKind.AUTO_REPLY, "automatic replies (not answers)"),
        (EventKind.READ_RECEIPT, "read receipts (not answers)"),
        (EventKind.BOUNCED, "bounced: the partner did not get the request"),
        (EventKind.UNMATCHED, "unmatched: a person must look at them"),
    )
    for kind, label in labels:
        count = result.count(kind)
        if count:
            click.echo(f"  {count:>4}  {label}")
    for message in result.messages:
        if message.kind is EventKind.REPLIED:
            click.echo(
                f"  replied   {message.request_ref}  {message.partner}  "
                f"from {message.from_address}  received {message.received_at:%Y-%m-%d %H:%M} UTC"
            )
    for message in result.needs_attention:
        when = f"{message.received_at:%Y-%m-%d %H:%M} UTC"
        if message.kind is EventKind.BOUNCED:
            status = f" (status {message.bounce_status})" if message.bounce_status else ""
            click.echo(
                f"  BOUNCED   {message.request_ref}  {message.partner}  received {when}{status}: "
                "find another way to reach the partner, then resend"
            )
        else:
            click.echo(
                f"  UNMATCHED from {message.sender_domain or 'an unknown sender'}, received "
                f"{when}: {message.describe_reason()} (Message-ID {message.message_id})"
            )


@replies.command(
    "record",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests replies record MASH-2026-0412-POLICE-1BAC7 \
      --received "2026-04-13 10:15" --channel phone
  mash-requests replies record MASH-2026-0412-HEALTH-88FB6 \
      --received 2026-04-13T15:40:00+01:00 --channel meeting

\b
For answers that did not come as an email reply to the request: a phone call, a strategy
meeting, an answer in the partner's own system, an email to someone else. The answer is
recorded with you as the operator and stops the request's clock like an email reply.
TIME is "YYYY-MM-DD HH:MM" in [timescales] timezone, or ISO 8601 with an offset; it may not
be in the future or before the request was sent.

\b
Exit codes: 0 recorded (or already recorded); 2 unknown or unsent request, bad time or
channel, bad configuration: nothing recorded.""",
)
@click.argument("request_ref", metavar="REQUEST_REF")
@click.option(
    "--received",
    "received_text",
    required=True,
    metavar="TIME",
    help='When the answer came: "YYYY-MM-DD HH:MM" (local) or ISO 8601.',
)
@click.option(
    "--channel",
    required=True,
    type=click.Choice(_CHANNELS),
    help="How the answer came.",
)
@config_option
@json_option
def record(
    request_ref: str,
    received_text: str,
    channel: str,
    config_path: Path | None,
    as_json: bool = False,
) -> None:
    """Record that a partner answered a request another way (phone, meeting, system …)."""
    from mash_requests.config import load_settings
    from mash_requests.replies import parse_received, record_reply

    with json_output("replies record", as_json) as run:
        run.update(
            recorded=False,
            request_ref=request_ref,
            case_ref=None,
            partner=None,
            channel=channel,
            received_at=None,
            operator=None,
        )
        with library_errors():
            # Recording sends nothing and opens no form: neither's secrets need be set here.
            settings = load_settings(config_path, gateway_secrets=False, form_secrets=False)
            received = parse_received(received_text, settings.timescales.timezone)
            require_log(settings.log)  # the request must be in it: no log, no request
            recorded = record_reply(settings, request_ref, received=received, channel=channel)
        local = recorded.received_at.astimezone(settings.timescales.timezone)
        run.update(
            recorded=recorded.recorded,
            request_ref=recorded.request_ref,
            case_ref=recorded.case_ref,
            partner=recorded.partner,
            channel=recorded.channel,
            received_at=local,
            operator=recorded.operator,
        )
        if not run.enabled:
            what = "recorded" if recorded.recorded else "already recorded (nothing added)"
            click.echo(
                f"{what}: {recorded.request_ref} ({recorded.partner}, case {recorded.case_ref}) "
                f"answered by {recorded.channel} at {local:%Y-%m-%d %H:%M %Z}, "
                f"operator {recorded.operator}"
            )
