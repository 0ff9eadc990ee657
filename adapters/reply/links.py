"""What a link in an answer may be, for every platform's renderer: only http, https and
mailto links are shown as links, and a link whose text is not its own address shows its
host beside it, so a model (or a poisoned document it read) cannot dress an address up as
something else (``[Reset your SSO password](https://attacker.example/...)``)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from bot.conversation import Citation, ReplySink
from bot.errors import UserFacingError

LINK_SCHEMES = ("http", "https", "mailto")


def is_linkable(url: str) -> bool:
    """Whether ``url`` may be shown as a link (http, https or mailto, with somewhere to go)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    if parts.scheme.lower() == "mailto":
        return bool(parts.path.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def shown_host(url: str) -> str:
    """What is shown beside a link: its host as the browser will reach it (IDNA, so a
    look-alike host shows as ``xn--...``), or a mailto link's address."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() == "mailto":
        return unquote(parts.path.split("?", 1)[0])
    host = parts.hostname or ""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def text_is_address(text: str, url: str) -> bool:
    """Whether a link's text says where it goes: the URL itself (with or without its
    scheme or a trailing slash), its host, or a mailto link's address."""
    said = text.strip().lower().rstrip("/")
    if not said:
        return True
    address = url.strip().lower().rstrip("/")
    if said in (address, shown_host(url).lower(), (urlsplit(url).hostname or "").lower()):
        return True
    for prefix in ("https://", "http://", "mailto:"):
        if address.startswith(prefix) and said == address[len(prefix) :]:
            return True
    return False


def labelled(text: str, url: str) -> str:
    """A link's text with its host beside it, unless the text is its address or already
    ends with that host in parentheses."""
    host = shown_host(url)
    if not host or text_is_address(text, url) or text.rstrip().endswith(f"({host})"):
        return text
    return f"{text} ({host})"


# -- Markdown: links rewritten in place, for text sent to a platform as Markdown -------------

# [text](url "title") or ![alt](url): text without brackets on one line, url without spaces
# (balanced parentheses allowed, as CommonMark does).
_LINK = re.compile(
    r"(?P<image>!?)\[(?P<text>[^\[\]\n]*)\]\(\s*(?:<(?P<angled>[^<>\n]*)>"
    r"|(?P<url>(?:[^()\s]|\([^()\s]*\))*))"
    r"(?P<title>\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?\s*\)"
)
_AUTOLINK = re.compile(r"<(?P<url>[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>")
_DEFINITION = re.compile(r"^(?P<indent> {0,3})\[(?P<label>[^\]\n]+)\]:", re.MULTILINE)
# Whatever else still reads as a link destination other than http(s)/mailto/relative.
_OTHER_DESTINATION = re.compile(r"\]\((?=\s*<?\s*[^\s)>]*?[:&\\])")
_BACKSLASH = re.compile(r"\\([!-/:-@\[-`{-~])")
# The end of a text that may still become a link as more arrives: an open ``[text``, a
# ``[text]`` waiting for its ``(``, an unfinished ``(url``, an open ``<scheme:`` or a ``!``.
_UNFINISHED = re.compile(
    r"(?:!?\[[^\[\]\n]{0,500}(?:\](?:\((?:[^()\n]|\([^()\n]*\)?){0,2000})?)?"
    r"|<(?:[A-Za-z][A-Za-z0-9+.\-]{0,31}(?::[^\s<>]{0,2000})?)?|!)$"
)


def destination(url: str) -> str:
    """A link destination as a browser would read it: backslash escapes and character
    references resolved, surrounding space and control characters gone."""
    return html.unescape(_BACKSLASH.sub(r"\1", url)).strip(" \t\r\n\x00-\x1f")


def is_relative(url: str) -> bool:
    """Whether a destination has no scheme (a path only: no platform opens it)."""
    head = re.split(r"[/?#]", destination(url), maxsplit=1)[0]
    return ":" not in head


def _rewrite_link(match: re.Match[str]) -> str:
    text = match.group("text")
    raw = match.group("angled") if match.group("angled") is not None else match.group("url")
    if is_relative(raw):
        return match.group(0)
    url = destination(raw)
    if not is_linkable(url):
        return text or url  # javascript:, data:...: as text only
    return f"[{labelled(text, url)}]({url})"  # an image is shown as a link, never fetched


def _rewrite_autolink(match: re.Match[str]) -> str:
    url = match.group("url")
    return match.group(0) if is_linkable(url) else url


def safe_links(markdown: str) -> str:
    """Markdown whose links are all http, https or mailto, with the host beside any link
    whose text is not its address; images become links; link reference definitions are
    shown as text (their links could not be checked where they are used)."""
    if "[" not in markdown and "<" not in markdown:
        return markdown
    text = _LINK.sub(_rewrite_link, markdown)
    text = _AUTOLINK.sub(_rewrite_autolink, text)
    text = _OTHER_DESTINATION.sub(lambda m: _other(text, m), text)
    return _DEFINITION.sub(lambda m: f"{m.group('indent')}\\[{m.group('label')}]:", text)


def _other(text: str, match: re.Match[str]) -> str:
    """``](`` that still opens a destination with a scheme that is not allowed (one the
    link pattern could not read): broken with a space, so it is no link."""
    tail = text[match.end() : match.end() + 2100].split(")", 1)[0]
    if is_relative(tail.lstrip(" <")) or is_linkable(destination(tail.lstrip(" <"))):
        return match.group(0)
    return "] ("


def settled(markdown: str) -> tuple[str, str]:
    """(the part of a text still being written that no later text can turn into a link,
    the rest to hold back until more arrives)."""
    unfinished = _UNFINISHED.search(markdown)
    if unfinished is None:
        return markdown, ""
    return markdown[: unfinished.start()], markdown[unfinished.start() :]


class LinkGuard:
    """``safe_links`` over a text that arrives in pieces: a link cut between two pieces
    is held back until it is complete (or can no longer be a link)."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        """What can be shown of the text so far, beyond what was already returned."""
        ready, self._held = settled(self._held + piece)
        return safe_links(ready)

    def flush(self) -> str:
        """The rest, at the end of the text."""
        rest, self._held = self._held, ""
        return safe_links(rest)


class LinkSafeSink:
    """A reply sink whose text has safe links (for sinks that pass Markdown on as is)."""

    def __init__(self, inner: ReplySink) -> None:
        self._inner = inner
        self._guard = LinkGuard()

    async def status(self, text: str) -> None:
        """See ``ReplySink.status``."""
        await self._inner.status(text)

    async def write(self, text: str) -> None:
        """See ``ReplySink.write``."""
        safe = self._guard.feed(text)
        if safe:
            await self._inner.write(safe)

    async def fail(self, error: UserFacingError) -> None:
        """See ``ReplySink.fail``: the text held back goes first."""
        await self._write_held()
        await self._inner.fail(error)

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        """See ``ReplySink.cite``: the text held back goes first."""
        await self._write_held()
        await self._inner.cite(citations, searched=searched, answer_id=answer_id)

    async def close(self) -> None:
        """See ``ReplySink.close``."""
        await self._write_held()
        await self._inner.close()

    async def _write_held(self) -> None:
        rest = self._guard.flush()
        if rest:
            await self._inner.write(rest)
