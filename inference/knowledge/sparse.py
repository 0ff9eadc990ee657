"""Our own keyword tokenizer -> Qdrant sparse vectors (the store applies IDF).

Identifiers are kept whole and split into their parts, so ``ERR_DB_042``,
``connection_pool``, ``ConnectionPool`` and ``os.path.join`` match exactly as written and
by their words. No model download; the same function serves documents and queries.

Tokens that mean nothing on their own are not terms, since a rare one would lift an
unrelated document over the keyword floor: single digits, one- or two-character
fragments of a split identifier (``v2``, ``db`` and ``42`` count only when written alone
or whole), and the pieces of an opaque id, a hash or a UUID (``ref1c387b9e``,
``3f2a9c1e-7b4d-...``), which match only whole.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections import Counter

# Words, identifiers with _ . - : / inside, numbers.
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[._:\-/][A-Za-z0-9]+)*", re.ASCII)
_WORDS = re.compile(r"[A-Za-z0-9]+", re.ASCII)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+", re.ASCII)
_UNICODE_WORD = re.compile(r"\w+")
_HEX = re.compile(r"[0-9a-fA-F]+")

STOPWORDS = frozenset(
    """a about after all also an and any are as at be been but by can could did do does
    doesn for from had has have how i if in into is it its just may me more most my no not
    of on or our out over should so such than that the their them then there these they
    this those to too up us was we were what when where which who why will with would you
    your""".split()
)
MAX_TOKEN_CHARS = 64
TOKEN_CACHE = 1 << 16  # the terms of this many distinct tokens are kept


def _term_id(term: str) -> int:
    return zlib.crc32(term.encode()) & 0x7FFFFFFF


def _opaque(pieces: list[str]) -> bool:
    """Whether a word's letter and digit runs alternate like a hash's or an id's
    (``ref1c387b9e``, ``9fceb02d``, ``k8s``), rather than name a thing (``utf8``, ``sha256``)."""
    return len(pieces) > 2 and any(p.isdigit() for p in pieces)


def terms(text: str) -> list[str]:
    """The keyword terms of ``text``, lower-cased, identifiers whole and in parts."""
    out = [term for token in _TOKEN.findall(text) for term in _token_terms(token)]
    if not text.isascii():
        # Non-ASCII words (other scripts) as whole words.
        out.extend(
            word.lower()
            for word in _UNICODE_WORD.findall(text)
            if not word.isascii() and len(word) <= MAX_TOKEN_CHARS
        )
    return out


@functools.lru_cache(maxsize=TOKEN_CACHE)
def _token_terms(token: str) -> tuple[str, ...]:
    """The terms of one token (a word, an identifier, a number); the same token always
    gives the same terms, so they are kept for the tokens seen most."""
    if len(token) > MAX_TOKEN_CHARS:
        return ()
    parts = [(part, _CAMEL.findall(part)) for part in _WORDS.findall(token)]
    an_id = any(_opaque(pieces) for _, pieces in parts)
    words: list[str] = []
    split = False
    for part, pieces in parts:
        if _opaque(pieces) or (an_id and _HEX.fullmatch(part)):
            split = True  # an id (a hash, a UUID) or a piece of one: matched only whole
            continue
        if len(pieces) > 1:
            split = True
            if len(parts) > 1:
                words.append(part.lower())
        words.extend(p.lower() for p in pieces)
    out: list[str] = []
    if len(parts) > 1 or split:
        out.append(token.lower())  # the identifier as written
    for word in words:
        if word in STOPWORDS or (word.isdigit() and len(word) == 1):
            continue
        if len(word) <= 2 and (len(parts) > 1 or split):
            continue  # a fragment of an identifier
        out.append(word)
    return tuple(out)


def identifiers(text: str) -> list[str]:
    """The identifiers written in ``text``, lower-cased, as whole terms: names with ``_``,
    ``.``, ``:`` or ``/`` inside (``pool_pre_ping``, ``MetaData.reflect``), in camel case
    (``ProxyFix``, ``AsyncAttrs``) or of capitals and hyphens (``X-HTTP-Method-Override``);
    not plain words, hyphenated words (``one-time``) or opaque ids (a hash, a UUID)."""
    found: list[str] = []
    for token in _TOKEN.findall(text):
        if len(token) > MAX_TOKEN_CHARS or not _token_terms(token):
            continue
        named = (
            any(sep in token for sep in "_.:/")
            or _LOWER_UPPER.search(token) is not None
            or ("-" in token and not token.islower())
        )
        whole = token.lower()
        if named and _token_terms(token)[0] == whole and whole not in found:
            found.append(whole)
    return found


_LOWER_UPPER = re.compile(r"[a-z][A-Z]")


@functools.lru_cache(maxsize=TOKEN_CACHE)
def _token_ids(token: str) -> tuple[int, ...]:
    return tuple(_term_id(t) for t in _token_terms(token))


def sparse_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of ``text``: a saturated term frequency per term id."""
    if text.isascii():
        counts = Counter(i for token in _TOKEN.findall(text) for i in _token_ids(token))
    else:
        counts = Counter(_term_id(t) for t in terms(text))
    indices = sorted(counts)
    return indices, [1.0 + math.log(counts[i]) for i in indices]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a query: every term once (IDF weighs them in the store)."""
    indices = sorted({_term_id(t) for t in terms(text)})
    return indices, [1.0] * len(indices)
