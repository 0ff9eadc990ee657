"""Citation markers in a streamed answer: ``[n]`` markers for passages the model was given
are kept (and noted), markers for numbers it was not given are removed, even when a marker
arrives split across two chunks. Code (fenced or inline) is never touched."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from bot import replies
from bot.conversation import Citation, ReplySink
from bot.retrieval import KnowledgeFound
from inference.knowledge import Passage

# `[1]`, `[2, 3]`, `[1,2]`: one marker group.
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
# An unfinished marker group at the end of a chunk: hold it until the next chunk.
_PARTIAL = re.compile(r"\[[\d,\s]{0,16}$")
# After these a bracket is indexing (`items[1]`, `f(x)[0]`), not a citation.
_INDEXING = re.compile(r"[\w)\"'`]$")
EXCERPT_CHARS = 160
TITLE_CHARS = 80


class MarkerFilter:
    """Rewrites citation markers in streamed text; ``cited`` lists the valid numbers used,
    in order of first use."""

    def __init__(self, valid: Collection[int]) -> None:
        self._valid = frozenset(valid)
        self._held = ""
        self._fence = False  # inside a ``` block
        self._inline = False  # inside `code`
        self._before = ""  # the last character shown, to tell `x[1]` from `text [1]`
        self.cited: list[int] = []

    def feed(self, text: str) -> str:
        """The part of ``text`` that can be shown now; an unfinished marker is held."""
        text = self._held + text
        self._held = ""
        if not self._fence and not self._inline:
            partial = _PARTIAL.search(text)
            if partial is not None:
                self._held = text[partial.start() :]
                text = text[: partial.start()]
        return self._rewrite(text)

    def flush(self) -> str:
        """What was held back (the answer ended)."""
        text, self._held = self._held, ""
        return self._rewrite(text)

    def _rewrite(self, text: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(text):
            if text.startswith("```", i):
                self._fence = not self._fence
                out.append("```")
                i += 3
                continue
            char = text[i]
            if char == "`" and not self._fence:
                self._inline = not self._inline
            elif char == "\n" and self._inline:
                self._inline = False  # inline code never spans lines
            if char == "[" and not self._fence and not self._inline:
                match = _MARKER.match(text, i)
                previous = out[-1][-1:] if out and out[-1] else self._before
                if match is not None and not _INDEXING.search(previous):
                    out.append(self._markers(match.group(1)))
                    i = match.end()
                    continue
            out.append(char)
            i += 1
        shown = "".join(out)
        if shown:
            self._before = shown[-1]
        return shown

    def _markers(self, group: str) -> str:
        kept: list[str] = []
        for part in group.split(","):
            number = int(part)
            if number in self._valid:
                kept.append(f"[{number}]")
                if number not in self.cited:
                    self.cited.append(number)
        return "".join(kept)


def to_citations(passages: Sequence[Passage], numbers: Sequence[int]) -> list[Citation]:
    """The sources to show for passages ``numbers`` (1-based, as given to the model)."""
    return [_citation(n, passages[n - 1]) for n in numbers if 1 <= n <= len(passages)]


def searched(passages: Sequence[Passage]) -> list[Citation]:
    """Every passage given to the model, for an answer that cited none."""
    return [_citation(n, p) for n, p in enumerate(passages, start=1)]


def cited_documents(
    passages: Sequence[Passage], numbers: Sequence[int]
) -> tuple[tuple[str, str], ...]:
    """The documents behind passages ``numbers`` (1-based), each once, as (title, url) with
    the url's fragment removed: what the usage ledger counts as cited."""
    documents: dict[tuple[str, str], None] = {}
    for number in numbers:
        if 1 <= number <= len(passages):
            passage = passages[number - 1]
            title = passage.title or passage.document
            documents[(title, passage.url.split("#", 1)[0])] = None
    return tuple(documents)


def display_title(passage: Passage) -> str:
    """The document's title and, when it adds something, the heading path inside it."""
    title = passage.title or passage.document
    heading = passage.heading
    for separator in (" > ", " › "):
        if heading.startswith(title + separator):
            heading = heading[len(title) + len(separator) :]
    if heading and heading != title:
        return f"{title} › {heading}"
    return title


def _citation(number: int, passage: Passage) -> Citation:
    return Citation(
        number=number,
        title=shorten(display_title(passage), TITLE_CHARS),
        url=passage.url,
        excerpt=shorten(" ".join(passage.text.split()), EXCERPT_CHARS),
    )


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip() + "…"


async def cite(
    sink: ReplySink,
    *,
    passages: Sequence[Passage],
    cited: Sequence[int],
    found: KnowledgeFound | None,
    premium_model: str | None,
    answer_id: str,
) -> None:
    """The cite step, after a complete answer's text: the knowledge note (nothing matched, or
    the index was down), the premium signature, then the sources: the ``cited`` ones, or
    every passage given as searched, or none (and with them the answer's id, for feedback)."""
    if found is KnowledgeFound.UNAVAILABLE:
        await sink.write("\n\n" + replies.KNOWLEDGE_UNAVAILABLE)
    elif found is KnowledgeFound.NO_MATCH:
        await sink.write("\n\n" + replies.NO_SOURCE_MATCHED)
    if premium_model is not None:
        await sink.write(replies.PREMIUM_SIGNATURE.format(model=premium_model))
    if cited:
        await sink.cite(to_citations(passages, cited), searched=False, answer_id=answer_id)
    elif passages:
        await sink.cite(searched(passages), searched=True, answer_id=answer_id)
    else:  # a model answer without sources
        await sink.cite([], searched=False, answer_id=answer_id)
