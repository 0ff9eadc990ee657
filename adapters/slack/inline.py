"""Inline Markdown of one line as Slack mrkdwn: emphasis, code spans, links, escaping.

Pure functions, no I/O; a simplified CommonMark inline parser (delimiter runs, flanking
rules, link destinations and references) that keeps what Slack cannot show as text.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from adapters.reply.links import destination, is_linkable, is_relative, labelled

__all__ = [
    "BACKSLASH_ESCAPE",
    "decode_entities",
    "escape",
    "inline",
    "ref_key",
    "render_link",
    "strip_emphasis",
]

# Slack's rule: only these three are escaped, everywhere, code included.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# A backslash-escaped ASCII punctuation character (CommonMark).
BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>")
_EMAIL_AUTOLINK = re.compile(
    r"<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)>"
)
_BARE_URL = re.compile(r"https?://[^\s<>`]+", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# Characters that may start something the inline scanner treats specially.
_PLAIN_RUN = re.compile(r"[^\\`!\[<*_~hH]+")


def escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack wants them in text."""
    return text.translate(_ESCAPES)


def ref_key(label: str) -> str:
    """A link reference label as CommonMark matches it (case- and space-insensitive)."""
    return " ".join(label.split()).casefold()


@dataclass(slots=True)
class _Delim:
    """A run of ``*``, ``_`` or ``~`` that may open or close emphasis."""

    char: str
    count: int
    original: int
    can_open: bool
    can_close: bool
    opens: list[str] = field(default_factory=list)  # Slack markers, innermost first
    closes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Text:
    raw: str
    literal: bool = False  # a backslash-escaped character: no entity decoding


@dataclass(frozen=True, slots=True)
class _Atom:
    rendered: str  # already Slack mrkdwn (code span, link)


_Item = _Delim | _Text | _Atom


def inline(text: str, refs: dict[str, str], *, in_bold: bool = False) -> str:
    """Inline Markdown of one line as mrkdwn."""
    items = _scan_inline(text, refs)
    _match_emphasis(items)
    parts: list[str] = []
    for item in items:
        if isinstance(item, _Atom):
            parts.append(item.rendered)
        elif isinstance(item, _Text):
            parts.append(escape(item.raw if item.literal else decode_entities(item.raw)))
        else:
            closes = "".join(m for m in item.closes if not (in_bold and m == "*"))
            opens = "".join(m for m in reversed(item.opens) if not (in_bold and m == "*"))
            parts.append(closes + item.char * item.count + opens)
    return "".join(parts)


def _scan_inline(text: str, refs: dict[str, str]) -> list[_Item]:
    items: list[_Item] = []
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            items.append(_Text("".join(buffer)))
            buffer.clear()

    i, n = 0, len(text)
    while i < n:
        plain = _PLAIN_RUN.match(text, i)
        if plain is not None:
            buffer.append(plain.group())
            i = plain.end()
            continue
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in _ASCII_PUNCT:
            flush()
            items.append(_Text(text[i + 1], literal=True))
            i += 2
            continue
        if char == "`":
            run = _run_length(text, i, "`")
            closing = _closing_backticks(run).search(text, i + run)
            if closing is None:
                buffer.append("`" * run)
                i += run
                continue
            flush()
            items.append(_Atom(_code_span(text[i + run : closing.start()], run)))
            i = closing.end()
            continue
        if char == "!" and text.startswith("[", i + 1):
            link = _parse_link(text, i + 1, refs)
            if link is not None:
                flush()
                label, url, i = link
                items.append(_Atom(render_link(url, label)))
                continue
        if char == "[":
            link = _parse_link(text, i, refs)
            if link is not None:
                flush()
                label, url, i = link
                items.append(_Atom(render_link(url, label)))
                continue
        if char == "<":
            auto = _AUTOLINK.match(text, i)
            if auto is not None:
                flush()
                if is_linkable(auto.group(1)):
                    items.append(_Atom(f"<{_clean_url(auto.group(1))}>"))
                else:  # javascript:, data:...: shown as text, never as a link
                    items.append(_Text(auto.group(1), literal=True))
                i = auto.end()
                continue
            email = _EMAIL_AUTOLINK.match(text, i)
            if email is not None:
                flush()
                address = email.group(1)
                items.append(_Atom(f"<mailto:{_clean_url(address)}|{address}>"))
                i = email.end()
                continue
        if char in "hH" and (i == 0 or not text[i - 1].isalnum()):
            bare = _BARE_URL.match(text, i)
            if bare is not None:
                url = _trim_bare_url(bare.group())
                if "://" in url and not url.endswith("://"):
                    flush()
                    items.append(_Atom(f"<{_clean_url(url)}>"))
                    i += len(url)
                    continue
        if char in "*_~":
            run = _run_length(text, i, char)
            before = text[i - 1] if i > 0 else " "
            after = text[i + run] if i + run < n else " "
            flush()
            items.append(_delimiter(char, run, before, after))
            i += run
            continue
        buffer.append(char)
        i += 1
    flush()
    return items


def _run_length(text: str, start: int, char: str) -> int:
    end = start
    while end < len(text) and text[end] == char:
        end += 1
    return end - start


@lru_cache(maxsize=16)
def _closing_backticks(run: int) -> re.Pattern[str]:
    return re.compile(f"(?<!`){'`' * run}(?!`)")


def _code_span(content: str, run: int) -> str:
    """An inline code span; Slack only knows single backticks, so use them when possible."""
    if run == 1:
        return f"`{escape(content)}`"
    if "`" in content:
        return f"{'`' * run}{escape(content)}{'`' * run}"
    if len(content) > 1 and content[0] == " " and content[-1] == " " and content.strip():
        content = content[1:-1]
    return f"`{escape(content)}`"


