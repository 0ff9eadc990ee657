"""Slack rendering of model answers: Markdown to mrkdwn (adapters.reply.text_split cuts long ones).

Pure functions, no I/O. Models write CommonMark/GFM; Slack's ``text`` field speaks mrkdwn,
which differs in emphasis markers, links, headings and escaping, and has no tables.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from adapters.reply.text_split import fence_closes, fence_open
from adapters.slack.inline import (
    BACKSLASH_ESCAPE,
    decode_entities,
    escape,
    inline,
    ref_key,
    render_link,
    strip_emphasis,
)
from bot.conversation import Citation

__all__ = ["source_line", "sources_blocks", "to_mrkdwn"]

_RULE = "———"

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
        fence = fence_open(line)
        if fence is not None:
            indent, marker, _info = fence
            out.append("```")
            i += 1
            while i < len(lines) and not fence_closes(lines[i], marker):
                out.append(escape(_dedent(lines[i], len(indent))))
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
            if fence_closes(line, marker):
                marker = None
            continue
        fence = fence_open(line)
        if fence is not None:
            marker = fence[1]
            continue
        match = _REF_DEF.match(line)
        if match is not None:
            url = match.group("url1") if match.group("url1") is not None else match.group("url2")
            refs.setdefault(ref_key(match.group("label")), url or "")
            where.add(number)
    return refs, where


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
            return f"{match.group('indent')}• {box}{inline(body, refs)}", "list"
    match = _ORDERED.match(line)
    if match is not None:
        body = inline(match.group("body"), refs)
        return f"{match.group('indent')}{match.group('num')} {body}", "list"
    return inline(line, refs), "para"


def _heading(text: str, refs: dict[str, str]) -> str:
    # The whole heading is bold, so bold inside it would only toggle Slack's bold off.
    return f"*{inline(text, refs, in_bold=True)}*" if text else ""


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
        if fence_open(lines[end]) is not None:
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
        return escape(" | ".join(cells).rstrip())

    separator = "-+-".join("-" * width for width in widths)
    return ["```", line(rows[0]), separator, *(line(row) for row in rows[1:]), "```"]


def _plain_cell(cell: str) -> str:
    """Cell text without Markdown markers, which a code block would show literally."""
    text = re.sub(r"!?\[([^\]]*)\]\(([^)\s]*)[^)]*\)", _label_with_url, cell)
    text = strip_emphasis(text)
    return decode_entities(BACKSLASH_ESCAPE.sub(r"\1", text))


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


# --------------------------------------------------------------------------- sources

CONTEXT_ELEMENTS = 10  # Slack's limit of elements in one context block
_TITLE_CHARS = 150


def sources_blocks(citations: Sequence[Citation], *, searched: bool) -> list[dict[str, Any]]:
    """Context blocks listing sources under an answer: ``[n] <url|title>`` each, after a
    "Sources:" label ("Searched:" for sources the answer drew on without citing)."""
    if not citations:
        return []
    elements = [{"type": "mrkdwn", "text": _sources_label(searched)}]
    elements += [{"type": "mrkdwn", "text": source_line(c)} for c in citations]
    return [
        {"type": "context", "elements": elements[start : start + CONTEXT_ELEMENTS]}
        for start in range(0, len(elements), CONTEXT_ELEMENTS)
    ]


def sources_text(citations: Sequence[Citation], *, searched: bool) -> str:
    """The same list as lines of text (notifications, screen readers, ephemeral replies);
    "" without sources."""
    if not citations:
        return ""
    return _sources_label(searched) + "\n" + "\n".join(source_line(c) for c in citations)


def _sources_label(searched: bool) -> str:
    return "*Searched:*" if searched else "*Sources:*"


def source_line(citation: Citation) -> str:
    """``[n] <url|title>`` in mrkdwn (a title without a usable URL is shown as text)."""
    title = " ".join(citation.title.split()) or citation.url or f"Source {citation.number}"
    if len(title) > _TITLE_CHARS:
        title = title[: _TITLE_CHARS - 1].rstrip() + "…"
    return f"[{citation.number}] {render_link(citation.url, title)}"
