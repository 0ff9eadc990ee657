"""Loading documents from sources: a directory, a git checkout, a website or sitemap.

Bad input never stops a source: each file or page that cannot be used is reported as
``Skipped`` with its reason, and the rest goes on. Nothing a source holds can hurt the bot:
sizes, decompression, parsing time, PDF memory and git checkouts are bounded, website
sources reach only public addresses, git runs without the bot's secrets.

- ``documents``: what loaders yield, text helpers
- ``files``: directories; ``pdf``: PDF text in a bounded child process
- ``git``: git sources; ``web``, ``sitemaps``, ``net``: website sources; ``html``: HTML to text
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from inference.knowledge.loaders.documents import (
    Document,
    LoadItem,
    Skipped,
    SourceFailed,
    decode,
    title_of,
)
from inference.knowledge.loaders.files import holds_secrets, load_directory, read_file, walk
from inference.knowledge.loaders.git import (
    GIT_TIMEOUT_SECONDS,
    checkout,
    load_git,
    run_git,
    web_url,
)
from inference.knowledge.loaders.html import html_to_markdown
from inference.knowledge.loaders.net import AllowPrivate, Resolver, parse_allow_private
from inference.knowledge.loaders.web import load_site
from inference.knowledge.sources import Source

__all__ = [
    "AllowPrivate",
    "Document",
    "LoadItem",
    "LoadOptions",
    "Skipped",
    "SourceFailed",
    "checkout",
    "decode",
    "holds_secrets",
    "html_to_markdown",
    "load",
    "load_directory",
    "load_git",
    "load_site",
    "parse_allow_private",
    "read_file",
    "run_git",
    "title_of",
    "walk",
    "web_url",
]


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How sources are reached: the private hosts/networks website sources may reach
    (``KNOWLEDGE_ALLOW_PRIVATE``), the resolver (tests give a stub) and git's timeout."""

    allow_private: AllowPrivate = field(default_factory=AllowPrivate)
    resolver: Resolver | None = None
    git_timeout: float = GIT_TIMEOUT_SECONDS


async def load(
    source: Source, *, git_cache: Path, options: LoadOptions | None = None
) -> AsyncIterator[LoadItem]:
    """Every document of a source; raises ``SourceFailed`` when it cannot be read at all."""
    options = options or LoadOptions()
    if source.kind == "directory":
        items = load_directory(Path(source.location))
    elif source.kind == "git":
        items = load_git(source, git_cache, timeout=options.git_timeout)
    else:
        items = load_site(source, allow=options.allow_private, resolver=options.resolver)
    async for item in items:
        yield item
