"""Website sources: a start page and the pages under its path prefix it links to (breadth
first, capped), or every page a sitemap lists.

Pages are fetched through ``CheckedTransport`` (public addresses only, unless allowed),
asking only for encodings whose decoded size is bounded; redirects are followed by hand and
only inside the site; an https source never follows a link, redirect or sitemap entry to
http.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx

from inference.knowledge.loaders.documents import (
    Document,
    LoadItem,
    Skipped,
    SourceFailed,
    decode,
)
from inference.knowledge.loaders.html import ConversionTooSlow, html_to_markdown, page_links
from inference.knowledge.loaders.net import (
    ACCEPT_ENCODING,
    AddressRefused,
    AllowPrivate,
    CheckedTransport,
    Resolver,
    TooLarge,
    encoding_refused,
    read_bounded,
)
from inference.knowledge.loaders.sitemaps import SitemapRefused, parse_sitemap
from inference.knowledge.sources import Source
from inference.urls import public_url

MAX_PAGE_BYTES = 3_000_000
MAX_PAGES = 500
MAX_REDIRECTS = 5
MAX_NESTED_SITEMAPS = 20
PAGE_CONCURRENCY = 4

Page = tuple[str, str, str]  # (final url, content type, text)


@dataclass(frozen=True, slots=True)
class Site:
    """What a source may crawl: one scheme (https never falls back to http), one host,
    one path prefix."""

    scheme: str
    host: str
    prefix: str

    def holds(self, url: str) -> bool:
        """Whether ``url`` is inside the site."""
        parts = urlsplit(url)
        schemes = ("https",) if self.scheme == "https" else ("http", "https")
        return (
            parts.scheme in schemes and parts.netloc == self.host
            and parts.path.startswith(self.prefix)
        )  # fmt: skip

    def why_not(self, url: str) -> str:
        """Why ``url`` is not followed."""
        if self.scheme == "https" and urlsplit(url).scheme == "http":
            return f"from https to http ({public_url(url)}): refused"
        return f"off the site ({public_url(url)})"


class _Fetcher:
    def __init__(self, client: httpx.AsyncClient, site: Site) -> None:
        self.client = client
        self.site = site

    async def get(self, url: str) -> Page | Skipped:
        """(final url, content type, text) or why not."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self.client.stream("GET", current) as response:
                    if response.is_redirect:
                        target = urljoin(current, response.headers.get("location", ""))
                        if not self.site.holds(target):
                            return Skipped(url, f"redirect {self.site.why_not(target)}")
                        current = urldefrag(target).url
                        continue
                    return await _read(url, current, response)
            except AddressRefused as exc:
                return Skipped(url, str(exc))
            except httpx.HTTPError as exc:
                return Skipped(url, f"cannot fetch ({type(exc).__name__})", keep=True)
        return Skipped(url, "too many redirects")


async def _read(url: str, current: str, response: httpx.Response) -> Page | Skipped:
    if response.status_code >= 500 or response.status_code == 429:
        return Skipped(url, f"HTTP {response.status_code}", keep=True)
    if response.status_code != 200:
        return Skipped(url, f"HTTP {response.status_code}")
    refused = encoding_refused(response)
    if refused is not None:
        return Skipped(url, refused)
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PAGE_BYTES:
        return Skipped(url, f"too large ({int(declared) // 1_000_000} MB)")
    try:
        body = await read_bounded(response, MAX_PAGE_BYTES)
    except TooLarge:
        return Skipped(url, f"too large (over {MAX_PAGE_BYTES // 1_000_000} MB)")
    except zlib.error:
        return Skipped(url, "broken gzip compression")
    return current, ctype, _page_text(body, response.charset_encoding)


def _page_text(body: bytes, charset: str | None) -> str:
    """A page's text in the charset its server declared (one Python knows), else as
    ``decode`` reads it; "" for binary content."""
    if charset:
        try:
            return body.decode(charset, "replace")
        except LookupError:
            pass
    return decode(body) or ""


def site_client(
    timeout: float, allow: AllowPrivate, resolver: Resolver | None = None
) -> httpx.AsyncClient:
    """The HTTP client every website request of a source goes through."""
    return httpx.AsyncClient(
        transport=CheckedTransport(allow, resolver),
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout, connect=5.0),
        headers={"User-Agent": "chatbot-indexer/1", "Accept-Encoding": ACCEPT_ENCODING},
    )


