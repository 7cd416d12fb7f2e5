"""``python -m mash_requests`` runs the ``mash-requests`` command."""

from mash_requests.cli import main

main()
