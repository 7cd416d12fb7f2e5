"""The ``mash-requests`` command group and the ``send-request`` shortcut.

Thin by design: each command parses its options, calls the library, and turns library
errors into ``Error: …`` and an exit code (see :mod:`mash_requests.cli._common`).
"""

from __future__ import annotations

import click

from mash_requests.cli._common import CONTEXT_SETTINGS
from mash_requests.cli.audit import audit
from mash_requests.cli.batch import send_batch
from mash_requests.cli.form import form
from mash_requests.cli.gateway import gateway
from mash_requests.cli.overdue import overdue
from mash_requests.cli.replies import replies
from mash_requests.cli.send import reconcile, send_request


@click.group(
    context_settings=CONTEXT_SETTINGS,
    epilog="Run 'mash-requests COMMAND --help' for a command's options and examples. "
    "Exit codes: 0 done, 1 not all done (some not sent, form refused, log broken), "
    "2 bad input or configuration (nothing sent).",
)
@click.version_option(package_name="mash-requests")
def main() -> None:
    """Send MASH requests for information to partner agencies, with the referral form
    attached and every step recorded in a tamper-evident dispatch log.

    \b
    Typical day:
      send-request --case cases/MASH-2026-0412.json        ask the case's partners
      mash-requests send-batch today.jsonl                 a whole day's contacts
      mash-requests form check form.pdf --case-ref REF     check a referral form
      mash-requests audit query --case-ref REF             what was sent for a case
      mash-requests audit verify                           prove the log is intact
    """


main.add_command(send_request)
main.add_command(send_batch)
main.add_command(reconcile)
main.add_command(form)
main.add_command(audit)
main.add_command(gateway)
main.add_command(replies)
main.add_command(overdue)


def send_request_main() -> None:
    """Entry point of the ``send-request`` command (same as ``mash-requests send-request``)."""
    send_request.main(prog_name="send-request")
