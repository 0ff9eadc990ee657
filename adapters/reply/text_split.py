"""Splitting a long answer into messages a platform accepts: the one splitter of both sinks.

Pure functions, no I/O, platform-neutral: each platform passes its own limit and the way it
measures length (Slack counts characters, Teams UTF-16 code units). The measure must be
additive (the length of a text is the sum of the lengths of its pieces).

A cut is made, in order of preference, at a blank line outside code, at another line end
outside code, at a line end inside a code block, and only for a line longer than what is
left, inside the line at a space. A link (``[label](url)``, ``<url|label>``), an inline
code span or an HTML entity is never cut; a word only when a line has no space at all
(one enormous word). A code block cut in two is closed at the end of one message and
reopened, with its language tag, at the start of the next, so each message renders alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Measure",
    "cut_for_limit",
    "fence_closes",
    "fence_open",
    "open_fence",
    "split_message",
    "utf16_len",
]

Measure = Callable[[str], int]

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_CLOSE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*$")
# Spans a cut must not fall inside: Markdown links and images, Slack links and autolinks,
# inline code, HTML entities.
_UNBREAKABLE = re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)|<[^<>\n]+>|`[^`\n]+`|&#?[A-Za-z0-9]{1,31};")
_LONG_OPENING = 40  # a reopened fence keeps its language tag unless the tag is this long


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Teams measures message size in."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


@dataclass(frozen=True, slots=True)
class Fence:
    """A code block left open: the line that reopens it and the marker that closes it."""

    opening: str
    close: str


def fence_open(line: str) -> tuple[str, str, str] | None:
    """(indent, fence marker, info string) when ``line`` opens a CommonMark code fence."""
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    marker, info = match.group("fence"), match.group("info")
    if marker[0] == "`" and "`" in info:
        return None  # ```x``` on one line is an inline code span, not a fence
    return match.group("indent"), marker, info


def fence_closes(line: str, marker: str) -> bool:
    """Whether ``line`` closes a fence opened with ``marker`` (same character, as long)."""
    match = _FENCE_CLOSE.match(line)
    if match is None:
        return False
    fence = match.group("fence")
    return fence[0] == marker[0] and len(fence) >= len(marker)


def _opens(line: str) -> Fence | None:
    opened = fence_open(line)
    if opened is None:
        return None
    _, marker, info = opened
    words = info.split()
    opening = marker + (words[0] if words else "")
    return Fence(opening if len(opening) <= _LONG_OPENING else marker, marker)


def _closes(line: str, fence: Fence) -> bool:
    return fence_closes(line, fence.close)


def _step(fence: Fence | None, line: str) -> Fence | None:
    if fence is None:
        return _opens(line)
    return None if _closes(line, fence) else fence


def open_fence(text: str) -> Fence | None:
    """The code block left open at the end of ``text``, if any."""
    fence: Fence | None = None
    for line in text.split("\n"):
        fence = _step(fence, line)
    return fence


def cut_for_limit(current: str, text: str, room: int, *, measure: Measure = len) -> tuple[str, str]:
    """Split ``text``, which follows ``current`` in a message with ``room`` units left, into
    ``head`` (added to this message, which then ends) and ``tail`` (the next message's
    start). ``head`` is empty when nothing fits without cutting a word: the message then ends
    where it is and ``tail`` is all of ``text``."""
    fence = open_fence(current)
    cut, fence_at_cut = _best_cut(text, room, measure, fence, allow_empty=bool(current.strip()))
    if cut == 0:
        return "", text
    return _finish(text, cut, fence_at_cut, measure, room)


def split_message(text: str, limit: int, *, measure: Measure = len) -> list[str]:
    """``text`` as messages of at most ``limit`` units each; blank text gives none. A code
    block left unterminated is closed."""
    if limit < 1:
        raise ValueError("limit must be positive")
    text = text.replace("\r\n", "\n")
    chunks: list[str] = []
    while _closed_size(text, measure) > limit:
        cut, fence_at_cut = _best_cut(text, limit, measure, None, allow_empty=False)
        head, text = _finish(text, cut, fence_at_cut, measure, limit)
        chunks.append(head)
    chunks.append(text)
    result = []
    for chunk in chunks:
        chunk = chunk.strip("\n").rstrip()
        if not chunk.strip():
            continue
        left_open = open_fence(chunk)
        if left_open is not None and measure(chunk) + 1 + measure(left_open.close) <= limit:
            chunk += "\n" + left_open.close
        result.append(chunk)
    return result


def _closed_size(text: str, measure: Measure) -> int:
    """The size of ``text`` as a message of its own, an unterminated code block closed."""
    left_open = open_fence(text)
    return measure(text) + (1 + measure(left_open.close) if left_open is not None else 0)


def _reserve(fence: Fence | None, measure: Measure, room: int) -> tuple[Fence | None, int]:
    """The fence to close at a cut and the room closing and reopening it takes; a fence too
    long for so small a message is not closed (the text is split as plain text)."""
    if fence is None:
        return None, 0
    close = 1 + measure(fence.close)
    if measure(fence.opening) + 1 + close + 1 > room:
        return None, 0
    return fence, close


def _best_cut(
    text: str, room: int, measure: Measure, fence: Fence | None, *, allow_empty: bool
) -> tuple[int, Fence | None]:
    """Where to cut ``text`` (an index, 0 for "nowhere") and the code block open there."""
    lines = text.split("\n")
    best_rank = 99
    best: tuple[int, Fence | None] = (0, None)
    used = 0  # measure of the text up to the start of the current line
    start = 0  # index of the current line's start
    state = fence
    empty_block = False  # the open fence has no content yet
    for number, line in enumerate(lines):
        before = state
        state = _step(state, line)
        if before is None and state is not None:
            empty_block = True
        elif state is not None and line.strip():
            empty_block = False
        line_size = measure(line)
        end = start + len(line)
        last = number == len(lines) - 1
        kept, reserve = _reserve(state, measure, room)
        if used + line_size + reserve > room or last:
            # This line does not fit (or is the last): cut before it, or inside it.
            if best_rank < 99:
                return best
            cut = _cut_in_line(text, start, end, room - used, measure, before, allow_empty)
            return cut, _reserve(before, measure, room)[0]
        following = lines[number + 1]
        if kept is not None and (empty_block or _closes(following, kept)):
            rank = None  # an empty block, or a block left with only its closing fence
        elif kept is not None:
            rank = 3
        elif not line.strip() or not following.strip():
            rank = 1
        else:
            rank = 2
        if rank is not None and rank <= best_rank:
            best_rank, best = rank, (end + 1, kept)
        used += line_size + 1
        start = end + 1
    return best  # pragma: no cover - the last line always returns


def _cut_in_line(
    text: str,
    start: int,
    end: int,
    room: int,
    measure: Measure,
    fence: Fence | None,
    allow_empty: bool,
) -> int:
    """A cut inside the line ``text[start:end]``: after its last space that fits, else (for
    a line without one) as much as fits, never inside a link, code span or entity."""
    _kept, reserve = _reserve(fence, measure, room)
    room -= reserve
    fits = start
    used = 0
    while fits < end:
        size = measure(text[fits])
        if used + size > room:
            break
        used += size
        fits += 1
    protected = [m.span() for m in _UNBREAKABLE.finditer(text, start, end)]

    def inside(cut: int) -> bool:
        return any(a < cut < b for a, b in protected)

    for cut in range(fits, start, -1):
        if text[cut - 1] in " \t" and not inside(cut):
            return cut
    if allow_empty:
        return 0  # no word boundary fits: the message ends where it is
    cut = fits
    for a, b in protected:
        if a < cut < b and a > start:
            cut = a
    while cut - 1 > start and cut < len(text) and _joins(text[cut]):
        cut -= 1  # keep combining marks and emoji sequences whole
    return max(cut, start + 1)


def _joins(char: str) -> bool:
    return bool(unicodedata.combining(char)) or char in "\u200d\ufe0f"


def _finish(
    text: str, cut: int, fence: Fence | None, measure: Measure, room: int
) -> tuple[str, str]:
    head, tail = text[:cut], text[cut:]
    if fence is None:
        return head.rstrip(), tail.lstrip("\n")
    return head.rstrip("\n") + "\n" + fence.close, fence.opening + "\n" + tail
