"""webResearch: fetch a prospect's website and extract what a sales rep would look for.

Output: {url, status, title, description, emails, phones, text, pages: [{url, status, title, error}]}

What it may fetch is ``hitl.steps.address_policy`` (public web sites only, unless allowed); how it fetches,
connecting to exactly the checked address within bounds, is ``hitl.steps.guarded_fetch``.
"""

from __future__ import annotations

import re
from typing import Any

from hitl.steps.address_policy import Guard, Refused, ResearchError, parse_allow
from hitl.steps.guarded_fetch import MAX_REDIRECTS, fetch

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?:\+?\d[\d ().-]{7,}\d)")
__all__ = ["MAX_REDIRECTS", "Refused", "ResearchError", "extract", "fetch", "run"]


def extract(html: str, max_chars: int) -> dict[str, Any]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else ""
    meta = soup.find("meta", attrs={"name": "description"})
    description = str(meta.get("content", "")).strip() if meta else ""
    mailtos = [str(a["href"])[7:].split("?")[0] for a in soup.select('a[href^="mailto:"]')]
    tels = [str(a["href"])[4:] for a in soup.select('a[href^="tel:"]')]
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    text = " ".join(soup.get_text(" ").split())
    emails = list(dict.fromkeys([*mailtos, *EMAIL.findall(text)]))
    phones = list(dict.fromkeys([*tels, *(p.strip() for p in PHONE.findall(text))]))
    return {"title": title, "description": description, "emails": emails, "phones": phones, "text": text[:max_chars]}


def run(config: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from hitl.config import load_settings

    settings = load_settings()
    guard = Guard(parse_allow(settings.web_research_allow))
    max_bytes = settings.web_research_max_bytes
    timeout = float(config.get("timeoutSeconds", 10))
    max_chars = int(config.get("maxChars", 5000))
    status, html = fetch(config["url"], timeout, guard=guard, max_bytes=max_bytes)
    result: dict[str, Any] = {"url": config["url"], "status": status, **extract(html, max_chars), "pages": []}
    for extra in config.get("extraUrls", []):
        try:
            extra_status, extra_html = fetch(extra, timeout, guard=guard, max_bytes=max_bytes)
            found = extract(extra_html, max_chars)
            result["pages"].append(
                {"url": extra, "status": extra_status, "title": found["title"], "text": found["text"]}
            )
            result["emails"] = list(dict.fromkeys([*result["emails"], *found["emails"]]))
            result["phones"] = list(dict.fromkeys([*result["phones"], *found["phones"]]))
        except ResearchError as exc:  # extra pages are optional: note the failure, keep going
            result["pages"].append({"url": extra, "error": str(exc)})
    return result
