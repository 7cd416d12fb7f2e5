"""Rendering a partner's request from Jinja templates, in the sandbox, strictly.

Each partner type has three templates: ``<name>.subject.j2``, ``<name>.txt.j2`` and
``<name>.html.j2``, built on the shared ``_base.*`` templates that carry the
information-sharing statement, the consent status, the RAG rating and the response deadline.
A folder named in the config (``[mash] templates``) overrides any file by name; the rest
come from the templates shipped with the package.

Guarantees, enforced here rather than hoped for in the templates:

- the sandbox: a template cannot reach Python internals or the file system;
- strict undefined: a missing variable is a TemplateError naming it, never a blank;
- the subject starts with the protective marking (added here) and must carry the case
  reference and the request reference; subjects are one line;
- the body must carry the request reference and the deadline (the base templates do);
- the plain text is wrapped within 78 columns (RFC 5322's line length) for mail readers and
  journaling, never inside a word, so a request reference or a URL stays whole.

Dates read one way everywhere (``9 April 2016``, ``Thursday 26 November 2026 at 13:15
(GMT)``) and timescales as people say them (``AMBER (24 working hours)``, ``RED (4 hours)``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import textwrap
from dataclasses import dataclass, fields
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mash_requests._wording import format_date
from mash_requests.case import Case, Child, Consent, ConsentStatus, Rag, Worker
from mash_requests.deadlines import describe_hours
from mash_requests.errors import TemplateError
from mash_requests.partners import Partner

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from mash_requests.deadlines import Timescales

logger = logging.getLogger(__name__)

PART_SUFFIXES = ("subject.j2", "txt.j2", "html.j2")
#: A template's file name as a template names another: folders, letters, digits, ``_.-``, .j2.
_TEMPLATE_NAME = re.compile(r"[\w.\-/]{1,200}\.j2", re.ASCII)
CONSENT_TEXT = {
    ConsentStatus.GIVEN: "Consent to share information has been given",
    ConsentStatus.NOT_GIVEN: "Consent has NOT been given; information is requested without consent",
    ConsentStatus.NOT_SOUGHT: "Consent has NOT been sought",
}


#: Plain text lines are wrapped within RFC 5322's 78 columns, at 76 so that quoted-printable
#: (which breaks longer lines with a soft "=") carries every ASCII line whole on the wire.
TEXT_WIDTH = 76


@dataclass(frozen=True)
class RenderedRequest:
    """The text of one request; the body never goes to the log."""

    subject: str
    text: str
    html: str
    template: str
    template_version: str
    #: "high" for a RED request (partners' mail clients flag it), else "normal".
    importance: str = "normal"
    #: The display name for From: the MASH's name.
    sender_name: str = ""


def shipped_templates() -> Path:
    """The folder of templates that ship with the package.

    An installed wheel carries them as the ``mash_requests.templates`` package. An editable
    install (``pip install -e .``) reads them from the checkout's top-level ``templates/``,
    which is not mapped into the package so that type checkers can follow the install.
    """
    try:
        return Path(str(resources.files("mash_requests.templates")))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parents[2] / "templates"
        if (checkout / "_base.txt.j2").is_file():
            return checkout
        raise TemplateError(
            "the shipped templates are missing from this installation; reinstall mash-requests"
        ) from None


def format_due(due: datetime) -> str:
    """A deadline as people read it: ``Thursday 26 November 2026 at 13:15 (GMT)``."""
    return f"{due:%A} {format_date(due)} at {due:%H:%M} ({due.tzname()})"


# A line's hanging indent: its leading spaces, plus a list bullet ("- ") or a label
# ("Date of birth: ") so that continuation lines line up under the text, not the label.
_HANG = re.compile(r"^ *(?:[-*] +|[A-Za-z][A-Za-z /()'-]{0,30}: +)?")


def _hang(line: str, width: int) -> int:
    match = _HANG.match(line)
    indent = len(line) - len(line.lstrip(" "))
    return match.end() if match and match.end() <= width // 2 else indent


def wrap_text(
    text: str,
    width: int = TEXT_WIDTH,
    *,
    filled: dict[tuple[str, int, int], list[str]] | None = None,
) -> str:
    """Wrap lines longer than ``width`` at spaces, keeping each line's indent.

    A line that is too long is joined with the lines that continue its paragraph (same
    indent, not blank, not a new bullet or label) and the paragraph is filled again, so
    the result does not leave one word on a line of its own. Never breaks inside a word
    or at a hyphen: a request reference (``MASH-2026-0412-POLICE-1BAC7``) or a URL longer
    than the line stays whole.

    ``filled``: paragraphs already filled, reused and added to (a case's requests share
    most paragraphs: the child, the concerns, the statements).
    """
    source = text.split("\n")
    lines: list[str] = []
    index = 0
    while index < len(source):
        line = source[index]
        index += 1
        if len(line) <= width:
            lines.append(line)
            continue
        indent = len(line) - len(line.lstrip(" "))
        hang = _hang(line, width)
        paragraph = [line]
        while index < len(source):
            following = source[index]
            stripped = following.lstrip(" ")
            if not stripped or len(following) - len(stripped) != indent:
                break
            if _hang(following, width) != indent:
                break  # a new bullet or label starts here
            paragraph.append(stripped)
            index += 1
        joined = " ".join(paragraph)
        done = filled.get((joined, width, hang)) if filled is not None else None
        if done is None:
            done = textwrap.wrap(
                joined,
                width=width,
                subsequent_indent=" " * hang,
                break_long_words=False,
                break_on_hyphens=False,
            ) or [line]
            if filled is not None:
                filled[(joined, width, hang)] = done
        lines.extend(done)
    return "\n".join(lines)


def _template_line(exc: BaseException, filename: str) -> str:
    """`` at line N`` of the template where ``exc`` was raised, if the traceback shows it."""
    import traceback

    line = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(filename):
            line = f" at line {frame.lineno}"
    return line


#: A word jinja quotes in an error that may be shown: a name, or a type ('dict object').
_QUOTABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,80}( object)?")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


#: What of an HTML body a reader never sees as text.
_UNSEEN = re.compile(
    r"<!--.*?-->|<(head|title|script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL
)


def _visible_text(html: str) -> str:
    """An HTML body's visible text, one block a line: no comments, head, scripts or tags."""
    import html as entities

    blocks = re.sub(r"(?i)<(/p|br|/h\d|/div|/tr|/li|/table)\b[^>]*>", "\n", html)
    return entities.unescape(_UNSEEN.sub(" ", blocks))


