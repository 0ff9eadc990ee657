"""Markdown as a model writes it, parsed by mistune into the tree ``render`` turns into mrkdwn.

Pure functions, no I/O. mistune 3 parses CommonMark with GFM's strikethrough and task
lists; for Slack, and for answers read while they stream, this adds:

- where each block starts, as the number of blank lines before it (``gap``), so the
  rendering keeps the answer's spacing (mistune's tree does not say where a list ended);
- GFM tables whose rows are the lines after the delimiter row that hold a pipe: a row
  still being written, or one a cell short, stays in its table (mistune's table plugin
  turns such a table back into text);
- bare ``http(s)://`` addresses become links (GFM's rule for where one ends);
- ``*`` inside a word is text, as ``_`` is: Slack cannot show emphasis inside a word, and
  ``2*3*4`` is arithmetic far more often;
- a lone ``-`` under a line is no heading underline (it is the next item being written).

Raw HTML is not parsed: it is text, which the renderer escapes.
"""

from __future__ import annotations

import re
from typing import Any

import mistune
from mistune.block_parser import BlockParser
from mistune.core import BlockState, InlineState
from mistune.inline_parser import InlineParser
from mistune.util import unescape

from adapters.reply.text_split import fence_open

__all__ = ["Token", "gap", "parse", "parse_inline"]

Token = dict[str, Any]
GAP = "_gap"
OPEN_FENCE = "_open"  # a fenced code block never closed (a stream cut inside it)

# From the colon of "http://" or "https://": the scheme before it is already text.
_BARE_URL = r"(?:(?<=[Hh][Tt][Tt][Pp])|(?<=[Hh][Tt][Tt][Pp][Ss]))://[^\s<>`]+"
_INTRAWORD_STAR = r"(?<=[^\W_])\*+(?=[^\W_])"
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:")
# A GFM table: a header row with a pipe, then a delimiter row (``|:---|---:|``).
_DELIMITER_ROW = r"[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*"
_TABLE = r"^(?P<table_head>[^\n]*\|[^\n]*)\n(?P<table_align>" + _DELIMITER_ROW + r")(?:\n|$)"
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _blank_lines_before(src: str, pos: int) -> int:
    if pos >= 2 and src[pos - 2] not in "\n \t\v\f":
        return 0  # the line before ends in text (most blocks)
    count = 0
    while pos > 0:
        start = src.rfind("\n", 0, pos - 1) + 1
        if src[start : pos - 1].strip(" \t\v\f"):
            break
        count, pos = count + 1, start
    return count


class _State(BlockState):
    """A block state that notes how many blank lines come before each block."""

    def add_paragraph(self, text: str) -> None:
        count = len(self.tokens)
        super().add_paragraph(text)
        if len(self.tokens) > count:
            self.tokens[-1][GAP] = _blank_lines_before(self.src, self.cursor)

    def append_token(self, token: Token) -> None:
        # Right where a block is appended before its end is read (indented code); other
        # blocks get theirs from where their match started (``_Blocks.parse_method``).
        token.setdefault("_gap_at_append", _blank_lines_before(self.src, self.cursor))
        super().append_token(token)


class _Blocks(BlockParser):
    state_cls = _State

    def __init__(self) -> None:
        super().__init__()
        self.rules.remove("raw_html")  # HTML is text
        self.specification["setex_heading"] = r"^ {0,3}(?P<setext_1>=|-)(?:(?<==)=*|-+)[ \t]*$"

    def parse_method(self, m: re.Match[str], state: BlockState) -> int | None:
        count = len(state.tokens)
        end = super().parse_method(m, state)
        if end:
            gap = _blank_lines_before(state.src, m.start())
            for token in state.tokens[count:]:
                token.setdefault(GAP, gap)
        return end

    def parse_fenced_code(self, m: re.Match[str], state: BlockState) -> int | None:
        end = super().parse_fenced_code(m, state)
        if end is not None:
            block = state.src[m.end() : end].rstrip("\n")
            last = block[block.rfind("\n") + 1 :] if "\n" in block else None
            marker = m.group("fenced_2")
            closing = f" {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*"
            if last is None or not re.fullmatch(closing, last):
                state.tokens[-1][OPEN_FENCE] = True
        return end


def gap(token: Token) -> int:
    """Blank lines between a block and the one before it (or the start of its container)."""
    count: int = token[GAP] if GAP in token else token.get("_gap_at_append", 0)
    return count


