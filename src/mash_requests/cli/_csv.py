"""Standard output for CSV exports (``audit query``, ``overdue``): UTF-8, line ends as written."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


@contextmanager
def csv_stdout(*, enabled: bool = True) -> Iterator[TextIO]:
    """Standard output; when ``enabled`` (CSV), UTF-8 with line ends written as they are.

    A CSV file is data, not console text: it is UTF-8 whatever the console's code page, and
    its CRLF line ends must not become CR CR LF through Windows' text-mode translation.
    """
    buffer = getattr(sys.stdout, "buffer", None)
    if not enabled or buffer is None:
        yield sys.stdout
        return
    sys.stdout.flush()
    out = io.TextIOWrapper(buffer, encoding="utf-8", newline="", write_through=True)
    try:
        yield out
    finally:
        try:
            out.flush()
        finally:
            out.detach()  # leave sys.stdout's buffer open
