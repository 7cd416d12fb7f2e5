"""How dates read, the same in every request's subject, body and referral form.

One definition, so that a form filled from a case and the request sent with it never show
one date two ways (``2016-04-09`` on the form, ``9 April 2016`` in the body).
"""

from __future__ import annotations

from datetime import date


def format_date(day: date) -> str:
    """A date as people read it, the same in every request and form: ``9 April 2016``."""
    return f"{day.day} {day:%B %Y}"


__all__ = ["format_date"]
