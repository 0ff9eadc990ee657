"""Our own keyword tokenizer -> Qdrant sparse vectors (the store applies IDF).

Identifiers are kept whole and split into their parts, so ``ERR_DB_042``,
``connection_pool``, ``ConnectionPool`` and ``os.path.join`` match exactly as written and
by their words. No model download; the same function serves documents and queries.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter

# Words, identifiers with _ . - : / inside, numbers.
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[._:\-/][A-Za-z0-9]+)*", re.ASCII)
_WORDS = re.compile(r"[A-Za-z0-9]+", re.ASCII)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+", re.ASCII)
_UNICODE_WORD = re.compile(r"\w+")

STOPWORDS = frozenset(
    """a about after all also an and any are as at be been but by can could did do does
    doesn for from had has have how i if in into is it its just may me more most my no not
    of on or our out over should so such than that the their them then there these they
    this those to too up us was we were what when where which who why will with would you
    your""".split()
)
MAX_TOKEN_CHARS = 64


def _term_id(term: str) -> int:
    return zlib.crc32(term.encode()) & 0x7FFFFFFF


def terms(text: str) -> list[str]:
    """The keyword terms of ``text``, lower-cased, identifiers whole and in parts."""
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if len(token) > MAX_TOKEN_CHARS:
            continue
        lower = token.lower()
        parts = _WORDS.findall(token)
        words: list[str] = []
        for part in parts:
            camel = _CAMEL.findall(part)
            words.extend(w.lower() for w in camel)
            if len(camel) > 1:
                words.append(part.lower())
        compound = len(parts) > 1 or len(words) > 1
        if compound:
            out.append(lower)  # the identifier as written
        for word in words:
            if word not in STOPWORDS and (len(word) > 1 or word.isdigit()):
                out.append(word)
    # Non-ASCII words (other scripts) as whole words.
    for match in _UNICODE_WORD.finditer(text):
        word = match.group()
        if not word.isascii() and len(word) <= MAX_TOKEN_CHARS:
            out.append(word.lower())
    return out


def sparse_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of ``text``: a saturated term frequency per term id."""
    counts = Counter(_term_id(t) for t in terms(text))
    indices = sorted(counts)
    return indices, [1.0 + math.log(counts[i]) for i in indices]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a query: every term once (IDF weighs them in the store)."""
    indices = sorted({_term_id(t) for t in terms(text)})
    return indices, [1.0] * len(indices)
