"""Untrusted text in Markdown that Airflow renders (the Required Actions body, a DAG run's note): literal, always."""

from __future__ import annotations

import re
from typing import Any

_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def md_text(text: Any, limit: int = 300) -> str:
    """``text`` as literal Markdown text: one line, every ASCII punctuation backslash-escaped.

    The summary comes from the gated step's output (for the example, a scraped web page): in Airflow's
    Markdown body it must never become a link, an image, HTML or emphasis ("[Approve here](https://...)")."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", flat)


__all__ = ["md_text"]
