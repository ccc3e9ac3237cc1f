"""'Did you mean': the key most likely meant, for every "unknown key" message (specs, policies)."""

from __future__ import annotations

import difflib


def normal(key: str) -> str:
    """A key as compared for a suggestion: case, ``_`` and ``-`` do not count."""
    return key.casefold().replace("_", "").replace("-", "")


def suggest(key: str, candidates: list[str]) -> str | None:
    """The candidate ``key`` most likely meant: same but for case/_/-, else the closest spelling."""
    for candidate in candidates:
        if normal(candidate) == normal(key):
            return candidate
    if len(candidates) > 500:  # difflib is quadratic-ish: no fuzzy guess among very many
        return None
    by_normal = {normal(c): c for c in candidates}
    close = difflib.get_close_matches(normal(key), list(by_normal), n=1, cutoff=0.6)
    return by_normal[close[0]] if close else None
