"""A fake Slack Web API: a real local HTTP server that speaks the wire protocol the real
``slack_sdk`` clients use, and remembers what a person in the workspace would see.

Point ``AsyncWebClient(token=..., base_url=fake.api_url)`` at it. Requests are
``POST``/``GET`` ``<api_url><method>`` with form-encoded, query-string or JSON arguments
and the token in ``Authorization: Bearer``; answers are JSON with ``"ok"``, errors use
Slack's error codes, and rate limits are HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.slack_tiers import SlackTiers

__all__ = ["Call", "FakeSlack", "Message"]

STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})
MARKDOWN_TEXT_LIMIT = 12_000  # markdown_text, per call
TEXT_LIMIT = 40_000  # text of chat.postMessage / chat.update
RESPONSE_URL_USES = 5  # a response_url may be used five times
_JSON_FIELDS = ("blocks", "attachments", "chunks", "metadata")
_TS = re.compile(r"^\d+\.\d+$")

_Handler = Callable[[dict[str, Any]], dict[str, Any]]


TS_SUFFIX = 37  # the last two digits of every ts this fake hands out


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the fake, in arrival order."""

    method: str  # e.g. "chat.postMessage"
    args: dict[str, Any]  # query, form and JSON arguments merged, token removed
    at: float  # time.monotonic() when the request arrived
    status: int = 200  # HTTP status answered
    error: str | None = None  # Slack error code answered, None when ok
    response: dict[str, Any] | None = None  # the JSON body answered


@dataclass(frozen=True, slots=True)
class Message:
    """A message as a person sees it now (after updates and streaming)."""

    ts: str
    text: (
        str  # visible text: text, markdown_text, a stream's concatenated markdown, or blocks' text
    )
    thread_ts: str | None  # the parent's ts for a thread reply, None for a top-level message
    user: str
    is_stream: bool  # created by chat.startStream
    bot_id: str | None = None
    streaming: bool = False  # a stream not stopped yet
    markdown: bool = False  # text is standard Markdown (markdown_text / streams), not mrkdwn
    blocks: tuple[dict[str, Any], ...] = ()
    edited: bool = False


@dataclass(slots=True)
class _Stored:
    channel: str
    ts: str
    text: str
    thread_ts: str | None
    user: str
    bot_id: str | None
    is_stream: bool = False
    streaming: bool = False
    markdown: bool = False
    blocks: list[dict[str, Any]] = field(default_factory=list)
    reply_broadcast: bool = False
    edited: bool = False
    response_url: str | None = None  # the response_url that posted it, if any
    bot_name: str | None = None  # another app's message: its bot_profile name

    def visible(self) -> Message:
        return Message(
            ts=self.ts,
            text=self.text,
            thread_ts=self.thread_ts,
            user=self.user,
            is_stream=self.is_stream,
            bot_id=self.bot_id,
            streaming=self.streaming,
            markdown=self.markdown,
            blocks=tuple(self.blocks),
            edited=self.edited,
        )


@dataclass(frozen=True, slots=True)
class _Failure:
    error: str
    status: int
    retry_after: int | None


class _SlackError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _missing(*names: str) -> _SlackError:
    # What Slack answers for a missing required argument on its newer methods.
    return _SlackError(
        "invalid_arguments",
        response_metadata={"messages": [f"[ERROR] missing required field: {n}" for n in names]},
    )


