"""How one reply appears in Teams: streamed in personal chats, one message elsewhere.

Teams' streaming protocol (one-on-one chats only): ``typing`` activities carrying a
``streaminfo`` entity (``streamType`` "informative" or "streaming", an increasing
``streamSequence``, and after the first one the ``streamId`` Teams returned) whose text is
the whole answer so far, then a ``message`` with ``streamType`` "final". Teams accepts
about one update a second, ends a stream after two minutes, and answers 403
ContentStreamNotAllowed once the user pressed Stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from botbuilder.schema import Activity

from adapters.reply.send_loop import SendLoop
from adapters.reply.text_split import cut_for_limit, split_message, utf16_len
from adapters.teams.entities import StreamInfo, ai_message, searched_line
from adapters.teams.errors import DeliveryFailed
from adapters.teams.outbox import Outbox, ReplyOptions, tune_connector
from adapters.teams.render import to_teams_markdown
from bot.conversation import Citation
from bot.errors import ReplyCancelled, UserFacingError

__all__ = ["Outbox", "ReplyOptions", "TeamsReplySink", "tune_connector"]

log = logging.getLogger(__name__)

INFORMATIVE_LIMIT = 1000  # characters Teams allows in an informative update


class TeamsReplySink:
    """Writes one reply into a Teams conversation (a ReplySink of the core)."""

    def __init__(self, *, outbox: Outbox, streaming: bool, options: ReplyOptions) -> None:
        self._outbox = outbox
        self._streaming = streaming
        self._options = options
        self._buffer = ""  # text written and not yet part of a message
        self._segment = ""  # raw Markdown of the streamed message being written
        self._stream_id: str | None = None
        self._sequence = 0
        self._stream_started = 0.0
        self._last_sent = 0.0
        self._shown = ""  # text of the last streaming update
        self._status_id: str | None = None  # a status message the answer will replace
        self._cancelled = False  # the user pressed Stop
        self._ai = False  # a model answer: labelled "AI generated", with Teams' feedback
        self._citations: list[Citation] = []
        self.answer_id: str | None = None  # the model answer's id (``cite``), for feedback
        self.answer_messages: list[str] = []  # ids of the messages that show that answer
        self._loop = SendLoop(
            flush=self._step,
            pending=lambda: bool(self._buffer),
            finish=self._finish_segment,
            interval=lambda: options.stream_interval,
        )
        self._typing_stop = asyncio.Event()
        self._typing: asyncio.Task[None] | None = None

    # -- the ReplySink protocol ------------------------------------------------

    async def begin(self) -> None:
        """Show the typing indicator (after a short delay) until the answer appears."""
        self._typing = asyncio.get_running_loop().create_task(self._type())

    async def status(self, text: str) -> None:
        """A passing status (queue position): a stream's informative update in personal
        chats, else a short message the answer replaces."""
        if self._cancelled or self._buffer or self._segment or self._loop.started:
            return  # the answer is already on its way
        if self._streaming:
            activity = Activity(
                type="typing",
                text=text[:INFORMATIVE_LIMIT],
                entities=[
                    StreamInfo(
                        stream_type="informative",
                        stream_id=self._stream_id,
                        stream_sequence=self._next_sequence(),
                    )
                ],
            )
            await self._stream_send(activity)
            if self._streaming or self._cancelled:
                return
        shown = to_teams_markdown(f"_{text}_")
        try:
            if self._status_id is None:
                self._status_id = await self._outbox.send(_message(shown))
            else:
                await self._outbox.update(_message(shown, activity_id=self._status_id))
        except DeliveryFailed as exc:
            log.warning("could not show a status in Teams: %s", exc)

    async def write(self, text: str) -> None:
        """Queue text; streamed at Teams' pace in personal chats, else sent on close.

        Raises ReplyCancelled once the user pressed Stop, so the model stops generating."""
        if self._cancelled:
            raise ReplyCancelled("the user stopped the answer")
        if not text:
            return
        self._buffer += text
        if self._streaming:
            self._loop.poke()

    async def fail(self, error: UserFacingError) -> None:
        """No answer: the reason is shown like any other text."""
        await self.write(error.text)

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        """Label the answer as AI generated, turn on Teams' feedback buttons under it (a
        vote arrives as a ``message/submitAction`` invoke naming the message: see
        ``answer_messages``) and attach its citations, which Teams shows as pop-ups on the
        ``[n]`` markers; sources searched but not cited become a closing line."""
        self._ai = True
        self.answer_id = answer_id
        if self._cancelled or not citations:
            return
        if searched:
            await self.write("\n\n" + searched_line(citations))
        else:
            self._citations = list(citations)

    async def close(self) -> None:
        """Send what is left: end the stream, or post the answer (split if long)."""
        await self._loop.close()
        if not self._cancelled and self._buffer.strip():
            await self._stop_typing()
            await self._post_answer(self._buffer)
            self._buffer = ""
        await self._stop_typing()

    async def stop(self) -> None:
        """Stop the typing indicator (also for a message the core did not answer)."""
        await self._stop_typing()

    # -- streaming -------------------------------------------------------------

    async def _step(self) -> bool:
        if self._buffer and self._streaming and not self._cancelled:
            await self._flush()
        # Stopped by the user, or close() posts the rest as a message.
        return self._streaming and not self._cancelled

    async def _flush(self) -> None:
        text, self._buffer = self._buffer, ""
        limit = self._options.message_limit
        while text and self._streaming and not self._cancelled:
            if (
                self._segment
                and self._stream_id is not None
                and time.monotonic() - self._stream_started > self._options.stream_budget
            ):
                await self._finish_segment()  # before Teams' two-minute limit: a new stream
                continue
            room = limit - utf16_len(self._segment)
            if utf16_len(text) <= room:
                self._segment, text = self._segment + text, ""
                break
            head, text = cut_for_limit(self._segment, text, room, measure=utf16_len)
            self._segment += head
            await self._finish_segment()
        if not self._streaming:
            # Streaming turned out not to be available here: the answer goes out on close.
            self._buffer, self._segment = self._segment + text + self._buffer, ""
            return
        closing_a_stream = self._loop.closing and self._stream_id is not None
        if self._segment and not self._cancelled and not closing_a_stream:
            # (Closing a stream: the rest goes in the final message, in the next free slot,
            # rather than in one more update the final would wait a whole interval behind.)
            await self._send_update()

    async def _send_update(self) -> None:
        shown = to_teams_markdown(self._segment, complete=False)
        if not shown.strip() or shown == self._shown:
            return
        activity = Activity(
            type="typing",
            text=shown,
            entities=[
                StreamInfo(
                    stream_type="streaming",
                    stream_id=self._stream_id,
                    stream_sequence=self._next_sequence(),
                )
            ],
        )
        if await self._stream_send(activity):
            self._shown = shown
        elif not self._streaming:
            # Streaming is not available after all: the answer goes out as messages.
            self._buffer, self._segment = self._segment + self._buffer, ""
            self._stream_id, self._sequence, self._shown = None, 0, ""

    async def _finish_segment(self) -> None:
        """End the current streamed message with its whole text."""
        segment, stream_id = self._segment, self._stream_id
        self._segment, self._stream_id, self._sequence, self._shown = "", None, 0, ""
        if self._cancelled or not segment.strip():
            return
        text = to_teams_markdown(segment)
        if stream_id is None:
            await self._post(text)  # nothing was streamed yet: a plain message
            return
        final = self._message(text)
        labels = final.entities or []
        final.entities = [StreamInfo(stream_type="final", stream_id=stream_id), *labels]
        await self._pace()
        try:
            await self._outbox.send(final)
            self._shows_answer(stream_id)
        except DeliveryFailed as exc:
            await self._stream_failed(exc, stream_id, text)
            if not self._streaming:
                await self._post(text)  # the stream is broken: the whole text as a message
        finally:
            self._last_sent = time.monotonic()

    async def _stream_send(self, activity: Activity) -> bool:
        """Send one streaming activity; False when the stream could not take it."""
        if self._stream_id is None:
            await self._stop_typing()  # the stream shows its own typing indicator
        await self._pace()
        stream_id = self._stream_id
        try:
            sent = await self._outbox.send(activity)
        except DeliveryFailed as exc:
            await self._stream_failed(exc, stream_id, to_teams_markdown(self._segment))
            return False
        finally:
            self._last_sent = time.monotonic()
        if self._stream_id is None:
            self._stream_id, self._stream_started = sent, time.monotonic()
        return True

    async def _stream_failed(self, exc: DeliveryFailed, stream_id: str | None, text: str) -> None:
        """Decide what a refused streaming activity means for the rest of the answer."""
        if exc.stream_timed_out and stream_id is not None:
            # Teams closed the stream at its time limit: complete that message with its text
            # so far; what follows goes into a new message.
            log.info("Teams ended a stream at its time limit; continuing in a new message")
            self._segment, self._stream_id, self._sequence, self._shown = "", None, 0, ""
            if text.strip():
                try:
                    await self._outbox.update(self._message(text, activity_id=stream_id))
                    self._shows_answer(stream_id)
                except DeliveryFailed as update_exc:
                    log.warning("could not complete a timed-out stream: %s", update_exc)
        elif exc.stream_closed:
            log.info("the user stopped the answer in Teams")
            self._cancelled = True
        elif exc.streaming_unsupported:
            log.info("streaming is not available in this Teams conversation; sending messages")
            self._streaming = False
        else:
            log.warning("streaming to Teams failed (%s); sending the answer as messages", exc)
            self._streaming = False

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def _pace(self) -> None:
        wait = self._last_sent + self._options.stream_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    # -- messages ----------------------------------------------------------------

    async def _post_answer(self, text: str) -> None:
        chunks = split_message(
            to_teams_markdown(text), self._options.message_limit, measure=utf16_len
        )
        for index, chunk in enumerate(chunks):
            if index == 0 and self._status_id is not None:
                status_id, self._status_id = self._status_id, None
                try:
                    # The status message becomes the answer: one message, no flicker.
                    await self._outbox.update(self._message(chunk, activity_id=status_id))
                    self._shows_answer(status_id)
                    continue
                except DeliveryFailed as exc:
                    log.warning("could not replace the status message: %s", exc)
            await self._post(chunk)

    async def _post(self, text: str) -> None:
        try:
            self._shows_answer(await self._outbox.send(self._message(text)))
        except DeliveryFailed as exc:
            log.warning("could not post an answer in Teams: %s", exc)

    def _shows_answer(self, activity_id: str | None) -> None:
        """Note a message of a model answer (its feedback names it)."""
        if self._ai and activity_id:
            self.answer_messages.append(activity_id)

    def _message(self, text: str, *, activity_id: str | None = None) -> Activity:
        """A message of the answer: with the AI label, Teams' feedback buttons and the
        citations it shows, if any."""
        message = _message(text, activity_id=activity_id)
        message.entities = [ai_message(text, self._citations)] if self._ai else None
        if self._ai:
            message.channel_data = {"feedbackLoopEnabled": True}
        return message

    # -- typing indicator ----------------------------------------------------------

    async def _type(self) -> None:
        options = self._options
        try:
            async with asyncio.timeout(options.typing_delay):
                await self._typing_stop.wait()
                return
        except TimeoutError:
            pass
        while not self._typing_stop.is_set():
            try:
                await self._outbox.send(Activity(type="typing"), retry=False)
            except DeliveryFailed as exc:
                log.debug("typing indicator not sent: %s", exc)
                if exc.status in (401, 403, 404):
                    return
            try:
                async with asyncio.timeout(options.typing_interval):
                    await self._typing_stop.wait()
            except TimeoutError:
                pass

    async def _stop_typing(self) -> None:
        self._typing_stop.set()
        if self._typing is not None:
            await self._typing


def _message(text: str, *, activity_id: str | None = None) -> Activity:
    return Activity(type="message", text=text, text_format="markdown", id=activity_id)
