"""HTML to text in one walk over BeautifulSoup's tree (headings kept as Markdown headings so
the splitter can follow them), and the links of a page.

Linear in the size of the page: every node is visited once; past ``MAX_HEADINGS`` headings
are kept as plain text, and a conversion that runs past its time budget gives up with
``ConversionTooSlow`` (the page is skipped with that reason).
"""

from __future__ import annotations

import re
import time
from urllib.parse import urldefrag, urljoin

from bs4 import BeautifulSoup
from bs4.element import CData, NavigableString, Tag

MAX_HEADINGS = 2_000
CONVERT_SECONDS = 20.0
_DROPPED = frozenset(
    {"script", "style", "noscript", "template", "svg", "iframe", "nav", "header", "footer",
     "form"}
)  # fmt: skip
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_CHECK_EVERY = 2048


class ConversionTooSlow(Exception):
    """The page did not convert within its time budget."""


def html_to_markdown(
    html: str, *, max_headings: int = MAX_HEADINGS, budget: float = CONVERT_SECONDS
) -> tuple[str, str]:
    """(title, text) of an HTML page: scripts, styles and navigation dropped, headings kept
    as Markdown headings. Raises ``ConversionTooSlow`` past ``budget`` seconds."""
    deadline = time.monotonic() + budget
    soup = BeautifulSoup(html, "html.parser")
    title = ""
    if soup.title is not None and soup.title.string:
        title = soup.title.string.strip()
    main = soup.find("main") or soup.find("article") or soup.body or soup
    pieces: list[str] = []
    headings = visited = 0
    stack: list[object] = [main]
    while stack:
        node = stack.pop()
        visited += 1
        if visited % _CHECK_EVERY == 0 and time.monotonic() > deadline:
            raise ConversionTooSlow(f"took longer than {budget:g} s to convert")
        if isinstance(node, NavigableString):
            if type(node) in (NavigableString, CData):
                pieces.append(str(node))
            continue
        if not isinstance(node, Tag) or node.name in _DROPPED:
            continue
        level = _HEADINGS.get(node.name)
        if level is not None and headings < max_headings:
            headings += 1
            text = node.get_text(" ", strip=True)
            if not title and level == 1:
                title = text
            pieces.append(f"\n\n{'#' * level} {text}\n\n")
            continue
        if node.name == "pre":
            pieces.append(f"\n\n```\n{node.get_text()}\n```\n\n")
            continue
        stack.extend(reversed(node.contents))
    text = re.sub(r"\n\s*\n(\s*\n)+", "\n\n", "\n".join(pieces))
    return title[:200], text.strip()


def page_links(html: str, base: str) -> list[str]:
    """The absolute addresses a page links to (no fragments, no mailto/javascript)."""
    soup = BeautifulSoup(html, "html.parser")
    found = []
    for tag in soup.find_all("a", href=True):
        href = str(tag["href"]).strip()
        if href and not href.startswith(("mailto:", "javascript:", "#")):
            found.append(urldefrag(urljoin(base, href)).url)
    return found
