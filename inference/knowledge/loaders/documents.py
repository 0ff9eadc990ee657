"""What a loader yields: a ``Document``, or a ``Skipped`` file or page with its reason;
``SourceFailed`` when a source cannot be read at all. Also the text helpers every loader
uses (bytes to text, a document's title)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Document:
    """One loaded document."""

    id: str  # stable within its source: the relative path or the page URL
    title: str
    url: str  # a link a person can open
    text: str
    kind: str  # markdown, rst, text, html-as-markdown ("markdown"), pdf ("text"), code:<lang>

    @property
    def content_hash(self) -> str:
        """Changes when anything stored for the document would change."""
        digest = hashlib.sha256()
        for part in (self.kind, self.title, self.url, self.text):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file or page not indexed, and why. ``keep``: a passing failure (a 5xx, a timeout):
    what the store already holds of it stays."""

    id: str
    reason: str
    keep: bool = False


class SourceFailed(Exception):
    """The source as a whole cannot be read (missing directory, unreachable remote or site)."""


LoadItem = Document | Skipped


def decode(data: bytes) -> str | None:
    """Text from bytes: UTF-8 (BOM allowed), else UTF-16 with a BOM, else Windows-1252 /
    Latin-1; None for binary content (NUL bytes or mostly control characters)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    head = data[:8192]
    if b"\x00" in head:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\n\r\t\f\v")
    if controls > max(8, len(text[:8192]) // 20):
        return None
    return text


_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_RST_TITLE = re.compile(
    r"^(?:([=\-~*#^\"+`'])\1{2,}\n)?(\S[^\n]{0,200})\n([=\-~*#^\"+`'])\3{2,}\s*$", re.MULTILINE
)


def title_of(text: str, kind: str, fallback: str) -> str:
    """The first top heading of Markdown / reStructuredText, else ``fallback``."""
    if kind == "markdown":
        match = _MD_TITLE.search(text[:20000])
        if match:
            return match.group(1).strip()[:200]
    elif kind == "rst":
        match = _RST_TITLE.search(text[:20000])
        if match:
            return match.group(2).strip()[:200]
    return fallback
