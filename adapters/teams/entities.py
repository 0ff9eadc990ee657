"""Entities Teams reads on our activities: streaming state, the AI label and citations.

botbuilder's ``Entity`` serialises only ``type``; these subclasses declare the fields Teams
expects on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from botbuilder.schema import Entity

from bot.conversation import Citation

MAX_CITATIONS = 20  # Teams shows at most 20 citations on a message
TITLE_LIMIT = 80  # characters of a citation's title Teams accepts
ABSTRACT_LIMIT = 160  # characters of its abstract
_MARKER = re.compile(r"\[(\d{1,3})\]")
_WEB = re.compile(r"^https?://", re.IGNORECASE)


class StreamInfo(Entity):  # type: ignore[misc]
    """The ``streaminfo`` entity of Teams' streaming protocol."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "stream_id": {"key": "streamId", "type": "str"},
        "stream_type": {"key": "streamType", "type": "str"},
        "stream_sequence": {"key": "streamSequence", "type": "int"},
    }

    def __init__(
        self,
        *,
        stream_type: str,
        stream_id: str | None = None,
        stream_sequence: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(type="streaminfo", **kwargs)
        self.stream_type = stream_type
        self.stream_id = stream_id
        self.stream_sequence = stream_sequence


class AIMessage(Entity):  # type: ignore[misc]
    """The schema.org Message entity: the "AI generated" label and the citations Teams shows
    as pop-ups on the message's ``[n]`` markers."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "schema_type": {"key": "@type", "type": "str"},
        "context": {"key": "@context", "type": "str"},
        "id": {"key": "@id", "type": "str"},
        "additional_type": {"key": "additionalType", "type": "[str]"},
        "citation": {"key": "citation", "type": "[object]"},
    }

    def __init__(self, *, citation: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(type="https://schema.org/Message", **kwargs)
        self.schema_type = "Message"
        self.context = "https://schema.org"
        self.id = ""  # must be empty (Bot Framework schema)
        self.additional_type = ["AIGeneratedContent"]
        self.citation = citation or None


def ai_message(text: str, citations: Sequence[Citation]) -> AIMessage:
    """The AI label for a message with ``text``, citing the sources whose ``[n]`` marker it
    shows (at most 20)."""
    shown = {int(number) for number in _MARKER.findall(text)}
    claims = [_claim(c) for c in citations if c.number in shown][:MAX_CITATIONS]
    return AIMessage(citation=claims)


def _claim(citation: Citation) -> dict[str, Any]:
    appearance: dict[str, Any] = {
        "@type": "DigitalDocument",
        "name": _clip(citation.title or citation.url or f"Source {citation.number}", TITLE_LIMIT),
        "abstract": _clip(citation.excerpt, ABSTRACT_LIMIT),
    }
    if _WEB.match(citation.url):
        appearance["url"] = citation.url  # Teams opens web links only
    return {"@type": "Claim", "position": citation.number, "appearance": appearance}


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def searched_line(citations: Sequence[Citation]) -> str:
    """A closing line naming the sources an answer drew on without citing any (Teams shows
    citation pop-ups only for markers in the text, so these are plain links)."""
    links = []
    for citation in citations[:MAX_CITATIONS]:
        title = _clip(citation.title or citation.url, TITLE_LIMIT)
        title = title.replace("[", "\\[").replace("]", "\\]")
        links.append(f"[{title}]({citation.url})" if _WEB.match(citation.url) else title)
    return "*Searched:* " + " · ".join(links)
