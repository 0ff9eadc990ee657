"""Run one request of an ASGI application from an aiohttp handler (the MCP SDK's transport
is ASGI; the bot has one HTTP server, aiohttp's). The body is read by aiohttp, under its
own size limit, and handed over whole; the response is streamed back as the app sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def scope_of(request: web.Request, state: dict[str, Any]) -> Scope:
    """The ASGI HTTP scope of ``request``; ``state`` is what the app reads as request state."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    host, port = (peer[0], peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else ("", 0)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode(),
        "query_string": request.query_string.encode(),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": (host, port),
        "server": (request.host, 0),
        "state": state,
    }


async def call_asgi(
    app: AsgiApp, request: web.Request, body: bytes, state: dict[str, Any]
) -> web.StreamResponse:
    """Answer ``request`` (whose ``body`` was read) with ``app``."""
    done = asyncio.Event()
    sent_body = False
    response: web.StreamResponse | None = None

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # the app listens for a disconnect: it comes when we are done
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            headers = [
                (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                for k, v in message.get("headers", [])
            ]
            response = web.StreamResponse(status=int(message["status"]))
            for name, value in headers:
                if name.lower() not in ("content-length", "transfer-encoding"):
                    response.headers.add(name, value)
            await response.prepare(request)
        elif message["type"] == "http.response.body" and response is not None:
            chunk = message.get("body", b"")
            if chunk:
                await response.write(chunk)
            if not message.get("more_body", False):
                await response.write_eof()
                done.set()

    try:
        await app(scope_of(request, state), receive, send)
    finally:
        done.set()
    if response is None:
        return web.Response(status=500, text="no response")
    return response
