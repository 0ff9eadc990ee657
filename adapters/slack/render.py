"""Slack rendering of model answers: Markdown to mrkdwn (adapters.text_split cuts long ones).

Pure functions, no I/O. Models write CommonMark/GFM; Slack's ``text`` field speaks mrkdwn,
which differs in emphasis markers, links, headings and escaping, and has no tables.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from bot.conversation import Citation

__all__ = ["source_line", "sources_blocks", "to_mrkdwn"]

# Slack's rule: only these three are escaped, everywhere, code included.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_RULE = "———"
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_CLOSE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-{2,})[ \t]*$")
_HR = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_QUOTE = re.compile(r"^ {0,3}> ?(.*)$")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?P<body>.*)$")
_ORDERED = re.compile(r"^(?P<indent>[ \t]*)(?P<num>\d{1,9}[.)])[ \t]+(?P<body>.*)$")
_TASK = re.compile(r"^\[([ xX])\][ \t]+")
_REF_DEF = re.compile(
    r"^ {0,3}\[(?P<label>[^\]^][^\]]*)\]:[ \t]*(?:<(?P<url1>[^>]*)>|(?P<url2>\S+))"
    r"(?:[ \t]+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?[ \t]*$"
)
_TABLE_DELIM = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>")
_EMAIL_AUTOLINK = re.compile(
    r"<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)>"
)
_BARE_URL = re.compile(r"https?://[^\s<>`]+", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
# Characters that may start something the inline scanner treats specially.
_PLAIN_RUN = re.compile(r"[^\\`!\[<*_~hH]+")


# --------------------------------------------------------------------------- to_mrkdwn


def to_mrkdwn(markdown: str) -> str:
    """Convert the CommonMark/GFM an LLM writes into Slack mrkdwn for a message's ``text``.

    Emphasis, strikethrough, headings, links, images, bullets, rules and tables are
    translated; ``&``, ``<`` and ``>`` are escaped as Slack requires. Code (fenced blocks
    and inline spans) is kept as written apart from that escaping; a fence's language tag
    is dropped because Slack would show it as code. A fence that is never closed (a
    stream cut mid-block) runs to the end, as in CommonMark, and is closed in the output.
    """
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    refs, definition_lines = _collect_references(lines)
    out: list[str] = []
    paragraph_at: int | None = None  # index in `out` of a line a setext underline may promote
    paragraph_raw = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if i in definition_lines:
            paragraph_at = None
            i += 1
            continue
        fence = _fence_open(line)
        if fence is not None:
            indent, marker, _info = fence
            out.append("```")
            i += 1
            while i < len(lines) and not _fence_closes(lines[i], marker):
                out.append(_escape(_dedent(lines[i], len(indent))))
                i += 1
            out.append("```")
            i += 1  # past the closing fence (or past the end when unterminated)
            paragraph_at = None
            continue
        table_end = _table_end(lines, i)
        if table_end is not None:
            out.extend(_render_table(lines[i], lines[i + 1], lines[i + 2 : table_end]))
            i = table_end
            paragraph_at = None
            continue
        if paragraph_at is not None and _SETEXT.match(line):
            out[paragraph_at] = _heading(paragraph_raw.strip(), refs)
            paragraph_at = None
            i += 1
            continue
        if _HR.match(line):
            out.append(_RULE)
            paragraph_at = None
            i += 1
            continue
        converted, kind = _convert_line(line, refs)
        out.append(converted)
        paragraph_at, paragraph_raw = (len(out) - 1, line) if kind == "para" else (None, "")
        i += 1
    return "\n".join(out)


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _fence_open(line: str) -> tuple[str, str, str] | None:
    """(indent, fence marker, info string) when `line` opens a code fence."""
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    marker, info = match.group("fence"), match.group("info")
    if marker[0] == "`" and "`" in info:
        return None  # CommonMark: ```x``` on one line is an inline code span, not a fence
    return match.group("indent"), marker, info


def _fence_closes(line: str, marker: str) -> bool:
    match = _FENCE_CLOSE.match(line)
    if match is None:
        return False
    fence = match.group("fence")
    return fence[0] == marker[0] and len(fence) >= len(marker)


def _dedent(line: str, width: int) -> str:
    """Remove up to `width` leading spaces (a fence's own indentation, e.g. inside a list)."""
    strip = 0
    while strip < width and strip < len(line) and line[strip] == " ":
        strip += 1
    return line[strip:]


def _collect_references(lines: list[str]) -> tuple[dict[str, str], set[int]]:
    """Link reference definitions (``[label]: url``) outside code, and the lines holding them."""
    refs: dict[str, str] = {}
    where: set[int] = set()
    marker: str | None = None
    for number, line in enumerate(lines):
        if marker is not None:
            if _fence_closes(line, marker):
                marker = None
            continue
        fence = _fence_open(line)
        if fence is not None:
            marker = fence[1]
            continue
        match = _REF_DEF.match(line)
        if match is not None:
            url = match.group("url1") if match.group("url1") is not None else match.group("url2")
            refs.setdefault(_ref_key(match.group("label")), url or "")
            where.add(number)
    return refs, where


def _ref_key(label: str) -> str:
    return " ".join(label.split()).casefold()


def _convert_line(line: str, refs: dict[str, str]) -> tuple[str, str]:
    """One line outside code and tables, with the kind of block it belongs to."""
    if not line.strip():
        return "", "blank"
    match = _ATX.match(line)
    if match is not None:
        return _heading((match.group(2) or "").strip(), refs), "heading"
    match = _QUOTE.match(line)
    if match is not None:
        inner = match.group(1)
        nested = _QUOTE.match(inner)
        while nested is not None:  # Slack has one level of quote: flatten ">>"
            inner = nested.group(1)
            nested = _QUOTE.match(inner)
        if _HR.match(inner):
            return f"> {_RULE}", "quote"
        converted, _kind = _convert_line(inner, refs)
        return (f"> {converted}" if converted else ">"), "quote"
    if not _HR.match(line):
        match = _BULLET.match(line)
        if match is not None:
            body = match.group("body")
            box = ""
            task = _TASK.match(body)
            if task is not None:
                box = "☐ " if task.group(1) == " " else "☑ "
                body = body[task.end() :]
            return f"{match.group('indent')}• {box}{_inline(body, refs)}", "list"
    match = _ORDERED.match(line)
    if match is not None:
        body = _inline(match.group("body"), refs)
        return f"{match.group('indent')}{match.group('num')} {body}", "list"
    return _inline(line, refs), "para"


def _heading(text: str, refs: dict[str, str]) -> str:
    # The whole heading is bold, so bold inside it would only toggle Slack's bold off.
    return f"*{_inline(text, refs, in_bold=True)}*" if text else ""


# --------------------------------------------------------------------------- tables


def _table_end(lines: list[str], start: int) -> int | None:
    """End (exclusive) of a GFM table starting at `start`, or None when there is none."""
    if start + 1 >= len(lines):
        return None
    header, delimiter = lines[start], lines[start + 1]
    if "|" not in header or "|" not in delimiter or not _TABLE_DELIM.match(delimiter):
        return None
    if len(_split_cells(header)) != len(_split_cells(delimiter)):
        return None
    end = start + 2
    while end < len(lines) and lines[end].strip() and "|" in lines[end]:
        if _fence_open(lines[end]) is not None:
            break
        end += 1
    return end


def _split_cells(row: str) -> list[str]:
    text = row.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    cells = re.split(r"(?<!\\)\|", text)
    return [cell.strip().replace("\\|", "|") for cell in cells]


def _render_table(header: str, delimiter: str, body: list[str]) -> list[str]:
    """A GFM table as aligned plain text inside a code block (Slack has no tables)."""
    aligns = []
    for cell in _split_cells(delimiter):
        if cell.startswith(":") and cell.endswith(":"):
            aligns.append("center")
        elif cell.endswith(":"):
            aligns.append("right")
        else:
            aligns.append("left")
    rows = [[_plain_cell(cell) for cell in _split_cells(row)] for row in [header, *body]]
    columns = max(len(row) for row in rows)
    aligns += ["left"] * (columns - len(aligns))
    for row in rows:
        row += [""] * (columns - len(row))
    widths = [max(1, *(_width(row[c]) for row in rows)) for c in range(columns)]

    def line(row: list[str]) -> str:
        cells = [_pad(cell, widths[c], aligns[c]) for c, cell in enumerate(row)]
        return _escape(" | ".join(cells).rstrip())

    separator = "-+-".join("-" * width for width in widths)
    return ["```", line(rows[0]), separator, *(line(row) for row in rows[1:]), "```"]


def _plain_cell(cell: str) -> str:
    """Cell text without Markdown markers, which a code block would show literally."""
    text = re.sub(r"!?\[([^\]]*)\]\(([^)\s]*)[^)]*\)", _label_with_url, cell)
    text = _strip_emphasis(text)
    return _decode_entities(_BACKSLASH_ESCAPE.sub(r"\1", text))


def _label_with_url(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2)
    if not url or url == label:
        return label or url
    return f"{label} ({url})" if label else url


def _pad(text: str, width: int, align: str) -> str:
    gap = width - _width(text)
    if align == "right":
        return " " * gap + text
    if align == "center":
        return " " * (gap // 2) + text + " " * (gap - gap // 2)
    return text + " " * gap


def _width(text: str) -> int:
    """Columns `text` takes in a monospace font (wide East Asian characters take two)."""
    total = 0
    for char in text:
        if unicodedata.combining(char) or char in "\u200d\ufe0f":
            continue
        total += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return total


# --------------------------------------------------------------------------- inline


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


def _inline(text: str, refs: dict[str, str], *, in_bold: bool = False) -> str:
    """Inline Markdown of one line as mrkdwn."""
    items = _scan_inline(text, refs)
    _match_emphasis(items)
    parts: list[str] = []
    for item in items:
        if isinstance(item, _Atom):
            parts.append(item.rendered)
        elif isinstance(item, _Text):
            parts.append(_escape(item.raw if item.literal else _decode_entities(item.raw)))
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
                items.append(_Atom(_render_link(url, label)))
                continue
        if char == "[":
            link = _parse_link(text, i, refs)
            if link is not None:
                flush()
                label, url, i = link
                items.append(_Atom(_render_link(url, label)))
                continue
        if char == "<":
            auto = _AUTOLINK.match(text, i)
            if auto is not None:
                flush()
                items.append(_Atom(f"<{_clean_url(auto.group(1))}>"))
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
        return f"`{_escape(content)}`"
    if "`" in content:
        return f"{'`' * run}{_escape(content)}{'`' * run}"
    if len(content) > 1 and content[0] == " " and content[-1] == " " and content.strip():
        content = content[1:-1]
    return f"`{_escape(content)}`"


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
        key = _ref_key(text[i + 1 : close] or label)
        return (label, refs[key], close + 1) if key in refs else None
    key = _ref_key(label)
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
        return label, _BACKSLASH_ESCAPE.sub(r"\1", url), i + 1
    return None


def _render_link(url: str, label: str) -> str:
    """``<url|label>``; a relative URL (Slack cannot open it) becomes ``label (url)``."""
    text = _plain_label(label)
    url = url.strip()
    if not url:
        return _escape(text)
    if url.lower().startswith("www."):
        url = f"http://{url}"
    if not _SCHEME.match(url):
        return f"{_escape(text)} ({_escape(url)})" if text else _escape(url)
    url = _clean_url(url)
    if not text.strip() or text == url:
        return f"<{url}>"
    # Inside <url|text> only an angle bracket would end the link early.
    return f"<{url}|{text.replace('<', '&lt;').replace('>', '&gt;')}>"


def _plain_label(label: str) -> str:
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", label)
    text = _strip_emphasis(text)
    return _decode_entities(_BACKSLASH_ESCAPE.sub(r"\1", text))


def _strip_emphasis(text: str) -> str:
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


def _decode_entities(text: str) -> str:
    return _ENTITY.sub(lambda m: html.unescape(m.group()), text) if "&" in text else text


# --------------------------------------------------------------------------- sources

CONTEXT_ELEMENTS = 10  # Slack's limit of elements in one context block
_TITLE_CHARS = 150


def sources_blocks(citations: Sequence[Citation], *, searched: bool) -> list[dict[str, Any]]:
    """Context blocks listing sources under an answer: ``[n] <url|title>`` each, after a
    "Sources:" label ("Searched:" for sources the answer drew on without citing)."""
    if not citations:
        return []
    label = "Searched:" if searched else "Sources:"
    elements = [{"type": "mrkdwn", "text": f"*{label}*"}]
    elements += [{"type": "mrkdwn", "text": source_line(c)} for c in citations]
    return [
        {"type": "context", "elements": elements[start : start + CONTEXT_ELEMENTS]}
        for start in range(0, len(elements), CONTEXT_ELEMENTS)
    ]


def source_line(citation: Citation) -> str:
    """``[n] <url|title>`` in mrkdwn (a title without a usable URL is shown as text)."""
    title = " ".join(citation.title.split()) or citation.url or f"Source {citation.number}"
    if len(title) > _TITLE_CHARS:
        title = title[: _TITLE_CHARS - 1].rstrip() + "…"
    return f"[{citation.number}] {_render_link(citation.url, title)}"
