"""Checks of the chat platforms: Slack and Teams."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.app.builders import (
    build_slack_client,
    slack_api_url,
    teams_credentials,
)
from adapters.app.settings import Settings
from adapters.doctor.report import (
    _SLACK_AUTH_ERRORS,
    TIMEOUT_SECONDS,
    Check,
)
from inference.urls import public_url

# -- Slack ----------------------------------------------------------------------------


SLACK_SIGNING_SECRET_LENGTH = 32  # Slack's signing secrets: 32 hexadecimal characters


async def check_slack(settings: Settings) -> list[Check]:
    """auth.test with the bot token; the signing secret (HTTP) or app token (Socket Mode)."""
    token = settings.slack_bot_token
    if token is None:
        if settings.slack_app_token is not None or settings.slack_signing_secret is not None:
            return [
                Check(
                    "WARN",
                    "slack",
                    "Slack is off: SLACK_APP_TOKEN or SLACK_SIGNING_SECRET is set, "
                    "SLACK_BOT_TOKEN is not",
                    "put the Bot User OAuth Token (xoxb-...) in SLACK_BOT_TOKEN",
                )
            ]
        return [Check("OK", "slack", "Slack is off (SLACK_BOT_TOKEN is not set)")]
    shown = public_url(slack_api_url(settings))
    checks: list[Check] = []
    bot_token = token.get_secret_value()
    if not bot_token.startswith("xoxb-"):
        checks.append(
            Check(
                "WARN",
                "slack",
                "SLACK_BOT_TOKEN does not start with xoxb- (not a bot token)",
                "use the Bot User OAuth Token from OAuth & Permissions",
            )
        )
    client = build_slack_client(settings, timeout=int(TIMEOUT_SECONDS) + 2)  # the bot's own
    reinstall = (
        "copy the Bot User OAuth Token (xoxb-...) from OAuth & Permissions into "
        "SLACK_BOT_TOKEN (reinstall the app if it was revoked)"
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        checks.append(
            Check(
                "FAIL",
                "slack",
                f"auth.test at {shown} refused SLACK_BOT_TOKEN: {error}",
                reinstall if error in _SLACK_AUTH_ERRORS else "see api.slack.com/methods/auth.test",
            )
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        checks.append(
            Check(
                "FAIL",
                "slack",
                f"cannot reach Slack at {shown} ({type(exc).__name__})",
                "check that this machine reaches Slack (network, proxy) or correct SLACK_API_URL",
            )
        )
    else:
        checks.append(
            Check(
                "OK",
                "slack",
                f"auth.test ok: @{auth.get('user')} ({auth.get('user_id')}) in "
                f"{auth.get('team')} ({auth.get('team_id')})",
            )
        )
    checks.append(await _check_slack_mode(settings, client))
    return checks


async def _check_slack_mode(settings: Settings, client: AsyncWebClient) -> Check:
    app_token = settings.slack_app_token
    if app_token is None:
        if settings.slack_signing_secret is None:
            return Check(
                "FAIL",
                "slack",
                "HTTP mode without SLACK_SIGNING_SECRET: every request to /slack/events gets 401",
                "copy the Signing Secret (Basic Information) into SLACK_SIGNING_SECRET, "
                "or set SLACK_APP_TOKEN for Socket Mode",
            )
        secret = settings.slack_signing_secret.get_secret_value()
        if len(secret) < SLACK_SIGNING_SECRET_LENGTH:
            return Check(
                "WARN",
                "slack",
                f"HTTP mode, but SLACK_SIGNING_SECRET is {len(secret)} characters; Slack's are "
                f"{SLACK_SIGNING_SECRET_LENGTH}: every request to /slack/events will get 401",
                "copy the whole Signing Secret (Basic Information, App Credentials) into "
                "SLACK_SIGNING_SECRET",
            )
        return Check("OK", "slack", "HTTP mode: SLACK_SIGNING_SECRET is set")
    value = app_token.get_secret_value()
    new_token = (
        "create an app-level token with connections:write (Basic Information, App-Level "
        "Tokens) and put it in SLACK_APP_TOKEN, or unset it for HTTP mode"
    )
    if not value.startswith("xapp-"):
        return Check(
            "FAIL", "slack", "SLACK_APP_TOKEN does not start with xapp- (Socket Mode)", new_token
        )
    try:
        # Only hands out a WebSocket URL; nothing connects to it.
        await client.apps_connections_open(app_token=value)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        return Check("FAIL", "slack", f"Socket Mode refused SLACK_APP_TOKEN: {error}", new_token)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return Check(
            "WARN",
            "slack",
            f"Socket Mode: SLACK_APP_TOKEN not verified ({type(exc).__name__})",
            "check that this machine reaches Slack",
        )
    return Check("OK", "slack", "Socket Mode: SLACK_APP_TOKEN accepted")


# -- Teams ----------------------------------------------------------------------------


def check_teams(settings: Settings) -> list[Check]:
    """The Bot Framework credentials are complete for the app type (the problems the bot
    itself logs at start). Offline, doctor cannot fetch a token, so the credentials
    themselves are reported as not verified."""
    credentials = teams_credentials(settings)
    if not credentials.app_id:
        if settings.teams_allow_unauthenticated:
            return [
                Check(
                    "WARN",
                    "teams",
                    "TEAMS_ALLOW_UNAUTHENTICATED=true without MICROSOFT_APP_ID: unsigned "
                    "activities are accepted (replies only to loopback service URLs)",
                    "for local testing only; set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD "
                    "for real Teams",
                )
            ]
        return [Check("OK", "teams", "Teams is off (MICROSOFT_APP_ID is not set)")]
    checks = [
        Check("WARN" if p.severity == "odd" else "FAIL", "teams", p.what, p.fix)
        for p in credentials.problems()
    ]
    if not any(c.status == "FAIL" for c in checks):
        app_type = credentials.app_type
        credential = "managed identity" if app_type == "UserAssignedMSI" else "password set"
        checks.append(
            Check(
                "OK",
                "teams",
                f"app {credentials.app_id} ({app_type}, {credential}); credentials not verified: "
                "doctor does not fetch a Bot Framework token (a wrong secret shows as "
                "'cannot answer in Teams' in the bot's log)",
            )
        )
    return checks
