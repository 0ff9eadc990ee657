"""The team API's reply sink: one answer, streamed as server-sent events of
`chat.completion.chunk` objects, or collected for one `chat.completion` body.

Nothing is sent before the answer's first text: a question the core refuses, or that no
model server can answer, becomes an HTTP error (``error``) instead of a 200 stream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from adapters.api.wire import citations_json, sources_text
from bot.conversation import Citation
from bot.errors import ReplyCancelled, UserFacingError

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


class ApiSink:
    """Writes one answer of `POST /v1/chat/completions`."""

    def __init__(
        self,
        *,
        request: web.Request | None,
        stream: bool,
        id: str,
        model: str,
        created: int,
    ) -> None:
        self._request = request
        self._stream = stream
        self._id = id
        self._model = model
        self._created = created
        self._parts: list[str] = []
        self.citations: list[Citation] = []
        self.error: UserFacingError | None = None
        self.response: web.StreamResponse | None = None
        self.gone = False  # the client went away mid-answer

    @property
    def text(self) -> str:
        """The answer as collected (without ``stream``)."""
        return "".join(self._parts)

    async def status(self, text: str) -> None:
        """A place in the model server's line: clients have nowhere to show it."""

    async def write(self, text: str) -> None:
        if self.gone:  # the client left: the core stops generating
            raise ReplyCancelled
        if not text:
            return
        if not self._stream:
            self._parts.append(text)
            return
        await self.event({"content": text})

    async def fail(self, error: UserFacingError) -> None:
        if self.response is None and not self._parts:
            self.error = error  # the route answers with the HTTP error
            return
        await self.write("\n\n" + error.text)  # after part of an answer: say it in the text

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        if not citations:
            return
        self.citations = list(citations)
        text = sources_text(citations, searched=searched)
        if not self._stream:
            self._parts.append(text)
            return
        await self.event({"content": text}, citations=citations_json(citations))

    async def close(self) -> None:
        """The route ends the response (it knows the usage)."""

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        """One server-sent event holding a `chat.completion.chunk` (``delta`` None: one
        without choices, as the usage chunk is)."""
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        body = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    async def event(self, delta: dict[str, Any], **extra: Any) -> None:
        """Send one chunk, starting the stream first; a client gone stops the answer."""
        if self.gone:
            raise ReplyCancelled
        try:
            if self.response is None:
                assert self._request is not None, "a stream needs the request it answers"
                response = web.StreamResponse(status=200, headers=SSE_HEADERS)
                await response.prepare(self._request)
                self.response = response
                await response.write(self.chunk({"role": "assistant", "content": ""}))
            await self.response.write(self.chunk(delta, **extra))
        except ConnectionError:  # aiohttp's ClientConnectionResetError is one
            self.gone = True
            raise ReplyCancelled from None

    async def send(self, data: bytes) -> None:
        """Raw bytes on the started stream (the end of it); a client gone is no error."""
        if self.response is None or self.gone:
            return
        try:
            await self.response.write(data)
        except ConnectionError:
            self.gone = True