def _without_data(
    message: str | None, context: dict[str, Any], exc: BaseException | None = None
) -> str | None:
    """jinja's message, or None when it quotes anything that could be case data.

    jinja quotes the key or attribute a template asked for, which a template can compute
    from the case (``{{ {}[child.name] }}`` reads "has no attribute 'Jayden Price'",
    ``child|attr(child.name|replace(' ', '_'))`` "'Jayden_Price'"). A quoted word is shown
    only when it is a plain name written in the templates being rendered (the files in
    ``exc``'s traceback) and no text of the case holds it; a type jinja names ('dict
    object') is its own.
    """
    if not message:
        return None
    texts = [text.lower() for text in _texts(context)]
    sources = _sources(exc)
    for word in re.findall(r"'([^']*)'", message):
        if not _QUOTABLE.fullmatch(word) or any(word.lower() in text for text in texts):
            return None
        if not word.endswith(" object") and not re.search(
            rf"(?<!\w){re.escape(word)}(?!\w)", sources
        ):
            return None  # computed while rendering, not written in a template
    return message


def _sources(exc: BaseException | None) -> str:
    """The text of the template files in ``exc``'s traceback (where jinja ran them)."""
    import traceback

    if exc is None:
        return ""
    texts = []
    for name in {f.filename for f in traceback.extract_tb(exc.__traceback__)}:
        if name.endswith(".j2"):
            try:
                texts.append(Path(name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
    return "\n".join(texts)


def _texts(value: Any, depth: int = 0) -> list[str]:
    """Every text in a rendering context: its strings, and those of its data classes."""
    if isinstance(value, str):
        return [value]
    if depth > 4:
        return []
    if isinstance(value, dict):
        return [t for item in value.values() for t in _texts(item, depth + 1)]
    if isinstance(value, tuple | list):
        return [t for item in value for t in _texts(item, depth + 1)]
    names = _PLAIN_DATA.get(type(value))
    if names is not None:
        return [t for name in names for t in _texts(getattr(value, name), depth + 1)]
    return []


#: How many wrapped paragraphs a renderer keeps (a batch's requests share most of theirs).
_FILLED_KEPT = 512


def _plain_fields(kind: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(kind) if not f.name.startswith("_"))


#: The data classes given to templates, and their public fields: plain data, read-only.
_PLAIN_DATA: dict[type, frozenset[str]] = {
    kind: _plain_fields(kind) for kind in (Case, Child, Consent, Worker, Partner)
}


@functools.cache
def _sandbox_class(extra: tuple[type, ...] = ()) -> type[ImmutableSandboxedEnvironment]:
    import types
    from datetime import date, time, timedelta

    from jinja2.exceptions import SecurityError
    from jinja2.runtime import LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import Cycler, Joiner

    #: Values whose methods a template may call: text, numbers, dates, containers, and
    #: jinja's own loop helpers. Not the request's data classes, nor what they hold beyond
    #: these (the case's form is a pathlib.Path, whose methods read, write and delete files).
    callable_owners = (
        str, int, float, tuple, list, dict, date, time, timedelta, LoopContext, Cycler, Joiner,
        *extra,
    )  # fmt: skip

    class Sandbox(ImmutableSandboxedEnvironment):
        """The immutable sandbox, reading a field of the request's own data classes
        (``case.child.name``) without its general checks, which cost most of a render.

        Only a declared field of exactly those frozen classes is read so; anything else,
        and anything done with the value read, goes through the sandbox's checks. A template
        calls only jinja's helpers, its own macros and blocks, and methods of plain values
        (``callable_owners``): jinja's own sandbox would let it call any public method of
        any object it can reach.
        """

        def getattr(self, obj: Any, attribute: str) -> Any:
            names = _PLAIN_DATA.get(type(obj))
            if names is not None and attribute in names:
                return object.__getattribute__(obj, attribute)
            return super().getattr(obj, attribute)

        def is_safe_callable(self, obj: Any) -> bool:
            if not super().is_safe_callable(obj):
                return False
            owner = getattr(obj, "__self__", None)
            # A macro, a block, a jinja global (range's __self__ is the builtins module).
            if owner is None or isinstance(owner, types.ModuleType):
                return True
            return isinstance(owner, callable_owners)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            if not __self.is_safe_callable(__obj):
                # Named by type and method only: the object's repr may hold case data.
                owner = getattr(__obj, "__self__", None)
                name = getattr(__obj, "__name__", "it")
                what = f"{type(owner).__name__}.{name}" if owner is not None else name
                raise SecurityError(
                    f"calling {what}() is not allowed: a template shows values, it does not "
                    "act on objects"
                )
            return __context.call(__obj, *args, **kwargs)

    return Sandbox


@dataclass(frozen=True)
class Replaces:
    """The earlier request a resend replaces: its reference and when it was sent."""

    request_ref: str
    sent_at: datetime


#: What goes after the marking in a resend's subject: partners' filters and people see at
#: once that it is not a new request. The earlier reference is in the body, not here: a
#: reply quoting a subject with two references could not be matched to either.
RESEND_MARKER = "[RESEND]"


class Renderer:
    """Compiles templates once and renders requests; safe to reuse across a batch."""

    def __init__(
        self,
        *,
        marking: str,
        mash_name: str,
        override_dir: Path | None = None,
        timescales: Timescales | None = None,
        callable_types: tuple[type, ...] = (),
    ) -> None:
        """``timescales`` tells which ratings count working hours (for ``timescale``).
        ``callable_types``: classes whose methods a template may call besides plain values'
        (the evidence report's read-only figures: ``verification.summary()``)."""
        from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined

        if override_dir is not None and not override_dir.is_dir():
            raise TemplateError(
                f"templates folder {override_dir}: not found; fix [mash] templates in the config"
            )
        shipped = shipped_templates()
        loaders = [FileSystemLoader(str(override_dir))] if override_dir else []
        loaders.append(FileSystemLoader(str(shipped)))
        #: Where a template is looked for, for the message when one is not found.
        self._looked_in = (
            f"the [mash] templates folder {override_dir} or the shipped templates ({shipped})"
            if override_dir is not None
            else f"the shipped templates ({shipped}); set [mash] templates to add your own"
        )
        self._env = _sandbox_class(callable_types)(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name and name.endswith(".html.j2")),
            keep_trailing_newline=True,
            trim_blocks=True,
            auto_reload=False,
        )
        self._env.filters["due"] = format_due
        self._env.filters["date"] = format_date
        self.marking = marking
        self.mash_name = mash_name
        self._working = timescales.working_hours if timescales is not None else frozenset()
        self._versions: dict[str, str] = {}
        # Paragraphs of plain text already wrapped, shared by the requests of a batch; kept
        # small, and dropped with the renderer.
        self._filled: dict[tuple[str, int, int], list[str]] = {}

    def _wrap(self, text: str) -> str:
        if len(self._filled) > _FILLED_KEPT:
            self._filled.clear()
        return wrap_text(text, filled=self._filled)

    def template_version(self, name: str) -> str:
        """First 12 hex digits of the SHA-256 of the template set's sources, bases included."""
        if name not in self._versions:
            digest = hashlib.sha256()
            for part in (*(f"{name}.{s}" for s in PART_SUFFIXES),
                         *(f"_base.{s}" for s in PART_SUFFIXES)):  # fmt: skip
                try:
                    source, _, _ = self._env.loader.get_source(self._env, part)  # type: ignore[union-attr]
                except Exception:  # a missing base simply contributes nothing
                    source = ""
                digest.update(part.encode() + b"\0" + source.encode() + b"\0")
            self._versions[name] = digest.hexdigest()[:12]
        return self._versions[name]

    def check(self, name: str) -> None:
        """Compile the template set now, so a broken template stops a batch before it starts."""
        for suffix in PART_SUFFIXES:
            self._load(f"{name}.{suffix}")

    def _load(self, filename: str) -> Any:
        from jinja2 import TemplateNotFound, TemplateSyntaxError

        try:
            return self._env.get_template(filename)
        except TemplateNotFound as exc:
            raise TemplateError(
                f"template {exc.name}: not found in {self._looked_in}; add it to the templates "
                "folder or change the partner's template in the config"
            ) from None
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {exc.filename or filename}: syntax error at line {exc.lineno}: "
                f"{exc.message}"
            ) from None
        except UnicodeDecodeError:
            raise TemplateError(
                f"template {filename}: is not UTF-8 text; save it as UTF-8"
            ) from None
        except OSError as exc:
            raise TemplateError(f"template {filename}: cannot be read ({exc.strerror})") from None

    def _render(self, filename: str, context: dict[str, Any]) -> str:
        from jinja2 import TemplateError as JinjaTemplateError
        from jinja2 import TemplateNotFound, UndefinedError
        from jinja2.exceptions import SecurityError

        template = self._load(filename)
        try:
            return str(template.render(context))
        except UndefinedError as exc:
            words = _without_data(exc.message, context, exc)
            raise TemplateError(
                f"template {filename}: {words or 'a variable, attribute or key that is not there'}"
                f"{_template_line(exc, filename)}; use only the variables listed in the README's "
                "template reference"
            ) from None
        except SecurityError as exc:
            words = _without_data(str(exc), context, exc) or "an operation on a value"
            raise TemplateError(
                f"template {filename}: not allowed in the sandbox: {words}"
            ) from None
        except TemplateNotFound as exc:  # an {% include %}, {% extends %} or {% import %}
            raise TemplateError(self._not_found_inside(filename, exc)) from None
        except JinjaTemplateError as exc:
            words = _without_data(exc.message, context, exc) or type(exc).__name__
            raise TemplateError(
                f"template {filename}: {words}{_template_line(exc, filename)}"
            ) from None
        except Exception as exc:
            # Any error a template can cause (1/0, int('x'), …). Only its type and line are
            # shown: its text may quote case data.
            raise TemplateError(
                f"template {filename}: {type(exc).__name__}{_template_line(exc, filename)}; "
                "fix the template"
            ) from None

    def _marked_subject(self, subject: str) -> str:
        """The subject with the marking first, as a word of its own: a subject that starts
        with a longer marking ("OFFICIAL-SENSITIVE-PERSONAL") still gets ours in front."""
        if re.match(re.escape(self.marking) + r"(?![\w-])", subject):
            return subject
        return f"{self.marking}: {subject}"

    def _check_marked(self, text: str, html: str, name: str) -> None:
        """The marking at the top and bottom of both bodies, where a reader sees it (README:
        every body carries it there; a template that leaves it out is refused rather than
        sent unmarked): the first and last lines of the text, and of the HTML's visible text
        (not a comment, the title, or an attribute)."""
        for lines, filename, where in (
            (_lines(text), f"{name}.txt.j2", "start and end with"),
            (_lines(_visible_text(html)), f"{name}.html.j2", "show, first and last,"),
        ):
            if not lines or not (self._marked(lines[0]) and self._marked(lines[-1])):
                raise TemplateError(
                    f"template {filename}: the body must {where} the protective marking "
                    "({{ marking }}); extend the _base template rather than replacing it"
                )

    def _marked(self, line: str) -> bool:
        """A line that starts with the marking, as a word of its own."""
        return re.match(re.escape(self.marking) + r"(?![\w-])", line.strip()) is not None

    def _not_found_inside(self, filename: str, exc: Exception) -> str:
        """What to say when ``filename`` includes, extends or imports a missing template."""
        names = [str(name) for name in getattr(exc, "templates", None) or [exc.name]]  # type: ignore[attr-defined]
        # A name the template computed (``{% include case.x %}``) may be case data: only a
        # template's file name, written in the template, is quoted.
        shown = [name for name in names if _TEMPLATE_NAME.fullmatch(name)]
        if shown and len(shown) == len(names):
            what = f"the template it includes, {' or '.join(shown)}, was"
        else:
            what = "a template it includes (a name it computes, not shown) was"
        return (
            f"template {filename}: {what} not found in {self._looked_in}; add it to the "
            "templates folder or correct the name in the template's {% include %}, "
            "{% extends %} or {% import %}"
        )

    def render_document(self, filename: str, context: dict[str, Any]) -> str:
        """Render one template of the folders by name (the evidence report's
        ``report.html.j2``), found, overridden and sandboxed as the requests are: strict
        undefined, autoescaped when it ends in ``.html.j2``; TemplateError names the file."""
        return self._render(filename, context)

    def render(
        self,
        *,
        case: Case,
        partner: Partner,
        request_ref: str,
        due: datetime,
        rag_hours: float,
        form_filename: str,
        replaces: Replaces | None = None,
    ) -> RenderedRequest:
        """Render one partner's request; TemplateError names the template and problem.

        ``replaces`` makes it a resend: the subject carries :data:`RESEND_MARKER` after the
        marking and the body must say "This replaces request <ref> sent on <time>" (the
        base templates do; the variable ``replaces`` has ``request_ref``, ``sent_at`` and
        ``sent_text``, or is None).
        """
        context: dict[str, Any] = {
            "case": case,
            "child": case.child,
            "worker": case.worker,
            "partner": partner,
            "request_ref": request_ref,
            "marking": self.marking,
            "mash_name": self.mash_name,
            "rag": str(case.rag),
            "rag_upper": str(case.rag).upper(),
            # 24, not 24.0: older templates print it as it is.
            "rag_hours": int(rag_hours) if float(rag_hours).is_integer() else rag_hours,
            "timescale": describe_hours(rag_hours, working=case.rag in self._working),
            "due": due,
            "due_text": format_due(due),
            "consent_text": CONSENT_TEXT[case.consent.status],
            "form_filename": form_filename,
            "replaces": None
            if replaces is None
            else {
                "request_ref": replaces.request_ref,
                "sent_at": replaces.sent_at,
                "sent_text": format_due(replaces.sent_at),
            },
        }
        name = partner.template
        subject = self._render(f"{name}.subject.j2", context).strip()
        if "\n" in subject or "\r" in subject:
            raise TemplateError(f"template {name}.subject.j2: the subject must be one line")
        for needed, label in (
            (case.case_ref, "case reference"),
            (request_ref, "request reference"),
        ):
            if needed not in subject:
                raise TemplateError(
                    f"template {name}.subject.j2: the subject must contain the {label} "
                    "({{ case.case_ref }} and {{ request_ref }})"
                )
        subject = self._marked_subject(subject)
        if replaces is not None:
            # After the marking, which stays first: mail rules and people read it there.
            rest = subject[len(self.marking) :]
            words = rest.lstrip(" :-")
            separator = rest[: len(rest) - len(words)] or ": "
            subject = f"{self.marking}{separator}{RESEND_MARKER} {words}"
        text = self._render(f"{name}.txt.j2", context)
        html = self._render(f"{name}.html.j2", context)
        self._check_marked(text, html, name)
        for body, filename in ((text, f"{name}.txt.j2"), (html, f"{name}.html.j2")):
            if request_ref not in body or format_due(due) not in body:
                raise TemplateError(
                    f"template {filename}: the body must show the request reference and the "
                    "response deadline; extend the _base template rather than replacing it"
                )
            if replaces is not None and replaces.request_ref not in body:
                raise TemplateError(
                    f"template {filename}: a resend's body must say which request it "
                    "replaces ({{ replaces.request_ref }}); extend the _base template rather "
                    "than replacing it"
                )
        logger.debug(
            "request rendered",
            extra={"case_ref": case.case_ref, "request_ref": request_ref, "template": name},
        )
        return RenderedRequest(
            subject=subject,
            text=self._wrap(text),
            html=html,
            template=name,
            template_version=self.template_version(name),
            importance="high" if case.rag is Rag.RED else "normal",
            sender_name=self.mash_name,
        )

    def render_reminder(
        self,
        context: dict[str, Any],
        *,
        request_ref: str,
        case_ref: str,
        due: datetime,
        name: str = "chase",
    ) -> RenderedRequest:
        """Render a reminder (``chase.*.j2``) for a request already sent.

        ``context`` holds what the log knows of the request (never the child's details,
        which the log does not keep); ``marking``, ``mash_name``, ``due_text`` are added.
        The same guarantees as a request: the marking first in the subject, the request
        and case references in the subject, the request reference and the due time in
        both bodies.
        """
        context = {
            **context,
            "marking": self.marking,
            "mash_name": self.mash_name,
            "request_ref": request_ref,
            "case_ref": case_ref,
            "due": due,
            "due_text": format_due(due),
        }
        subject = self._render(f"{name}.subject.j2", context).strip()
        if "\n" in subject or "\r" in subject:
            raise TemplateError(f"template {name}.subject.j2: the subject must be one line")
        if request_ref not in subject or case_ref not in subject:
            raise TemplateError(
                f"template {name}.subject.j2: the subject must contain the case reference "
                "and the request reference ({{ case_ref }} and {{ request_ref }})"
            )
        subject = self._marked_subject(subject)
        text = self._render(f"{name}.txt.j2", context)
        html = self._render(f"{name}.html.j2", context)
        self._check_marked(text, html, name)
        for body, filename in ((text, f"{name}.txt.j2"), (html, f"{name}.html.j2")):
            if request_ref not in body or format_due(due) not in body:
                raise TemplateError(
                    f"template {filename}: the body must show the request reference and the "
                    "due time ({{ request_ref }} and {{ due_text }})"
                )
        return RenderedRequest(
            subject=subject,
            text=self._wrap(text),
            html=html,
            template=name,
            template_version=self.template_version(name),
            importance="high" if context.get("rag") == "red" else "normal",
            sender_name=self.mash_name,
        )
