"""The referral-form guarantee: every form that is sent is checked here first, and filled here.

:func:`check_form` takes the exact bytes that will be attached and returns a :class:`Verdict`:
accepted or refused, a machine-readable :class:`Reason`, one sentence for a person, and the
fingerprint (SHA-256, size, page count, where the case reference was found). Every sending
path (CLI, API, batch) calls it and refuses to send unless ``verdict.accepted``, so the
guarantee cannot be bypassed. It never raises, whatever the bytes: pypdf raises far more than
``PdfReadError`` on hostile files (``ValueError``, ``IndexError``, ``KeyError``, recursion …),
and all of it becomes ``unreadable``.

The checks, in order (the first that fails is the verdict):

1. ``not_pdf``: no ``%PDF-`` header in the first KiB (empty files too);
2. ``too_large``: over ``max_size`` bytes (default 10 MiB), before any parsing;
3. ``unreadable``: cut off (no ``%%EOF`` in the last KiB), pypdf cannot open it, its page
   tree or objects are broken (cycles too), or it is too complex to check: more objects
   or pages than the walk's bounds, or, for a damaged or unusually bulky file only, a
   check running past ``CHECK_TIME_LIMIT`` seconds (the last-resort guard);
4. ``encrypted``: it needs a password that was not given, or the given one does not open it
   (an empty user password opens silently, as in every viewer);
5. ``no_pages``;
6. ``active_content``: a JavaScript or Launch action, or one that reaches outside the
   document (SubmitForm, ImportData, GoToR, GoToE), anywhere reachable from the catalogue
   (OpenAction, ``/Names`` trees, document and page ``/AA``, annotation and widget actions,
   form fields, bookmarks, ``/Next`` chains) or XFA scripts. A plain OpenAction
   destination, URI links, GoTo and Named actions such as Print are not active content;
7. ``embedded_file``: an ``EmbeddedFiles`` name tree entry, a file specification carrying
   ``/EF``, or a FileAttachment annotation;
8. case binding: the case reference must be in the configured case-reference field, another
   field value, or the text of the first ``TEXT_PAGE_LIMIT`` pages within
   ``TEXT_BYTE_LIMIT`` bytes of their content; the configured field holding another
   reference is ``wrong_case``, no reference at all is ``case_ref_missing``.

Every bound counts work (objects, pages, decoded bytes, operators), not time, so a
well-formed file gets the same verdict on any machine under any load; the wall-clock
guard is consulted only once a file shows damage or unusual bulk.

The parts, one module each: :mod:`.verdict` (the value returned), :mod:`.check` (the checks
in order), :mod:`.reading` (opening a PDF within bounds), :mod:`.safety` (the structure walk),
:mod:`.binding` (the case reference in fields and text), :mod:`.filling` and :mod:`.files`
(reading and writing form files). Import from this package, not from its modules.

pypdf is imported inside the functions that need it (the CLI must start instantly), and its
log records are re-logged at DEBUG on this module's logger so they never reach a terminal.
"""

from __future__ import annotations

from mash_requests.referral_form.binding import TEXT_BYTE_LIMIT, TEXT_PAGE_LIMIT, contains_case_ref
from mash_requests.referral_form.check import (
    CHECK_TIME_LIMIT,
    DEFAULT_CASE_REF_FIELD,
    DEFAULT_MAX_SIZE,
    check_form,
)
from mash_requests.referral_form.files import read_form, write_form
from mash_requests.referral_form.filling import DEFAULT_FILL_MAPPING, fill_form, form_field_names
from mash_requests.referral_form.verdict import Reason, Verdict

__all__ = [
    "CHECK_TIME_LIMIT",
    "DEFAULT_CASE_REF_FIELD",
    "DEFAULT_FILL_MAPPING",
    "DEFAULT_MAX_SIZE",
    "TEXT_BYTE_LIMIT",
    "TEXT_PAGE_LIMIT",
    "Reason",
    "Verdict",
    "check_form",
    "contains_case_ref",
    "fill_form",
    "form_field_names",
    "read_form",
    "write_form",
]