def _delimiter(char: str, run: int, before: str, after: str) -> _Delim:
    """A delimiter run with CommonMark's flanking rules deciding whether it opens/closes."""

    def punct(c: str) -> bool:
        return unicodedata.category(c).startswith(("P", "S"))

    left = not after.isspace() and (not punct(after) or before.isspace() or punct(before))
    right = not before.isspace() and (not punct(before) or after.isspace() or punct(after))
    if char == "~":
        can_open, can_close = (left, right) if run <= 2 else (False, False)
    else:
        # CommonMark's rule for "_" (no emphasis inside a word), applied to "*" too: Slack
        # cannot show intraword emphasis, and "2*3*4" is arithmetic far more often.
        can_open = left and (not right or punct(before))
        can_close = right and (not left or punct(after))
    return _Delim(char, run, run, can_open, can_close)


def _match_emphasis(items: list[_Item]) -> None:
    """Pair delimiter runs into Slack markers (a simplified CommonMark "process emphasis")."""
    openers: list[_Delim] = []
    for item in items:
        if not isinstance(item, _Delim):
            continue
        while item.can_close and item.count > 0:
            index = len(openers) - 1
            while index >= 0 and not _compatible(openers[index], item):
                index -= 1
            if index < 0:
                break
            opener = openers[index]
            if item.char == "~":
                used, marker = opener.count, "~"
            else:
                used = 2 if opener.count >= 2 and item.count >= 2 else 1
                marker = "*" if used == 2 else "_"
            opener.count -= used
            item.count -= used
            opener.opens.append(marker)
            item.closes.append(marker)
            del openers[index + 1 :]  # runs between can no longer match anything
            if opener.count == 0:
                openers.pop()
        if item.can_open and item.count > 0:
            openers.append(item)


def _compatible(opener: _Delim, closer: _Delim) -> bool:
    if opener.char != closer.char or opener.count == 0:
        return False
    if opener.char == "~":
        return opener.count == closer.count
    both_ways = (opener.can_open and opener.can_close) or (closer.can_open and closer.can_close)
    return not (
        both_ways
        and (opener.original + closer.original) % 3 == 0
        and not (opener.original % 3 == 0 and closer.original % 3 == 0)
    )


def _parse_link(text: str, start: int, refs: dict[str, str]) -> tuple[str, str, int] | None:
    """(label, url, end) of an inline or reference link whose ``[`` is at `start`."""
    depth, i, n = 0, start, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                break
        i += 1
    else:
        return None
    label, i = text[start + 1 : i], i + 1
    if i < n and text[i] == "(":
        return _parse_destination(text, i + 1, label)
    if i < n and text[i] == "[":
        close = text.find("]", i + 1)
        if close < 0:
            return None
        key = ref_key(text[i + 1 : close] or label)
        return (label, refs[key], close + 1) if key in refs else None
    key = ref_key(label)
    return (label, refs[key], i) if key and key in refs else None


def _parse_destination(text: str, i: int, label: str) -> tuple[str, str, int] | None:
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == "<":
        close = text.find(">", i + 1)
        if close < 0:
            return None
        url, i = text[i + 1 : close], close + 1
    else:
        begin, depth = i, 0
        while i < n:
            char = text[i]
            if char == "\\" and i + 1 < n:
                i += 2
                continue
            if char in " \t":
                break
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        url = text[begin:i]
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] in "\"'(":
        close = text.find(")" if text[i] == "(" else text[i], i + 1)
        if close < 0:
            return None
        i = close + 1
        while i < n and text[i] in " \t":
            i += 1
    if i < n and text[i] == ")":
        return label, BACKSLASH_ESCAPE.sub(r"\1", url), i + 1
    return None


def render_link(url: str, label: str) -> str:
    """``<url|label>`` for http, https and mailto links, with the host beside a label that
    is not the address; a relative URL (Slack cannot open it) becomes ``label (url)``;
    any other scheme (``javascript:``...) only its label."""
    text = _plain_label(label)
    url = url.strip()
    if not url:
        return escape(text)
    if url.lower().startswith("www."):
        url = f"http://{url}"
    if is_relative(url):
        return f"{escape(text)} ({escape(url)})" if text else escape(url)
    url = destination(url)
    if not is_linkable(url):
        return escape(text) if text.strip() else escape(url)
    url = _clean_url(url)
    if not text.strip() or text == url:
        return f"<{url}>"
    text = labelled(text, url)
    # Inside <url|text> only an angle bracket would end the link early.
    return f"<{url}|{text.replace('<', '&lt;').replace('>', '&gt;')}>"


def _plain_label(label: str) -> str:
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", label)
    text = strip_emphasis(text)
    return decode_entities(BACKSLASH_ESCAPE.sub(r"\1", text))


def strip_emphasis(text: str) -> str:
    text = text.replace("`", "")
    text = re.sub(r"(\*\*|__|~~)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])", r"\1", text)
    return re.sub(r"(?<![\w_])_(?![\s_])(.+?)(?<![\s_])_(?![\w_])", r"\1", text)


def _clean_url(url: str) -> str:
    # Characters that would end or split Slack's <url|text> are percent-encoded.
    for char, code in ((" ", "%20"), ("<", "%3C"), (">", "%3E"), ("|", "%7C")):
        url = url.replace(char, code)
    return url


def _trim_bare_url(url: str) -> str:
    """GFM autolink end: no trailing punctuation, no unbalanced closing parenthesis."""
    while url:
        last = url[-1]
        if last in ".,:;!?\"'*_~]":
            url = url[:-1]
        elif last == ")" and url.count("(") < url.count(")"):
            url = url[:-1]
        else:
            break
    return url


def decode_entities(text: str) -> str:
    return _ENTITY.sub(lambda m: html.unescape(m.group()), text) if "&" in text else text
