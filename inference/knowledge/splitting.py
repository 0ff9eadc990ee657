"""Splitting documents into chunks that fit the embedding model's context.

Markdown (and HTML, converted to Markdown) by headings, code by its language, the rest by
paragraphs. Sizes are counted in UTF-8 bytes: a token covers at least one byte, so a chunk
of at most ``MAX_CHUNK_BYTES`` bytes never exceeds that many tokens (``nomic-embed-text``
gets 2,048 by default in Ollama, and a longer input fails).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from langchain_text_splitters import (
    Language,
    RecursiveCharacterTextSplitter,
)

from inference.knowledge.loaders import Document

MAX_CHUNK_BYTES = 1500
MAX_CONTEXT_BYTES = 300  # title and heading path put before a chunk when it is embedded
SPLIT_VERSION = "2"  # bump when splitting changes, so documents are re-split


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document."""

    heading: str  # "Deploy > Rollback", or ""
    text: str

    def embed_text(self, title: str) -> str:
        """What is embedded and keyword-indexed: title and heading path (without the title
        again where the path starts with it), then the text."""
        path = self.heading.split(" > ") if self.heading else []
        if path and path[0] == title:
            path = path[1:]
        context = " > ".join(p for p in (title, *path) if p)
        context = context.encode()[:MAX_CONTEXT_BYTES].decode("utf-8", "ignore")
        return f"{context}\n\n{self.text}" if context else self.text


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@cache
def _splitter(language: str | None) -> RecursiveCharacterTextSplitter:
    if language is not None:
        return RecursiveCharacterTextSplitter.from_language(
            Language(language), chunk_size=MAX_CHUNK_BYTES, chunk_overlap=0, length_function=_bytes
        )
    return RecursiveCharacterTextSplitter(
        chunk_size=MAX_CHUNK_BYTES, chunk_overlap=0, length_function=_bytes
    )


_HEADING = re.compile(r"^(#{1,4})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_sections(text: str) -> list[tuple[str, str]]:
    """(heading path, text) of each section, split at headings outside code fences.

    (LangChain's MarkdownHeaderTextSplitter strips every line, which breaks indented code.)
    """
    sections: list[tuple[str, str]] = []
    path: list[str] = []
    lines: list[str] = []
    fenced = False

    def close() -> None:
        body = "\n".join(lines).strip("\n")
        if body.strip():
            sections.append((" > ".join(path), body))

    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match:
            close()
            lines = []
            level = len(match.group(1))
            path = [*path[: level - 1], match.group(2)]
        lines.append(line)
    close()
    return sections


# A reStructuredText section adornment: one punctuation character repeated.
_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")


def rst_sections(text: str) -> list[tuple[str, str]]:
    """(heading path, text) of each section of reStructuredText, split at section titles
    (a line underlined, or over- and underlined, with one punctuation character repeated;
    the levels in the order their styles first appear, as docutils reads them)."""
    sections: list[tuple[str, str]] = []
    styles: list[tuple[str, bool]] = []
    path: list[str] = []
    lines: list[str] = []

    def close() -> None:
        body = "\n".join(lines).strip("\n")
        if body.strip():
            sections.append((" > ".join(path), body))

    source = text.splitlines()
    i = 0
    while i < len(source):
        found = _rst_title(source, i)
        if found is None:
            lines.append(source[i])
            i += 1
            continue
        title, style, used = found
        close()
        if style not in styles:
            styles.append(style)
        level = styles.index(style)
        path = [*path[:level], title]
        lines = [title]
        i += used
    close()
    return sections


def _rst_title(lines: list[str], i: int) -> tuple[str, tuple[str, bool], int] | None:
    """The section title starting at line ``i``: (title, (character, overlined), lines)."""
    if i and lines[i - 1].strip():
        return None  # a title follows a blank line (or starts the text)
    first = _ADORNMENT.match(lines[i])
    if first is not None and i + 2 < len(lines):
        title, under = lines[i + 1].strip(), _ADORNMENT.match(lines[i + 2])
        if title and under is not None and under.group(1) == first.group(1):
            return title, (first.group(1), True), 3
        return None
    line = lines[i]
    if first is None and line.strip() and not line[0].isspace() and i + 1 < len(lines):
        under = _ADORNMENT.match(lines[i + 1])
        if under is not None and len(lines[i + 1].rstrip()) >= len(line.rstrip()):
            return line.strip(), (under.group(1), False), 2
    return None


_LANGUAGES = {language.value for language in Language}


def _hard_cap(text: str) -> list[str]:
    """Pieces of at most ``MAX_CHUNK_BYTES`` bytes (for a text with no separator at all)."""
    if _bytes(text) <= MAX_CHUNK_BYTES:
        return [text]
    data = text.encode("utf-8", "surrogatepass")
    pieces = []
    for start in range(0, len(data), MAX_CHUNK_BYTES):
        pieces.append(data[start : start + MAX_CHUNK_BYTES].decode("utf-8", "ignore"))
    return pieces


def split(document: Document) -> list[Chunk]:
    """The chunks of a document, in order."""
    chunks: list[Chunk] = []
    if document.kind in ("markdown", "rst"):
        sections = (markdown_sections if document.kind == "markdown" else rst_sections)(
            document.text
        )
        for heading, section in sections:
            for piece in _splitter(document.kind).split_text(section):
                chunks.extend(Chunk(heading, p) for p in _hard_cap(piece))
    else:
        language = (
            document.kind.removeprefix("code:") if document.kind.startswith("code:") else None
        )
        if language not in _LANGUAGES:
            language = None
        for piece in _splitter(language).split_text(document.text):
            chunks.extend(Chunk("", p) for p in _hard_cap(piece))
    return _merge_small([c for c in chunks if c.text.strip()])


def _merge_small(chunks: list[Chunk]) -> list[Chunk]:
    """Join a chunk to the next one of the same section while both fit in one."""
    merged: list[Chunk] = []
    for chunk in chunks:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.heading == chunk.heading
            and _bytes(last.text) + _bytes(chunk.text) + 2 <= MAX_CHUNK_BYTES
        ):
            merged[-1] = Chunk(last.heading, f"{last.text}\n\n{chunk.text}")
        else:
            merged.append(chunk)
    return merged
