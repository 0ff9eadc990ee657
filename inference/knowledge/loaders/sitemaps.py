"""Sitemaps (``<urlset>`` and ``<sitemapindex>``), read with the standard library's XML
parser. A sitemap that declares a DTD or entities is refused before parsing: no entity
expansion (no "billion laughs"), no external entity, and sitemaps never need either."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

_DECLARATION = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class SitemapRefused(Exception):
    """A sitemap that cannot be read; the message says why."""


@dataclass(slots=True)
class Sitemap:
    """The page addresses a sitemap lists, and the nested sitemaps of a sitemap index."""

    pages: list[str] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)


def parse_sitemap(xml: str) -> Sitemap:
    """The ``<loc>`` entries of a sitemap or sitemap index, in order."""
    if _DECLARATION.search(xml):
        raise SitemapRefused("the sitemap declares a DTD or entities (not read)")
    try:
        root = ET.fromstring(xml)  # no DTD or entity reaches the parser
    except ET.ParseError as exc:
        raise SitemapRefused(f"not a readable sitemap ({exc})") from None
    found = Sitemap()
    nested = _local(root.tag) == "sitemapindex"
    for element in root.iter():
        if _local(element.tag) != "loc" or not element.text or not element.text.strip():
            continue
        loc = element.text.strip()
        # In a sitemap index every <loc> is a sitemap; in a urlset a page, unless it
        # names an .xml file (an index some sites mix in).
        if nested or loc.split("?", 1)[0].endswith(".xml"):
            found.sitemaps.append(loc)
        else:
            found.pages.append(loc)
    return found


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()