def _parse_table(block: BlockParser, m: re.Match[str], state: BlockState) -> int | None:
    """A GFM table; its rows are the lines after it that hold a pipe. A row still being
    written stays in the table; a row with a cell too few gets an empty one, and one with
    a cell too many widens the table (nothing the model wrote is dropped)."""
    head, align = _cells(m.group("table_head")), _cells(m.group("table_align"))
    if len(head) != len(align):
        return None
    rows, end = [head], m.end()
    while end < state.cursor_max:
        line_end = state.find_line_end_at(end)
        line = state.src[end:line_end]
        if not line.strip() or "|" not in line or fence_open(line.rstrip("\n")) is not None:
            break
        rows.append(_cells(line))
        end = line_end
    columns = max(len(row) for row in rows)
    aligns = [_align(cell) for cell in align] + ["left"] * (columns - len(align))
    head_row, *body = [_row(row + [""] * (columns - len(row)), aligns) for row in rows]
    table = [{**head_row, "type": "table_head"}, {"type": "table_body", "children": body}]
    state.append_token({"type": "table", "children": table})
    return end


def _cells(row: str) -> list[str]:
    text = row.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    return [cell.strip() for cell in _CELL_SPLIT.split(text)]


def _align(cell: str) -> str:
    if cell.startswith(":") and cell.endswith(":"):
        return "center"
    return "right" if cell.endswith(":") else "left"


def _row(cells: list[str], aligns: list[str]) -> Token:
    children = [
        {"type": "table_cell", "text": cell, "attrs": {"align": align}}
        for cell, align in zip(cells, aligns, strict=True)
    ]
    return {"type": "table_row", "children": children}


def _parse_bare_url(inline: InlineParser, m: re.Match[str], state: InlineState) -> int | None:
    src, colon = state.src, m.start()
    scheme = src[colon - 5 : colon] if src[colon - 1] in "sS" else src[colon - 4 : colon]
    start = colon - len(scheme)
    before = state.tokens[-1] if state.tokens else None
    if (start > 0 and src[start - 1].isalnum()) or before is None:
        return None
    if before["type"] != "text" or not before["raw"].endswith(scheme):
        return None
    url = scheme + m.group(0)
    if state.brackets and "]" in url:  # inside a link's text: the text ends there
        url = url[: url.index("]")]
    url = _trim_url(url)
    if url.endswith("://"):
        return None
    before["raw"] = before["raw"][: -len(scheme)]
    if not before["raw"]:
        state.tokens.pop()
    end = start + len(url)
    if state.in_link or state.depth >= inline.max_nested_level:
        inline.process_text(url, state)
        return end
    link = {"type": "text", "raw": url}
    state.append_token(
        {"type": "link", "children": [link], "attrs": {"url": unescape(url)}, "_autolink": url}
    )
    return end


def _trim_url(url: str) -> str:
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


def _parse_intraword_star(inline: InlineParser, m: re.Match[str], state: InlineState) -> int:
    inline.process_text(m.group(0), state, parse_emphasis=False)
    return m.end()


def _markdown() -> mistune.Markdown:
    blocks = _Blocks()
    inline = InlineParser()
    inline.rules.remove("inline_html")
    markdown = mistune.Markdown(
        renderer=None,
        block=blocks,
        inline=inline,
        plugins=[
            mistune.plugins.import_plugin("strikethrough"),
            mistune.plugins.import_plugin("task_lists"),
        ],
    )
    # Last: a table's header row is a line that no other block claims (GFM).
    blocks.register("table", _TABLE, _parse_table)
    for rules in (blocks.list_rules, blocks.block_quote_rules):
        blocks.insert_rule(rules, "table")
    inline.register("bare_url", _BARE_URL, _parse_bare_url, before="link", start_chars=":")
    inline.register(
        "intraword_star", _INTRAWORD_STAR, _parse_intraword_star, before="emphasis", start_chars="*"
    )
    return markdown


_MARKDOWN = _markdown()


def parse(markdown: str) -> tuple[list[Token], int]:
    """The blocks of `markdown`, and how many line breaks end it after its last block (blank
    lines and link reference definitions, which show nothing)."""
    text = markdown.replace("\r\n", "\n").replace("\r", "\n")
    tokens, state = _MARKDOWN.parse(text)
    assert isinstance(tokens, list)
    blocks = [token for token in tokens if token["type"] != "blank_line"]
    if _ends_open(blocks):
        return blocks, 0  # the rest of the text is the open block's code
    has_refs = bool(state.env.get("ref_links"))
    trailing = 0
    for line in reversed(text.split("\n")):
        if not line.strip():
            trailing += 1
        elif not (has_refs and _REFERENCE.match(line)):
            break
    if not blocks:
        trailing -= 1
    return blocks, max(trailing, 0)


def _ends_open(blocks: list[Token]) -> bool:
    """Whether the text ends inside a fenced code block (in a list or quote too)."""
    while blocks:
        last = blocks[-1]
        if last.get(OPEN_FENCE):
            return True
        blocks = last.get("children", []) if last["type"] in _CONTAINERS else []
    return False


_CONTAINERS = ("list", "list_item", "task_list_item", "block_quote")


def parse_inline(text: str) -> list[Token]:
    """The inline Markdown of one line (a link's label, a source's title)."""
    return _MARKDOWN.inline(text, {"ref_links": {}})
