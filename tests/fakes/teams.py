"""Fake Microsoft services for the Teams adapter, on real local ports.

- ``FakeBotConnector``: the Bot Connector service an activity's ``serviceUrl`` points at
  (``POST /v3/conversations/{id}/activities[/{replyToId}]``, ``PUT .../activities/{id}``),
  with the rules of Teams' streaming protocol enforced, failures to inject, and a
  transcript of what a person would see.
- ``FakeBotFrameworkLogin``: both ends of Bot Framework authentication. The OpenID
  metadata and JWKS that channel tokens are checked against (it signs tokens like the Bot
  Connector does) and Entra ID's client-credentials token endpoint the bot gets its
  outbound tokens from.

Tests point botframework-connector's URL constants at the login fake, so the real
botbuilder validation and the real outbound path run unchanged.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
STREAM_TIMEOUT_MESSAGE = "Content stream finished due to exceeded streaming time."
STOPPED_MESSAGE = "Content stream was cancelled by user."


@lru_cache(maxsize=2)
def rsa_key(name: str = "bot-framework") -> rsa.RSAPrivateKey:
    """A test RSA key, generated once per name and test session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    await web.SockSite(runner, sock).start()
    return runner, port


@dataclass
class ConnectorCall:
    """One request the bot made to the Bot Connector."""

    method: str
    conversation_id: str
    activity_id: str | None  # reply-to id (POST) or updated activity id (PUT)
    body: dict[str, Any]
    authorization: str
    status: int = 200

    @property
    def type(self) -> str:
        return str(self.body.get("type", ""))

    @property
    def text(self) -> str:
        return str(self.body.get("text") or "")

    @property
    def ai_entity(self) -> dict[str, Any] | None:
        return _ai_entity(self.body)

    @property
    def stream_info(self) -> dict[str, Any] | None:
        for entity in self.body.get("entities") or []:
            if isinstance(entity, dict) and entity.get("type") == "streaminfo":
                return entity
        return None


MAX_CITATIONS = 20
CITATION_TITLE_LIMIT = 80
CITATION_ABSTRACT_LIMIT = 160


def _ai_entity(body: dict[str, Any]) -> dict[str, Any] | None:
    for entity in body.get("entities") or []:
        if isinstance(entity, dict) and entity.get("type") == "https://schema.org/Message":
            return entity
    return None


def _ai_entity_problem(body: dict[str, Any]) -> str | None:
    """What Teams would refuse in a message's AI entity (None when it is well formed)."""
    entity = _ai_entity(body)
    if entity is None:
        return None
    expected = {"@type": "Message", "@context": "https://schema.org", "@id": ""}
    if any(entity.get(k) != v for k, v in expected.items()):
        return "the Message entity needs @type Message, @context schema.org and an empty @id"
    if entity.get("additionalType") != ["AIGeneratedContent"]:
        return "additionalType must be ['AIGeneratedContent']"
    citations = entity.get("citation") or []
    if len(citations) > MAX_CITATIONS:
        return "too many citations"
    for claim in citations:
        appearance = claim.get("appearance") or {}
        if claim.get("@type") != "Claim" or not isinstance(claim.get("position"), int):
            return "a citation needs @type Claim and an integer position"
        if appearance.get("@type") != "DigitalDocument" or not appearance.get("name"):
            return "a citation's appearance needs @type DigitalDocument and a name"
        if len(appearance["name"]) > CITATION_TITLE_LIMIT:
            return "citation name too long"
        if len(appearance.get("abstract") or "") > CITATION_ABSTRACT_LIMIT:
            return "citation abstract too long"
    return None


@dataclass
class Shown:
    """A message as a person sees it in the conversation."""

    id: str
    conversation_id: str
    text: str
    streamed: bool = False
    final: bool = False
    ai_generated: bool = False  # carries the "AI generated" label
    citations: list[dict[str, Any]] = field(default_factory=list)  # its Claim entities

    def label(self, body: dict[str, Any]) -> None:
        """Take the AI label and citations of the activity that set this message's text."""
        entity = _ai_entity(body)
        self.ai_generated = entity is not None
        self.citations = list((entity or {}).get("citation") or [])


