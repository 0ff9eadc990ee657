"""Slack rendering of model answers: Markdown to mrkdwn (adapters.reply.text_split cuts long ones).

Pure functions, no I/O. Models write CommonMark/GFM; Slack's ``text`` field speaks mrkdwn,
which differs in emphasis markers, links, headings and escaping, and has no tables.
mistune parses (``adapters.slack.parse``); this walks its tree.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from adapters.reply.links import destination, is_linkable, is_relative, labelled
from adapters.slack.parse import Token, gap, parse, parse_inline
from bot.conversation import Citation

__all__ = ["source_line", "sources_blocks", "sources_text", "to_mrkdwn"]

_RULE = "———"
_FENCE = "```"
# Slack's rule: only these three are escaped, everywhere, code included.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_ENCODED_HOST = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#@]*%[^/?#@]*)(?=[/?#]|$)")
_BACKTICKS = re.compile(r"`+")


def to_mrkdwn(markdown: str) -> str:
    """Convert the CommonMark/GFM an LLM writes into Slack mrkdwn for a message's ``text``.

    Emphasis, strikethrough, headings, links, images, bullets, rules and tables are
    translated; ``&``, ``<`` and ``>`` are escaped as Slack requires. Code (fenced blocks
    and inline spans) is kept as written apart from that escaping; a fence's language tag
    is dropped because Slack would show it as code. A fence that is never closed (a
    stream cut mid-block) runs to the end, as in CommonMark, and is closed in the output.
    The blank lines between blocks are the answer's.
    """
    blocks, trailing = parse(markdown)
    return "\n".join(line for line, _code in _blocks(blocks, top=True)) + "\n" * trailing


def _escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack wants them in text."""
    return text.translate(_ESCAPES)


def _decode(text: str) -> str:
    return _ENTITY.sub(lambda m: html.unescape(m.group()), text) if "&" in text else text


# --------------------------------------------------------------------------- blocks

# A line of output, and whether it belongs to a code block (which a list does not indent:
# Slack shows a code block's own indentation).
_Line = tuple[str, bool]


def _blocks(tokens: list[Token], *, top: bool = False, quoted: bool = False) -> list[_Line]:
    lines: list[_Line] = []
    for token in tokens:
        if token["type"] == "blank_line":
            continue
        if lines or top:
            lines.extend([("", False)] * gap(token))
        lines.extend(_block(token, quoted))
    return lines


def _text(text: str) -> list[_Line]:
    return [(line, False) for line in text.split("\n")]


def _code(lines: list[str]) -> list[_Line]:
    return [(line, True) for line in [_FENCE, *lines, _FENCE]]


def _block(token: Token, quoted: bool) -> list[_Line]:
    kind = token["type"]
    if kind in ("paragraph", "block_text"):
        return _text(_inline(token["children"]))
    if kind == "heading":
        # The whole heading is bold, so bold inside it would only toggle Slack's bold off.
        text = _inline(token["children"], in_bold=True)
        return [(f"*{text}*" if text else "", False)]
    if kind == "block_code":
        raw = token["raw"]
        return _code(_escape(raw[:-1] if raw.endswith("\n") else raw).split("\n") if raw else [])
    if kind == "thematic_break":
        return [(_RULE, False)]
    if kind == "list":
        return _list(token, quoted)
    if kind == "block_quote":
        inner = _blocks(token["children"], quoted=True)
        if quoted:  # Slack has one level of quote: ">>" is flattened
            return inner
        return [(f"> {line}" if line else ">", code) for line, code in inner]
    if kind == "table":
        return _code(_table(token))
    return _text(_escape(token.get("raw", "").rstrip("\n")))  # HTML is text


def _list(token: Token, quoted: bool) -> list[_Line]:
    ordered = token["attrs"]["ordered"]
    number = token["attrs"].get("start", 1)
    lines: list[_Line] = []
    for item in token["children"]:
        if lines and not token["tight"]:
            lines.append(("", False))
        marker = f"{number}{token['bullet']} " if ordered else "• "
        indent = " " * len(marker)
        number += 1
        if item["type"] == "task_list_item":
            marker += "☑ " if item["attrs"]["checked"] else "☐ "
        body = _blocks(item["children"], quoted=quoted)
        if not body:  # "-" alone: while streaming, as often the start of "---" or "**"
            lines.append((marker.strip() if ordered else token["bullet"], False))
            continue
        first, code = body[0]
        if code:  # Slack opens a code block at the start of a line
            lines.append((marker.rstrip(), False))
        else:
            lines.append((f"{marker}{first}".rstrip(), False))
            body = body[1:]
        lines.extend((line if code or not line else indent + line, code) for line, code in body)
    return lines


# --------------------------------------------------------------------------- inline


