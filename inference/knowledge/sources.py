"""``KNOWLEDGE_SOURCES`` entries: a directory, ``git+URL[#REF]`` or an http(s) site/sitemap,
each optionally restricted with ``?only=ID+ID``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

SourceKind = Literal["directory", "git", "web"]

_ONLY = "?only="


class SourceError(ValueError):
    """A ``KNOWLEDGE_SOURCES`` entry that cannot be understood."""


@dataclass(frozen=True, slots=True)
class Source:
    """One configured source."""

    name: str  # the entry as configured, without its ``?only=`` part (the source's id)
    kind: SourceKind
    location: str  # the directory path, the git URL (without ``git+`` and ``#REF``) or page URL
    ref: str = ""  # git: the branch, tag or commit ("" = the default branch)
    only: tuple[str, ...] = ()  # ids allowed to see its passages; () = everyone

    @property
    def is_sitemap(self) -> bool:
        """Whether a web source is a ``sitemap.xml`` (every page it lists)."""
        return self.kind == "web" and urlsplit(self.location).path.endswith(".xml")


def parse_source(entry: str) -> Source:
    """One entry, e.g. ``git+https://host/repo.git#main?only=C123+T456``."""
    text = entry.strip()
    if not text:
        raise SourceError("empty source")
    only: tuple[str, ...] = ()
    if _ONLY in text:
        text, _, ids = text.rpartition(_ONLY)
        only = tuple(sorted({i.strip() for i in ids.replace(" ", "+").split("+") if i.strip()}))
        if not only:
            raise SourceError(f"{entry.strip()}: `?only=` names no id")
        text = text.strip()
    if text.startswith("git+"):
        url, _, ref = text[4:].partition("#")
        if not url:
            raise SourceError(f"{text}: no repository URL after git+")
        return Source(name=text, kind="git", location=url, ref=ref.strip(), only=only)
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        if not parts.hostname:
            raise SourceError(f"{text}: no host in the URL")
        return Source(name=text, kind="web", location=text, only=only)
    if "://" in text:
        raise SourceError(f"{text}: not a directory, git+URL or http(s) URL")
    return Source(name=text, kind="directory", location=os.path.expanduser(text), only=only)


def parse_sources(value: str) -> list[Source]:
    """The comma-separated ``KNOWLEDGE_SOURCES``; the same source twice is kept once."""
    sources: dict[str, Source] = {}
    for entry in value.split(","):
        if entry.strip():
            source = parse_source(entry)
            sources.setdefault(source.name, source)
    return list(sources.values())