@dataclass
class _Stream:
    message: Shown
    started: float
    sequence: int = 0
    updates: int = 0
    streamed_text: str = ""
    finished: bool = False
    stopped: bool = False
    timed_out: bool = False


@dataclass
class _Failure:
    status: int
    code: str
    message: str
    retry_after: str | None
    when: Callable[[dict[str, Any]], bool]


@dataclass
class FakeBotConnector:
    """A Bot Connector service speaking the v3 REST API and Teams' streaming rules.

    Knobs (read per request): ``streaming_enabled``; ``stop_after_updates`` (the user
    presses Stop after that many streaming updates of a stream); ``stream_time_limit``
    (seconds Teams lets a stream run); ``max_message_bytes`` (UTF-16 bytes of text).
    ``accepted_tokens`` returns the bearer tokens it accepts (None: no auth checked).
    """

    accepted_tokens: Callable[[], Collection[str]] | None = None
    path_prefix: str = "/amer"
    streaming_enabled: bool = True
    stop_after_updates: int | None = None
    stream_time_limit: float = 120.0
    max_message_bytes: int = 28_000
    calls: list[ConnectorCall] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _shown: list[Shown] = field(default_factory=list)
    _streams: dict[str, _Stream] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _port: int | None = None

    @property
    def service_url(self) -> str:
        """What activities carry as ``serviceUrl`` (with a region path, like Teams')."""
        assert self._port is not None, "FakeBotConnector is not started"
        return f"http://127.0.0.1:{self._port}{self.path_prefix}/"

    async def start(self) -> None:
        app = web.Application()
        base = f"{self.path_prefix}/v3/conversations/{{conversation_id}}/activities"
        app.router.add_post(base, self._post)
        app.router.add_post(base + "/{activity_id}", self._post)
        app.router.add_put(base + "/{activity_id}", self._put)
        app.router.add_delete(base + "/{activity_id}", self._delete)
        self._runner, self._port = await _start(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- test controls ---------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        code: str = "",
        message: str = "",
        times: int = 1,
        retry_after: str | None = None,
        when: Callable[[dict[str, Any]], bool] = lambda body: True,
    ) -> None:
        """Answer the next ``times`` matching requests with an error."""
        for _ in range(times):
            self._failures.append(_Failure(status, code, message, retry_after, when))

    # -- what a person sees --------------------------------------------------------

    def shown(self, conversation_id: str | None = None) -> list[Shown]:
        """Messages in a conversation (all when None), in the order they appeared."""
        return [m for m in self._shown if conversation_id in (None, m.conversation_id)]

    def texts(self, conversation_id: str | None = None) -> list[str]:
        return [m.text for m in self.shown(conversation_id)]

    def typing(self, conversation_id: str | None = None) -> list[ConnectorCall]:
        """Plain typing indicators (not streaming updates)."""
        return [
            c
            for c in self.calls
            if c.type == "typing"
            and c.stream_info is None
            and conversation_id in (None, c.conversation_id)
        ]

    def stream_calls(self, conversation_id: str | None = None) -> list[ConnectorCall]:
        """Accepted activities that carry a streaminfo entity, in order."""
        return [
            c
            for c in self.calls
            if c.stream_info is not None
            and c.status == 200
            and conversation_id in (None, c.conversation_id)
        ]

    # -- handlers --------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str, **headers: str) -> web.Response:
        return web.json_response(
            {"error": {"code": code, "message": message}}, status=status, headers=headers
        )

    async def _record(self, request: web.Request) -> ConnectorCall | web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "BadSyntax", "body is not JSON")
        call = ConnectorCall(
            method=request.method,
            conversation_id=request.match_info["conversation_id"],
            activity_id=request.match_info.get("activity_id"),
            body=body,
            authorization=request.headers.get("Authorization", ""),
        )
        self.calls.append(call)
        if self.accepted_tokens is not None:
            scheme, _, token = call.authorization.partition(" ")
            if scheme != "Bearer" or token not in self.accepted_tokens():
                call.status = 401
                return web.json_response(
                    {"message": "Authorization has been denied for this request."}, status=401
                )
        for failure in self._failures:
            if failure.when(body):
                self._failures.remove(failure)
                call.status = failure.status
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                return self._error(failure.status, failure.code, failure.message, **headers)
        if len(call.text.encode("utf-16-le")) > self.max_message_bytes:
            call.status = 413
            return self._error(413, "MessageSizeTooBig", "Message size too large.")
        problem = _ai_entity_problem(body)
        if problem is not None:
            call.status = 400
            return self._error(400, "BadArgument", problem)
        return call

    async def _delete(self, request: web.Request) -> web.Response:
        """DELETE an activity the bot posted: it disappears from the conversation."""
        call = ConnectorCall(
            method="DELETE",
            conversation_id=request.match_info["conversation_id"],
            activity_id=request.match_info["activity_id"],
            body={},
            authorization=request.headers.get("Authorization", ""),
        )
        self.calls.append(call)
        before = len(self._shown)
        self._shown = [m for m in self._shown if m.id != call.activity_id]
        if len(self._shown) == before:
            return self._refuse(call, 404, "ActivityNotFound", "Unknown activity")
        return web.Response(status=200)

    def _refuse(self, call: ConnectorCall, status: int, code: str, message: str) -> web.Response:
        call.status = status
        return self._error(status, code, message)

    async def _post(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if isinstance(call, web.Response):
            return call
        info = call.stream_info
        if info is None:
            if call.type == "message":
                shown = Shown(f"m{next(self._ids)}", call.conversation_id, call.text)
                shown.label(call.body)
                self._shown.append(shown)
                return web.json_response({"id": shown.id})
            return web.json_response({"id": f"t{next(self._ids)}"})
        return self._stream(call, info)

    def _stream(self, call: ConnectorCall, info: dict[str, Any]) -> web.Response:
        kind, stream_id = info.get("streamType"), info.get("streamId")
        if not self.streaming_enabled:
            return self._refuse(call, 400, "BadArgument", "Streaming api is not enabled")
        if kind in ("informative", "streaming"):
            if call.type != "typing":
                return self._refuse(
                    call, 400, "BadSyntax", "Only final streaming type is allowed as a message"
                )
            sequence = info.get("streamSequence")
            if not isinstance(sequence, int) or sequence < 1:
                return self._refuse(call, 400, "BadArgument", "streamSequence is required")
        elif kind == "final":
            if call.type != "message" or not stream_id:
                return self._refuse(call, 400, "BadArgument", "final needs a message and streamId")
        else:
            return self._refuse(
                call, 400, "BadSyntax", "Only start and continue streaming types are allowed"
            )
        if stream_id is None:
            shown = Shown(f"s{next(self._ids)}", call.conversation_id, "", streamed=True)
            stream = _Stream(message=shown, started=time.monotonic())
            self._streams[shown.id] = stream
            self._shown.append(shown)
        else:
            found = self._streams.get(stream_id)
            if found is None:
                return self._refuse(call, 404, "NotFound", "Unknown stream")
            stream = found
        if stream.finished:
            return self._refuse(
                call,
                403,
                "ContentStreamNotAllowed",
                "Content stream is not allowed on an already completed streamed message",
            )
        if stream.stopped:
            return self._refuse(call, 403, "ContentStreamNotAllowed", STOPPED_MESSAGE)
        if stream.timed_out or time.monotonic() - stream.started > self.stream_time_limit:
            stream.timed_out = True
            return self._refuse(call, 403, "ContentStreamNotAllowed", STREAM_TIMEOUT_MESSAGE)
        if kind == "final":
            stream.finished = True
            stream.message.text = call.text
            stream.message.final = True
            stream.message.label(call.body)
            return web.json_response({"id": stream.message.id})
        if info["streamSequence"] <= stream.sequence:
            return self._refuse(
                call,
                400,
                "ContentStreamSequenceOrderPreConditionFailed",
                "PreCondition failed: streamSequence must increase",
            )
        stream.sequence = info["streamSequence"]
        if kind == "streaming":
            if not call.text.startswith(stream.streamed_text):
                return self._refuse(
                    call,
                    400,
                    "BadArgument",
                    "Streamed content must start with the previously streamed content",
                )
            stream.streamed_text = stream.message.text = call.text
            stream.updates += 1
            if self.stop_after_updates is not None and stream.updates >= self.stop_after_updates:
                stream.stopped = True  # the user presses Stop after seeing this update
        return web.json_response({"id": stream.message.id})

    async def _put(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if isinstance(call, web.Response):
            return call
        target = next((m for m in self._shown if m.id == call.activity_id), None)
        if target is None:
            return self._refuse(call, 404, "NotFound", "The activity does not exist")
        target.text = call.text
        target.label(call.body)
        if target.id in self._streams:
            self._streams[target.id].finished = True
        return web.json_response({"id": target.id})


@dataclass
class FakeBotFrameworkLogin:
    """Bot Framework's OpenID metadata, signing keys and Entra ID token endpoint."""

    app_id: str
    app_password: str
    key_id: str = "bf-test-key"
    endorsements: tuple[str, ...] = ("msteams", "emulator", "webchat")
    issued_tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    metadata_requests: int = 0
    # A fresh path per instance: botbuilder caches metadata per URL for the whole process.
    _nonce: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _runner: web.AppRunner | None = None
    _port: int | None = None

    @property
    def base_url(self) -> str:
        assert self._port is not None, "FakeBotFrameworkLogin is not started"
        return f"http://127.0.0.1:{self._port}/{self._nonce}"

    @property
    def metadata_url(self) -> str:
        """Stands in for https://login.botframework.com/v1/.well-known/openidconfiguration."""
        return f"{self.base_url}/v1/.well-known/openidconfiguration"

    @property
    def login_prefix(self) -> str:
        """Stands in for https://login.microsoftonline.com/ (tenant and path follow)."""
        return f"{self.base_url}/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(f"/{self._nonce}/v1/.well-known/openidconfiguration", self._metadata)
        app.router.add_get(f"/{self._nonce}/v1/.well-known/keys", self._keys)
        app.router.add_post(f"/{self._nonce}/{{tenant}}/oauth2/v2.0/token", self._token)
        self._runner, self._port = await _start(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def channel_token(
        self,
        service_url: str,
        *,
        audience: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        lifetime: int = 3600,
    ) -> str:
        """A token like the one the Bot Connector sends with each activity."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience or self.app_id,
            "serviceurl": service_url,
            "nbf": now - 60,
            "exp": now + lifetime,
        }
        return jwt.encode(claims, key or rsa_key(), algorithm="RS256", headers={"kid": self.key_id})

    async def _metadata(self, request: web.Request) -> web.Response:
        self.metadata_requests += 1
        return web.json_response(
            {
                "issuer": BOT_FRAMEWORK_ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{self.base_url}/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _keys(self, request: web.Request) -> web.Response:
        jwk = RSAAlgorithm.to_jwk(rsa_key().public_key(), as_dict=True)
        jwk |= {"kid": self.key_id, "use": "sig", "endorsements": list(self.endorsements)}
        return web.json_response({"keys": [jwk]})

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append({"tenant": request.match_info["tenant"], **form})
        if form.get("client_id") != self.app_id or form.get("client_secret") != self.app_password:
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
                status=401,
            )
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        token = f"bf-access-{uuid.uuid4().hex}"
        self.issued_tokens.add(token)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            }
        )
