"""Slack Socket Mode: connect with backoff, say once and clearly why it does not connect,
and tell /readyz whether the WebSocket is up."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from inference.urls import public_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 20.0
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0
_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
NEW_APP_TOKEN = (
    "create an app-level token with connections:write (api.slack.com/apps, Basic Information, "
    "App-Level Tokens), put it in SLACK_APP_TOKEN, and enable Socket Mode; or unset "
    "SLACK_APP_TOKEN to use the HTTP route. `chatbot doctor` checks it"
)


class _NoTracebacks(logging.Filter):
    """The SDK logs every failed reconnect with a full traceback: keep the one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Failed to retrieve WSS URL"):
            return False  # SocketMode.run says it, with the fix
        record.exc_info = None
        record.exc_text = None
        return True


_SDK_LOG = logging.getLogger("slack_sdk.socket_mode")
_SDK_LOG.addFilter(_NoTracebacks())


def why_not(exc: BaseException, api_url: str) -> str:
    """One line: why Socket Mode could not connect, and the fix."""
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        if error in _AUTH_ERRORS:
            return f"Slack refused SLACK_APP_TOKEN ({error}): {NEW_APP_TOKEN}"
        return f"Slack refused to open a Socket Mode connection ({error}): {NEW_APP_TOKEN}"
    return (
        f"cannot reach Slack at {public_url(api_url)} for Socket Mode ({type(exc).__name__}): "
        "check that this machine reaches Slack (network, proxy) or correct SLACK_API_URL"
    )


class SocketMode:
    """Keeps the Socket Mode connection: the first one with backoff, later ones by the SDK."""

    def __init__(self, *, app: AsyncApp, app_token: str, api_url: str) -> None:
        self.handler = AsyncSocketModeHandler(app, app_token, logger=_SDK_LOG)
        self._api_url = api_url
        self._connected_once = False

    async def connected(self) -> bool:
        """Whether the WebSocket to Slack is up now."""
        return self._connected_once and await self.handler.client.is_connected()

    async def run(self) -> None:
        """Connect, retrying with growing pauses (up to 5 minutes); cancel to stop."""
        client = self.handler.client
        delay = FIRST_RETRY_SECONDS
        said = ""
        while True:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    # Asking for the WebSocket URL first is what fails on a bad token or no
                    # network; then the SDK's connect() (which would retry forever) succeeds.
                    client.wss_uri = await client.issue_new_wss_url()
                    await client.connect()  # type: ignore[no-untyped-call]  # slack_sdk's
            except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = why_not(exc, self._api_url)
                if reason != said:
                    log.error(
                        "Slack is not connected: %s (retrying, up to every %.0f s)",
                        reason,
                        MAX_RETRY_SECONDS,
                    )
                    said = reason
                else:
                    log.debug("Slack Socket Mode: still not connected; retrying in %.0f s", delay)
            else:
                self._connected_once = True
                log.info("Slack: Socket Mode connected")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def close(self) -> None:
        """Close the WebSocket and its HTTP session."""
        await self.handler.client.close()  # type: ignore[no-untyped-call]  # slack_sdk's
