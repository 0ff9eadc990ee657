"""`POST /mcp`: an MCP server for coding agents (Claude Code, Cursor, VS Code, Continue),
authenticated by the same personal tokens as the rest of the team API.

Two tools: ``search_knowledge`` (what `/search` lists, no model call) and ``ask`` (the
assistant's answer with its sources, through the core's one answer path).

Built on the official SDK's low-level server, driven in stateless JSON-response mode by its
own streamable-HTTP session manager, from an aiohttp route through a small ASGI bridge:
the bot keeps one HTTP server, and each request is complete in itself (no session state
to share between replicas; an agent's request can land on any of them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import mcp.types as types
from aiohttp import web
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from adapters.api.asgi import call_asgi
from adapters.api.sink import ApiSink
from adapters.api.wire import (
    MAX_BODY_BYTES,
    ApiError,
    citations_json,
    completion_id,
    incoming,
    now,
    owner_key,
)
from bot.assistant import Assistant
from bot.search import search_documents
from bot.tokens import Owner
from inference.knowledge import Knowledge, KnowledgeError

log = logging.getLogger(__name__)

MCP = "mcp"
MAX_LIMIT = 20
INSTRUCTIONS = (
    "The engineering team's own assistant. It knows the team's internal documentation, "
    "runbooks and code (indexed from its repositories, wikis and sites), and answers with "
    "citations. Use it for questions about this company's systems, services, conventions "
    "and procedures, which public sources do not know."
)
TOOLS = [
    types.Tool(
        name="search_knowledge",
        description=(
            "Search the team's internal docs, runbooks and code for documents matching a "
            "query, without asking a model: each result has a title, a URL and an excerpt. "
            "Use it first to find where something about the company's own systems is "
            "documented (services, deploys, on-call, internal APIs, error codes)."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "words to look for"},
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": 5,
                    "description": "how many documents at most",
                },
            },
            "required": ["query"],
        },
    ),
    types.Tool(
        name="ask",
        description=(
            "Ask the team's assistant a question; it answers from the team's internal docs, "
            "runbooks and code with numbered citations and lists its sources. Use it for "
            "questions about the company's own systems and practices. premium=true uses the "
            "premium model (text leaves the company; budgets apply)."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "question": {"type": "string"},
                "premium": {"type": "boolean", "default": False},
            },
            "required": ["question"],
        },
    ),
]

Authenticate = Callable[[web.Request], Awaitable[Owner]]


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class McpServer:
    """The MCP door: tools over the assistant and the team's knowledge."""

    def __init__(
        self, *, assistant: Assistant, knowledge: Knowledge | None, authenticate: Authenticate
    ) -> None:
        self._assistant = assistant
        self._knowledge = knowledge
        self._authenticate = authenticate
        self._server: Server[Any] = Server(
            "chatbot",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self._manager = StreamableHTTPSessionManager(
            app=self._server,
            stateless=True,
            json_response=True,
            max_request_body_size=MAX_BODY_BYTES,
        )
        self._running: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    def start(self) -> None:
        """Run the SDK's session manager (one task holds its task group until ``close``)."""
        if self._running is None:
            self._running = asyncio.create_task(self._run(), name="mcp")

    async def _run(self) -> None:
        async with self._manager.run():
            self._ready.set()
            await self._stop.wait()

    async def close(self) -> None:
        """Stop the session manager."""
        self._stop.set()
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`POST /mcp` (and the GET and DELETE the transport answers 405 in stateless mode)."""
        try:
            owner = await self._authenticate(request)
        except ApiError as exc:
            return exc.response()
        self.start()
        await self._ready.wait()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return ApiError(413, "the request body is over 1 MB").response()
        return await call_asgi(self._manager.handle_request, request, body, {"owner": owner})

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        owner = _owner(ctx)
        if owner is None:  # cannot happen: the route authenticated the request
            return _error("not authenticated")
        arguments = params.arguments or {}
        if params.name == "search_knowledge":
            return await self._search(owner, arguments)
        if params.name == "ask":
            return await self._ask(owner, arguments)
        return _error(f"unknown tool {params.name!r}")

    async def _search(self, owner: Owner, arguments: dict[str, Any]) -> types.CallToolResult:
        query, limit = arguments.get("query"), arguments.get("limit", 5)
        if not isinstance(query, str) or not query.strip():
            return _error("query: give the words to look for")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            return _error(f"limit: a whole number from 1 to {MAX_LIMIT}")
        if self._knowledge is None:
            return _error("No team knowledge is indexed on this bot (KNOWLEDGE_SOURCES is empty).")
        try:
            found = await search_documents(
                self._knowledge, owner_key(owner, MCP), query.strip(), limit
            )
        except KnowledgeError:
            log.warning("team knowledge unavailable for MCP search", exc_info=True)
            return _error("The team's knowledge cannot be searched right now; try again later.")
        documents = [{"title": c.title, "url": c.url, "excerpt": c.excerpt} for c in found]
        if not documents:
            text = f"No indexed document matches {query.strip()!r}."
        else:
            text = "\n\n".join(
                f"{n}. {d['title']}\n{d['url']}\n{d['excerpt']}"
                for n, d in enumerate(documents, start=1)
            )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content={"documents": documents},
        )

    async def _ask(self, owner: Owner, arguments: dict[str, Any]) -> types.CallToolResult:
        question, premium = arguments.get("question"), arguments.get("premium", False)
        if not isinstance(question, str):
            return _error("question: give the question as text")
        if not isinstance(premium, bool):
            return _error("premium: true or false")
        id = completion_id()
        message = incoming(owner, id, question, via=MCP)
        sink = ApiSink(request=None, stream=False, id=id, model="", created=now())
        await self._assistant.answer(message, sink, premium=premium)
        if sink.error is not None:
            return _error(sink.error.text)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=sink.text)],
            structured_content={"answer": sink.text, "sources": citations_json(sink.citations)},
        )


def _owner(ctx: ServerRequestContext[Any]) -> Owner | None:
    request = ctx.request
    state = getattr(request, "scope", {}).get("state", {}) if request is not None else {}
    owner = state.get("owner") if isinstance(state, dict) else None
    return owner if isinstance(owner, Owner) else None