async def load_site(
    source: Source,
    *,
    max_pages: int = MAX_PAGES,
    timeout: float = 20.0,
    allow: AllowPrivate | None = None,
    resolver: Resolver | None = None,
) -> AsyncIterator[LoadItem]:
    """The start page and the pages under its path prefix it links to (breadth first,
    capped), or every page of a sitemap."""
    start = urldefrag(source.location).url
    parts = urlsplit(start)
    sitemap = source.is_sitemap
    prefix = "/" if sitemap else parts.path[: parts.path.rfind("/") + 1] or "/"
    site = Site(parts.scheme, parts.netloc, prefix)
    async with site_client(timeout, allow or AllowPrivate(), resolver) as client:
        fetcher = _Fetcher(client, site)
        first = await fetcher.get(start)
        if isinstance(first, Skipped):
            raise SourceFailed(f"{public_url(start)}: {first.reason}")
        queue: list[str] = []
        seen: set[str] = {start}
        if sitemap:
            queue, refused = await _sitemap_pages(fetcher, first[2], max_pages)
            for item in refused:
                yield item
            seen.update(queue)
        else:
            queue = [start]
        indexed: set[str] = set()
        capped = False
        prefetched: dict[str, Page | Skipped] = {} if sitemap else {start: first}
        while queue:
            batch, queue = queue[:PAGE_CONCURRENCY], queue[PAGE_CONCURRENCY:]
            results = await asyncio.gather(*(_fetch_known(fetcher, u, prefetched) for u in batch))
            for url, result in zip(batch, results, strict=True):
                if isinstance(result, Skipped):
                    yield result
                    continue
                final, ctype, body = result
                if final != url:  # redirected inside the site: index the page once, by its URL
                    if final in indexed:
                        continue
                    seen.add(final)
                indexed.add(final)
                if ctype in ("text/html", "application/xhtml+xml", ""):
                    try:
                        title, text = await asyncio.to_thread(html_to_markdown, body)
                    except ConversionTooSlow as exc:
                        yield Skipped(url, str(exc))
                        continue
                    if not sitemap:
                        links = await asyncio.to_thread(page_links, body, final)
                        for link in links:
                            if link not in seen and site.holds(link):
                                seen.add(link)
                                if len(seen) > max_pages:
                                    capped = True
                                    continue
                                queue.append(link)
                    kind = "markdown"
                elif ctype.startswith("text/"):
                    title, text, kind = "", body, "markdown" if "markdown" in ctype else "text"
                else:
                    yield Skipped(url, f"not a web page ({ctype})")
                    continue
                if not text.strip():
                    yield Skipped(url, "no text")
                    continue
                yield Document(id=final, title=title or final, url=final, text=text, kind=kind)
        if capped:
            yield Skipped(start, f"crawl capped at {max_pages} pages; the rest was not indexed")


async def probe(
    source: Source, allow: AllowPrivate, *, timeout: float, resolver: Resolver | None = None
) -> None:
    """Whether a website source's first page can be read, as indexing would read it;
    ``SourceFailed`` (one line) when not."""
    start = urldefrag(source.location).url
    parts = urlsplit(start)
    site = Site(parts.scheme, parts.netloc, parts.path[: parts.path.rfind("/") + 1] or "/")
    async with site_client(timeout, allow, resolver) as client:
        first = await _Fetcher(client, site).get(start)
    if isinstance(first, Skipped):
        raise SourceFailed(first.reason)


async def _fetch_known(
    fetcher: _Fetcher, url: str, prefetched: dict[str, Page | Skipped]
) -> Page | Skipped:
    if url in prefetched:
        return prefetched.pop(url)
    return await fetcher.get(url)


async def _sitemap_pages(
    fetcher: _Fetcher, xml: str, max_pages: int
) -> tuple[list[str], list[Skipped]]:
    """The pages a sitemap (and the sitemaps it nests) lists inside the site, and the
    entries refused with their reasons."""
    pages: list[str] = []
    refused: list[Skipped] = []
    nested = 0
    pending = [xml]
    while pending and len(pages) < max_pages:
        try:
            found = await asyncio.to_thread(parse_sitemap, pending.pop(0))
        except SitemapRefused as exc:
            refused.append(Skipped(fetcher.site.host, str(exc)))
            continue
        for loc in found.sitemaps:
            loc = urldefrag(loc).url
            if fetcher.site.holds(loc) and nested < MAX_NESTED_SITEMAPS:
                nested += 1
                result = await fetcher.get(loc)
                if not isinstance(result, Skipped):
                    pending.append(result[2])
        for loc in found.pages:
            loc = urldefrag(loc).url
            if fetcher.site.scheme == "https" and urlsplit(loc).scheme == "http":
                refused.append(Skipped(loc, "an http page in an https sitemap (refused)"))
            elif urlsplit(loc).netloc == fetcher.site.host and loc not in pages:
                pages.append(loc)
    return pages[:max_pages], refused