class FakeSlack:
    """A fake Slack workspace's Web API on 127.0.0.1 (see the module docstring).

    Inspect ``calls`` / ``calls_to`` for what was sent, ``messages`` / ``thread_text`` for
    what people see, ``responses`` for what was posted to response URLs. ``fail_next``
    makes the next calls of a method fail like Slack does; ``refuse_streaming`` makes the
    chat.*Stream methods unknown, as on a workspace without them.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_name: str = "Fake Workspace",
        bot_name: str = "assistant",
        app_id: str = "AFAKEAPP",
        app_token: str = "xapp-1-AFAKEAPP-1-test",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        # Socket Mode: open WebSocket connections, envelopes sent and the acks received.
        self.sockets: list[web.WebSocketResponse] = []
        self.socket_connected = asyncio.Event()
        self.acks: dict[str, dict[str, Any]] = {}
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_name = team_name
        self.bot_name = bot_name
        self.app_id = app_id
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []
        self.refuse_streaming = False
        # Slack's published rate limits per method (tests/fakes/slack_tiers.py), when set.
        self.tiers: SlackTiers | None = None
        self.on_call: Callable[[Call], None] | None = None  # observer of every API call
        # Bot tokens must name the stream's recipient (Slack answers missing_recipient_*).
        self.stream_requires_recipient = True
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._channels: dict[str, dict[str, _Stored]] = defaultdict(dict)
        self._statuses: dict[tuple[str, str], str] = {}
        self._loading: dict[tuple[str, str], list[str]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._response_urls: dict[str, dict[str, Any]] = {}
        self._response_log: list[tuple[str, dict[str, Any]]] = []
        self._clock = 1_700_000_000_000_100  # microseconds; ts values count up from here
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._methods: dict[str, _Handler] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "assistant.threads.setStatus": self._assistant_set_status,
            "assistant.threads.setSuggestedPrompts": self._assistant_set_suggested_prompts,
            "chat.postEphemeral": self._chat_post_ephemeral,
        }
        # What each person alone was shown (chat.postEphemeral), and the suggested prompts
        # set per DM channel ({"title": ..., "prompts": [...]}).
        self.ephemerals: list[dict[str, Any]] = []
        self.suggested_prompts: dict[str, dict[str, Any]] = {}
        self.add_user(bot_user_id, name=bot_name, is_bot=True)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Serve on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{name}", self._handle_response_url)
        app.router.add_get("/link", self._handle_socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop serving."""
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """The Web API base, like ``https://slack.com/api/``: ends with ``/api/``."""
        return f"{self.url}/api/"

    # ------------------------------------------------------------------ test controls

    def calls_to(self, method: str) -> list[Call]:
        """The calls of one method, in arrival order."""
        return [call for call in self.calls if call.method == method]

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` fail without effect.

        With status 429 the answer is what Slack's rate limiter sends: HTTP 429, a
        ``Retry-After`` header (seconds) and ``{"ok": false, "error": "ratelimited"}``.
        Otherwise the answer is ``{"ok": false, "error": error}`` with that HTTP status
        (Slack's API errors come with 200).
        """
        for _ in range(times):
            self._failures[method].append(_Failure(error, status, retry_after))

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U0PERSON",
        thread_ts: str | None = None,
        ts: str | None = None,
        bot_id: str | None = None,
        bot_name: str | None = None,
    ) -> str:
        """Put a person's message in a channel (or thread) as if they had written it; with
        ``bot_id`` (and ``bot_name``), another app's message.

        Returns its ts. Threads need no parent: replies may be posted to any thread_ts.
        """
        if ts is None:
            ts = self._next_ts()
        else:
            self._clock = max(self._clock, _ts_micros(ts))
        self._channels[channel][ts] = _Stored(
            channel, ts, text, thread_ts, user, bot_id, bot_name=bot_name
        )
        return ts

    def add_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        real_name: str | None = None,
        is_bot: bool = False,
        tz: str = "Europe/London",
    ) -> None:
        """Make users.info know a user (ids that look like users are known anyway)."""
        name = name or user_id.lower()
        real_name = real_name or name
        self._users[user_id] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real_name,
            "deleted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "tz": tz,
            "profile": {"display_name": name, "real_name": real_name, "team": self.team_id},
        }

    def messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        """What a person sees now, in order: the channel's top-level messages, or, with
        `thread_ts`, the replies in that thread (without its parent)."""
        stored = sorted(self._channels.get(channel, {}).values(), key=lambda m: _ts_key(m.ts))
        if thread_ts is None:
            shown = [m for m in stored if m.thread_ts in (None, m.ts) or m.reply_broadcast]
        else:
            shown = [m for m in stored if m.thread_ts == thread_ts and m.ts != thread_ts]
        return [m.visible() for m in shown]

    def thread_text(self, channel: str, thread_ts: str) -> str:
        """The visible replies of a thread, their texts joined with newlines."""
        return "\n".join(m.text for m in self.messages(channel, thread_ts))

    def status(self, channel: str, thread_ts: str) -> str:
        """The assistant status shown in a thread now ("" when none)."""
        return self._statuses.get((channel, thread_ts), "")

    def loading_messages(self, channel: str, thread_ts: str) -> list[str]:
        """The loading messages rotating in a thread's status now (none when cleared)."""
        if not self.status(channel, thread_ts):
            return []
        return self._loading.get((channel, thread_ts), [])

    def response_url(
        self, name: str = "r1", *, channel: str | None = None, user: str | None = None
    ) -> str:
        """A response_url as Slack gives slash commands; POSTs to it land in `responses`.

        With `channel`, an ``in_channel`` response also shows in that channel's messages.
        Like Slack's, it answers 404 ``used_url`` after five uses.
        """
        self._response_urls.setdefault(name, {"channel": channel, "user": user, "uses": 0})
        return f"{self.url}/response/{name}"

    def responses_to(self, name: str = "r1") -> list[dict[str, Any]]:
        """The bodies POSTed to one response_url."""
        return [body for posted_to, body in self._response_log if posted_to == name]

    async def wait_for(
        self, predicate: Callable[[FakeSlack], object], timeout: float = 5.0
    ) -> None:
        """Poll until `predicate(self)` is true; on timeout fail with a dump of the calls."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"FakeSlack: condition not met within {timeout}s\n{self.dump_calls()}"
                )
            await asyncio.sleep(0.01)

    def dump_calls(self) -> str:
        """Every call so far, one per line, for failure messages."""
        if not self.calls:
            return "  (no calls)"
        lines = []
        for call in self.calls:
            outcome = "ok" if call.error is None else f"{call.status} {call.error}"
            args = json.dumps(call.args, default=str, ensure_ascii=False)
            if len(args) > 300:
                args = args[:300] + "…"
            lines.append(f"  {call.method} -> {outcome}: {args}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ HTTP

    async def _handle_api(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        method = request.match_info["method"]
        args, token, bad_body = await _read_args(request)
        failure = self._failures[method].popleft() if self._failures.get(method) else None
        status, headers = 200, {}
        if (method not in self._methods and method != "apps.connections.open") or (
            self.refuse_streaming and method in STREAM_METHODS
        ):
            body: dict[str, Any] = {"ok": False, "error": "unknown_method", "req_method": method}
        elif failure is not None:
            status = failure.status
            body = {"ok": False, "error": failure.error}
            if failure.status == 429 and failure.retry_after is not None:
                headers["Retry-After"] = str(failure.retry_after)
        elif bad_body is not None:
            body = {"ok": False, "error": bad_body}
        elif not token:
            body = {"ok": False, "error": "not_authed"}
        elif method == "apps.connections.open":
            if token != self.app_token:
                body = {"ok": False, "error": "invalid_auth"}
            else:
                body = {"ok": True, "url": f"ws://127.0.0.1:{self._port}/link?ticket=t1"}
        elif token != self.bot_token:
            body = {"ok": False, "error": "invalid_auth"}
        elif self.tiers is not None and (wait := self.tiers.check(method, args)) is not None:
            status, headers["Retry-After"] = 429, str(wait)
            body = {"ok": False, "error": "ratelimited"}
        else:
            try:
                body = {"ok": True, **self._methods[method](args)}
            except _SlackError as exc:
                body = {"ok": False, "error": exc.error, **exc.extra}
        error = None if body["ok"] else str(body["error"])
        call = Call(method, args, arrived, status, error, body)
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        return web.json_response(body, status=status, headers=headers)

    # ------------------------------------------------------------------ Socket Mode

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self.sockets),
                "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
        )
        self.socket_connected.set()
        try:
            async for message in ws:
                if message.type != web.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                envelope_id = str(data.get("envelope_id", ""))
                self.acks[envelope_id] = data
                waiter = self._ack_waiters.pop(envelope_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(data)
        finally:
            self.sockets.remove(ws)
        return ws

    async def send_envelope(
        self, kind: str, payload: dict[str, Any], *, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Deliver one Socket Mode envelope ("events_api", "slash_commands", "interactive")
        to the connected app and return its acknowledgement."""
        await asyncio.wait_for(self.socket_connected.wait(), timeout)
        envelope_id = f"env-{len(self.acks) + len(self._ack_waiters) + 1}-{time.monotonic_ns()}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = waiter
        await self.sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "payload": payload,
                "type": kind,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        return await asyncio.wait_for(waiter, timeout)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        spec = self._response_urls.setdefault(name, {"channel": None, "user": None, "uses": 0})
        raw = await request.read()
        try:
            if request.content_type == "application/json":
                payload = json.loads(raw or b"{}")
            else:
                form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
                payload = json.loads(form.get("payload", "{}"))
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="invalid_payload")
        spec["uses"] += 1
        if spec["uses"] > RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")
        self.responses.append(payload)
        self._response_log.append((name, payload))
        self._show_response(name, spec, payload)
        return web.Response(text="ok", content_type="text/plain")

    def _show_response(self, name: str, spec: dict[str, Any], payload: dict[str, Any]) -> None:
        channel = spec["channel"]
        if channel is None:
            return
        url = f"{self.url}/response/{name}"
        posted = [m for m in self._channels[channel].values() if m.response_url == url]
        if payload.get("delete_original") and posted:
            del self._channels[channel][posted[-1].ts]
            return
        if payload.get("response_type") != "in_channel" and not payload.get("replace_original"):
            return  # ephemeral: only the user who ran the command sees it
        text = str(payload.get("text", ""))
        blocks = payload.get("blocks") or []
        if payload.get("replace_original") and posted:
            posted[-1].text = text or _blocks_text(blocks)
            posted[-1].edited = True
            return
        ts = self._next_ts()
        self._channels[channel][ts] = _Stored(
            channel,
            ts,
            text or _blocks_text(blocks),
            None,
            self.bot_user_id,
            self.bot_id,
            blocks=list(blocks),
            response_url=url,
        )

    # ------------------------------------------------------------------ methods

    def _api_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"args": {k: v for k, v in args.items() if k != "token"}}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_name.lower().replace(' ', '-')}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _text_arg(args, "channel")
        if not channel:
            raise _SlackError("channel_not_found")
        text, markdown, blocks = self._content(args)
        thread_ts = _text_arg(args, "thread_ts") or None
        if thread_ts is not None and not _TS.match(thread_ts):
            raise _SlackError("invalid_thread_ts")
        ts = self._next_ts()
        stored = _Stored(
            channel,
            ts,
            text,
            thread_ts,
            self.bot_user_id,
            self.bot_id,
            markdown=markdown,
            blocks=blocks,
            reply_broadcast=_truthy(args.get("reply_broadcast")),
        )
        self._channels[channel][ts] = stored
        self._replied(channel, thread_ts)
        return {"channel": channel, "ts": ts, "message": self._api_message(stored)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        stored = self._own_message(args, "cant_update_message")
        text, markdown, blocks = self._content(args)
        stored.text, stored.markdown, stored.blocks, stored.edited = text, markdown, blocks, True
        return {
            "channel": stored.channel,
            "ts": stored.ts,
            "text": stored.text,
            "message": self._api_message(stored),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        stored = self._own_message(args, "cant_delete_message")
        del self._channels[stored.channel][stored.ts]
        return {"channel": stored.channel, "ts": stored.ts}

    def _chat_start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _text_arg(args, "channel")
        thread_ts = _text_arg(args, "thread_ts")
        missing = [
            name for name, value in (("channel", channel), ("thread_ts", thread_ts)) if not value
        ]
        if missing:
            raise _missing(*missing)
        if not _TS.match(thread_ts):
            raise _SlackError("invalid_thread_ts")
        if self.stream_requires_recipient:
            if not _text_arg(args, "recipient_team_id"):
                raise _SlackError("missing_recipient_team_id")
            if not _text_arg(args, "recipient_user_id"):
                raise _SlackError("missing_recipient_user_id")
        text = _stream_text(args, required=False)
        ts = self._next_ts()
        self._channels[channel][ts] = _Stored(
            channel,
            ts,
            text,
            thread_ts,
            self.bot_user_id,
            self.bot_id,
            is_stream=True,
            streaming=True,
            markdown=True,
        )
        self._replied(channel, thread_ts)
        return {"channel": channel, "ts": ts}

    def _chat_append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        stored = self._stream(args)
        stored.text += _stream_text(args, required=True)
        return {"channel": stored.channel, "ts": stored.ts}

    def _chat_stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        stored = self._stream(args)
        stored.text += _stream_text(args, required=False)
        blocks = _check_blocks(_json_list(args.get("blocks"), "invalid_blocks"))
        stored.blocks = blocks
        stored.streaming = False
        return {"channel": stored.channel, "ts": stored.ts, "message": self._api_message(stored)}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = _text_arg(args, "channel"), _text_arg(args, "ts")
        if not channel:
            raise _SlackError("channel_not_found")
        if not ts:
            raise _missing("ts")
        stored = self._channels.get(channel, {})
        if ts in stored and stored[ts].thread_ts not in (None, ts):
            ts = str(stored[ts].thread_ts)  # the ts of a reply gives its whole thread
        thread = [m for m in stored.values() if m.ts == ts or m.thread_ts == ts]
        if not thread:
            raise _SlackError("thread_not_found")
        thread.sort(key=lambda m: _ts_key(m.ts))
        # Paged as Slack pages it: `limit` messages (at most 1000) from the opaque `cursor`,
        # `has_more` and `response_metadata.next_cursor` ("" on the last page).
        try:
            limit = min(int(args.get("limit") or 1000), 1000)
        except (TypeError, ValueError):
            raise _SlackError("invalid_limit") from None
        cursor = str(args.get("cursor") or "")
        start = 0
        if cursor:
            try:
                start = int(base64.b64decode(cursor).decode().removeprefix("next_ts:"))
            except ValueError:
                raise _SlackError("invalid_cursor") from None
        page = thread[start : start + max(limit, 1)]
        more = start + len(page) < len(thread)
        following = base64.b64encode(f"next_ts:{start + len(page)}".encode()).decode()
        return {
            "messages": [self._api_message(m) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": following if more else ""},
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, user = _text_arg(args, "channel"), _text_arg(args, "user")
        if not channel:
            raise _SlackError("channel_not_found")
        if not user:
            raise _SlackError("user_not_in_channel")
        text, _, blocks = self._content(args)
        self.ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "thread_ts": args.get("thread_ts"),
                "text": text or _blocks_text(blocks),
            }
        )
        return {"message_ts": self._next_ts()}

    def _assistant_set_suggested_prompts(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _text_arg(args, "channel_id")
        if not channel:
            raise _missing("channel_id")
        prompts = args.get("prompts")
        if isinstance(prompts, str):
            try:
                prompts = json.loads(prompts)
            except ValueError:
                raise _SlackError("invalid_arguments") from None
        if (
            not isinstance(prompts, list)
            or not 1 <= len(prompts) <= SUGGESTED_PROMPTS_LIMIT
            or not all(
                isinstance(p, dict)
                and isinstance(p.get("title"), str)
                and p["title"]
                and isinstance(p.get("message"), str)
                and p["message"]
                for p in prompts
            )
        ):
            raise _SlackError("invalid_arguments")
        self.suggested_prompts[channel] = {"title": args.get("title"), "prompts": prompts}
        return {}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = _text_arg(args, "user")
        if user not in self._users:
            if not re.fullmatch(r"[UW][A-Z0-9]{2,}", user):
                raise _SlackError("user_not_found")
            self.add_user(user)
        return {"user": dict(self._users[user])}

    def _assistant_set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        names = ("channel_id", "thread_ts", "status")
        missing = [name for name in names if args.get(name) is None]
        if missing:
            raise _missing(*missing)
        key = (str(args["channel_id"]), str(args["thread_ts"]))
        loading = args.get("loading_messages")
        if loading is not None and (
            not isinstance(loading, list)
            or len(loading) > LOADING_MESSAGES_LIMIT
            or not all(isinstance(m, str) and m for m in loading)
        ):
            raise _SlackError("invalid_arguments")
        self._statuses[key] = str(args["status"])
        self._loading[key] = list(loading or []) if args["status"] else []
        return {}

    # ------------------------------------------------------------------ helpers

    def _next_ts(self) -> str:
        # Every ts handed out ends in 37 (microseconds), which no test gives its own events:
        # the bot's reply never takes the ts of a question the fake has not seen (a reply
        # whose ts is its own thread's root is not in that thread).
        self._clock = (self._clock // 100 + 1) * 100 + TS_SUFFIX
        return f"{self._clock // 1_000_000}.{self._clock % 1_000_000:06d}"

    def _replied(self, channel: str, thread_ts: str | None) -> None:
        # Slack clears an assistant thread's status when the app replies in it.
        if thread_ts is not None:
            self._statuses.pop((channel, thread_ts), None)

    def _content(self, args: dict[str, Any]) -> tuple[str, bool, list[dict[str, Any]]]:
        """(visible text, is markdown, blocks) of a chat.postMessage / chat.update."""
        text = args.get("text")
        markdown = args.get("markdown_text")
        blocks = _check_blocks(_json_list(args.get("blocks"), "invalid_blocks"))
        attachments = _json_list(args.get("attachments"), "invalid_attachments")
        if markdown is not None and (text is not None or args.get("blocks") is not None):
            raise _SlackError("markdown_text_conflict")
        if markdown is not None:
            if not str(markdown).strip():
                raise _SlackError("no_text")
            if len(str(markdown)) > MARKDOWN_TEXT_LIMIT:
                raise _SlackError("msg_too_long")
            return str(markdown), True, []
        if text is not None and len(str(text)) > TEXT_LIMIT:
            raise _SlackError("msg_too_long")
        if blocks:
            return _blocks_text(blocks), False, blocks
        if text is None or not str(text).strip():
            if attachments:
                texts = (str(a.get("text") or a.get("fallback") or "") for a in attachments)
                return "\n".join(texts), False, []
            raise _SlackError("no_text")
        return str(text), False, []

    def _find(self, args: dict[str, Any]) -> _Stored:
        channel, ts = _text_arg(args, "channel"), _text_arg(args, "ts")
        if not channel:
            raise _SlackError("channel_not_found")
        if not ts:
            raise _missing("ts")
        stored = self._channels.get(channel, {}).get(ts)
        if stored is None:
            raise _SlackError("message_not_found")
        return stored

    def _own_message(self, args: dict[str, Any], refusal: str) -> _Stored:
        stored = self._find(args)
        if stored.user != self.bot_user_id:
            raise _SlackError(refusal)
        return stored

    def _stream(self, args: dict[str, Any]) -> _Stored:
        stored = self._find(args)
        if not stored.is_stream or not stored.streaming:
            raise _SlackError("message_not_in_streaming_state")
        return stored

    def _api_message(self, stored: _Stored) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "ts": stored.ts,
            "text": stored.text,
            "user": stored.user,
            "team": self.team_id,
        }
        if stored.bot_id is not None and stored.bot_name is not None:
            # Another app's message, with the profile Slack shows it under.
            message |= {
                "bot_id": stored.bot_id,
                "app_id": f"A{stored.bot_id[1:]}",
                "bot_profile": {"id": stored.bot_id, "name": stored.bot_name, "deleted": False},
            }
        elif stored.bot_id is not None:
            message |= {"bot_id": stored.bot_id, "app_id": self.app_id}
        if stored.blocks:
            message["blocks"] = stored.blocks
        if stored.edited:
            message["edited"] = {"user": stored.user, "ts": stored.ts}
        if stored.thread_ts is not None:
            message["thread_ts"] = stored.thread_ts
            message["parent_user_id"] = self._parent_user(stored)
        replies = [
            m
            for m in self._channels[stored.channel].values()
            if m.thread_ts == stored.ts and m.ts != stored.ts
        ]
        if replies:
            message |= {
                "thread_ts": stored.ts,
                "reply_count": len(replies),
                "reply_users": sorted({m.user for m in replies}),
                "latest_reply": max((m.ts for m in replies), key=_ts_key),
            }
            message.pop("parent_user_id", None)
        return message

    def _parent_user(self, stored: _Stored) -> str | None:
        parent = self._channels[stored.channel].get(stored.thread_ts or "")
        return parent.user if parent is not None else None


# ---------------------------------------------------------------------- wire helpers


async def _read_args(request: web.Request) -> tuple[dict[str, Any], str | None, str | None]:
    """(arguments, token, body error) of a Web API request, merged as Slack merges them."""
    args: dict[str, Any] = dict(request.query)
    token: str | None = None
    bad_body: str | None = None
    raw = await request.read()
    if raw:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                body, bad_body = {}, "invalid_json"
            if not isinstance(body, dict):
                body, bad_body = {}, "invalid_json"
            # Slack ignores a token inside a JSON body: it must come as a header.
            body.pop("token", None)
            args.update(body)
        elif ctype == "application/x-www-form-urlencoded":
            try:
                args.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                bad_body = "invalid_form_data"
        else:
            bad_body = "invalid_post_type"
    for name in _JSON_FIELDS:
        value = args.get(name)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                args[name] = json.loads(value)
            except ValueError:
                pass
    form_token = args.pop("token", None)
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = header[len("Bearer ") :].strip()
    elif isinstance(form_token, str):
        token = form_token
    return args, token, bad_body


def _text_arg(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    return "" if value is None else str(value)


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _json_list(value: Any, error: str) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        raise _SlackError(f"{error}_format" if error == "invalid_blocks" else error)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _SlackError(error)
    return value


LOADING_MESSAGES_LIMIT = 10
SUGGESTED_PROMPTS_LIMIT = 4
CONTEXT_ACTIONS_ELEMENTS = 5
BLOCKS_PER_MESSAGE = 50
CONTEXT_ELEMENTS = 10
BLOCK_TEXT_LIMIT = 3000  # characters of a section's or a context element's text


def _check_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slack's limits on the blocks the bot uses: it answers invalid_blocks past them."""
    if len(blocks) > BLOCKS_PER_MESSAGE:
        raise _SlackError("invalid_blocks")
    for block in blocks:
        kind = block.get("type")
        if kind == "section":
            texts = [block.get("text") or {}]
        elif kind == "context":
            texts = block.get("elements") or []
            if not texts or len(texts) > CONTEXT_ELEMENTS:
                raise _SlackError("invalid_blocks")
        elif kind == "context_actions":
            _check_context_actions(block)
            continue
        else:
            continue
        for text in texts:
            if not isinstance(text, dict) or text.get("type") not in ("mrkdwn", "plain_text"):
                raise _SlackError("invalid_blocks")
            body = text.get("text")
            if not isinstance(body, str) or not body or len(body) > BLOCK_TEXT_LIMIT:
                raise _SlackError("invalid_blocks")
    return blocks


def _check_context_actions(block: dict[str, Any]) -> None:
    """A context actions block: 1 to 5 feedback buttons or icon buttons elements."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= CONTEXT_ACTIONS_ELEMENTS:
        raise _SlackError("invalid_blocks")
    if len(str(block.get("block_id", ""))) > 255:
        raise _SlackError("invalid_blocks")
    for element in elements:
        if not isinstance(element, dict):
            raise _SlackError("invalid_blocks")
        if element.get("type") == "icon_button":
            continue
        if element.get("type") != "feedback_buttons":
            raise _SlackError("invalid_blocks")
        for name in ("positive_button", "negative_button"):
            button = element.get(name)
            text = button.get("text") if isinstance(button, dict) else None
            if (
                not isinstance(text, dict)
                or text.get("type") != "plain_text"
                or not isinstance(text.get("text"), str)
                or not 1 <= len(text["text"]) <= 75
                or not isinstance(button.get("value"), str)  # type: ignore[union-attr]
                or not 1 <= len(button["value"]) <= 2000  # type: ignore[index]
            ):
                raise _SlackError("invalid_blocks")


def _stream_text(args: dict[str, Any], *, required: bool) -> str:
    """The markdown a chat.*Stream call adds: markdown_text, then markdown_text chunks."""
    markdown = args.get("markdown_text")
    chunks = args.get("chunks")
    if chunks is not None and not isinstance(chunks, list):
        raise _SlackError("invalid_chunks")
    text = "" if markdown is None else str(markdown)
    for chunk in chunks or []:
        if not isinstance(chunk, dict) or chunk.get("type") not in (
            "markdown_text",
            "task_update",
            "plan_update",
            "blocks",
        ):
            raise _SlackError("invalid_chunks")
        if chunk["type"] == "markdown_text":
            if not isinstance(chunk.get("text"), str):
                raise _SlackError("invalid_chunks")
            text += chunk["text"]
    if required and markdown is None and not chunks:
        raise _missing("markdown_text")
    if len(text) > MARKDOWN_TEXT_LIMIT:
        raise _SlackError("msg_too_long")
    return text


def _blocks_text(blocks: list[dict[str, Any]]) -> str:
    """The words a person reads in Block Kit blocks."""
    lines: list[str] = []

    def texts(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["text"]] if isinstance(node.get("text"), str) else []
            for key, value in node.items():
                if key != "text" or not isinstance(value, str):
                    found += texts(value)
            return found
        if isinstance(node, list):
            return [t for item in node for t in texts(item)]
        return []

    for block in blocks:
        if block.get("type") == "context_actions":
            continue  # buttons (feedback), not text a person reads
        found = texts(block)
        if block.get("type") == "rich_text":
            lines.append("".join(found))
        else:
            lines.extend(found)
    return "\n".join(lines)


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    try:
        return int(seconds), int(micros or 0)
    except ValueError:
        return 0, 0


def _ts_micros(ts: str) -> int:
    seconds, micros = _ts_key(ts)
    return seconds * 1_000_000 + micros
