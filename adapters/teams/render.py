"""Teams rendering of model answers: the Markdown Teams shows, and long answers split.

Pure functions, no I/O. Teams renders a subset of Markdown in text messages (bold,
italic, strikethrough, lists, code, quotes, links) but not headings or rules, so those
become bold lines and a plain divider. Tables are left as they are: their pipes read well
enough, and rewriting them would change text already streamed.

Rewrites are line-local and a line is only rewritten once it is complete, so the
rendering of a prefix of an answer is a prefix of the rendering of the whole answer:
Teams refuses a streaming update that does not start with the previous one.
"""

from __future__ import annotations

import re

__all__ = ["cut_for_limit", "split_message", "to_teams_markdown", "utf16_len"]

_RULE = "———"
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_HR = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
# A line that is still being written and might yet become a heading or a rule.
_UNSETTLED = re.compile(r"^ {0,3}(?:#|[-*_][-*_ \t]*$)")
_MIN_LIMIT = 64


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Teams measures message size in."""
    return len(text.encode("utf-16-le")) // 2


def _rewrite(line: str) -> str:
    heading = _ATX.match(line)
    if heading is not None:
        title = heading.group(1).strip()
        return f"**{title}**" if title else ""
    if _HR.match(line):
        return _RULE
    return line


def to_teams_markdown(text: str, *, complete: bool = True) -> str:
    """Markdown that Teams renders. With ``complete=False`` (an answer still streaming),
    a last line that could still turn into a heading or rule is held back."""
    lines = text.split("\n")
    out: list[str] = []
    fence: str | None = None
    last = len(lines) - 1
    for index, line in enumerate(lines):
        partial = index == last and not complete
        opener = _FENCE.match(line)
        if fence is not None:
            out.append(line)
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                if not opener.group(2).strip():
                    fence = None
            continue
        if opener is not None:
            fence = opener.group(1)
            out.append(line)
            continue
        if partial:
            # Held back: only the line break before it is shown yet.
            out.append("" if _UNSETTLED.match(line) else line)
            continue
        out.append(_rewrite(line))
    return "\n".join(out)


def open_fence(text: str) -> str | None:
    """The opening line of the code fence left open at the end of ``text``, if any."""
    fence: str | None = None
    opening = ""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if match is None:
            continue
        marker = match.group(1)
        if fence is None:
            fence, opening = marker, line.strip()
        elif marker[0] == fence[0] and len(marker) >= len(fence) and not match.group(2).strip():
            fence = None
    return opening if fence is not None else None


def _fitting(text: str, room: int) -> int:
    """How many characters of ``text`` fit in ``room`` UTF-16 code units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > room:
            return index
    return len(text)


def cut_for_limit(current: str, text: str, room: int) -> tuple[str, str]:
    """Split ``text`` so that ``current + head`` stays within a message of ``room`` more
    UTF-16 units. Prefers a paragraph break, then a line break, then a space; a code block
    cut in two is closed at the end of ``head`` and reopened at the start of ``tail``."""
    room = max(1, room - 4)  # room for a closing fence
    window = text[: max(1, _fitting(text, room))]
    cut = window.rfind("\n\n")
    if cut > 0:
        cut += 2
    else:
        cut = window.rfind("\n") + 1 or window.rfind(" ") + 1 or len(window)
    head, tail = text[:cut], text[cut:]
    opening = open_fence(current + head)
    if opening is not None:
        marker = _FENCE.match(opening)
        close = marker.group(1) if marker else "```"
        head = head.rstrip("\n") + "\n" + close
        # Reopen with the language tag, unless a very long info string would eat the room.
        tail = (opening if len(opening) <= 40 else close) + "\n" + tail
    return head, tail


def split_message(text: str, limit: int) -> list[str]:
    """``text`` as messages of at most ``limit`` UTF-16 units each (empty ones dropped)."""
    limit = max(_MIN_LIMIT, limit)
    chunks: list[str] = []
    while utf16_len(text) > limit:
        head, text = cut_for_limit("", text, limit)
        chunks.append(head)
    chunks.append(text)
    return [chunk.strip("\n") for chunk in chunks if chunk.strip()]