def _inline(tokens: list[Token], *, in_bold: bool = False) -> str:
    parts: list[str] = []
    for token in tokens:
        kind = token["type"]
        if kind == "text":
            parts.append(_escape(_decode(token["raw"])))
        elif kind == "strong":
            inner = _inline(token["children"], in_bold=in_bold)
            parts.append(inner if in_bold else f"*{inner}*")
        elif kind == "emphasis":
            parts.append(f"_{_inline(token['children'], in_bold=in_bold)}_")
        elif kind == "strikethrough":
            parts.append(f"~{_inline(token['children'], in_bold=in_bold)}~")
        elif kind == "codespan":
            parts.append(_code_span(token["raw"]))
        elif kind in ("link", "image"):
            parts.append(_link(token["attrs"]["url"], _plain(token["children"])))
        elif kind in ("softbreak", "linebreak"):
            parts.append("\n")
        else:
            parts.append(_escape(token.get("raw", "")))
    return "".join(parts)


def _plain(tokens: list[Token]) -> str:
    """Text without markup: a link's label, a table cell."""
    parts: list[str] = []
    for token in tokens:
        if "children" in token:
            parts.append(_plain(token["children"]))
        elif token["type"] in ("softbreak", "linebreak"):
            parts.append(" ")
        else:
            raw = token.get("raw", "")
            parts.append(_decode(raw) if token["type"] == "text" else raw)
    return "".join(parts)


def _code_span(content: str) -> str:
    """An inline code span; Slack only knows single backticks, so use them when possible."""
    if "`" not in content:
        return f"`{_escape(content)}`"
    fence = "`" * (max(len(run) for run in _BACKTICKS.findall(content)) + 1)
    pad = " " if content.startswith("`") or content.endswith("`") else ""
    return f"{fence}{pad}{_escape(content)}{pad}{fence}"


# --------------------------------------------------------------------------- links


def _link(url: str, label: str) -> str:
    """A link mistune read (its URL already unescaped and percent-encoded)."""
    host = _ENCODED_HOST.match(url)
    if host is not None:  # a host is never percent-encoded: show the one a browser reaches
        url = host.group(1) + unquote(host.group(2)) + url[host.end() :]
    return _render_link(url, label)


def _source_link(url: str, label: str) -> str:
    """``<url|label>`` for http, https and mailto links, with the host beside a label that
    is not the address; a relative URL (Slack cannot open it) becomes ``label (url)``;
    any other scheme (``javascript:``...) only its label."""
    return _render_link(destination(url), _plain(parse_inline(label)))


def _render_link(url: str, text: str) -> str:
    url = url.strip()
    if not url:
        return _escape(text)
    if url.lower().startswith("www."):
        url = f"http://{url}"
    if is_relative(url):
        return f"{_escape(text)} ({_escape(url)})" if text else _escape(url)
    if not is_linkable(url):
        return _escape(text) if text.strip() else _escape(url)
    said = text == url
    # Characters that would end or split Slack's <url|text> are percent-encoded.
    for char, code in ((" ", "%20"), ("<", "%3C"), (">", "%3E"), ("|", "%7C")):
        url = url.replace(char, code)
    if said or not text.strip() or text == url:
        return f"<{url}>"
    text = labelled(text, url)
    # Inside <url|text> only an angle bracket would end the link early.
    return f"<{url}|{text.replace('<', '&lt;').replace('>', '&gt;')}>"


# --------------------------------------------------------------------------- tables


def _table(token: Token) -> list[str]:
    """A GFM table as lines of aligned plain text, for a code block (Slack has no tables)."""
    head, body = token["children"]
    rows = [head["children"], *(row["children"] for row in body["children"])]
    aligns = [cell["attrs"]["align"] for cell in head["children"]]
    cells = [[_cell(cell["children"]) for cell in row] for row in rows]
    widths = [max(1, *(_width(row[c]) for row in cells)) for c in range(len(aligns))]

    def line(row: list[str]) -> str:
        padded = [_pad(cell, widths[c], aligns[c]) for c, cell in enumerate(row)]
        return _escape(" | ".join(padded).rstrip())

    separator = "-+-".join("-" * width for width in widths)
    return [line(cells[0]), separator, *(line(row) for row in cells[1:])]


def _cell(tokens: list[Token]) -> str:
    """A cell's text; a link as ``label (url)`` (a code block shows no links)."""
    parts: list[str] = []
    for token in tokens:
        if token["type"] in ("link", "image"):
            label, url = _plain(token["children"]), token["attrs"]["url"]
            parts.append(label or url if not url or url == label else f"{label} ({url})")
        else:
            parts.append(_plain([token]))
    return "".join(parts)


def _pad(text: str, width: int, align: str) -> str:
    gap = width - _width(text)
    if align == "right":
        return " " * gap + text
    if align == "center":
        return " " * (gap // 2) + text + " " * (gap - gap // 2)
    return text + " " * gap


def _width(text: str) -> int:
    """Columns `text` takes in a monospace font (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
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
    return f"[{citation.number}] {_source_link(citation.url, title)}"
