"""Bot Framework authentication without blocking the event loop.

botbuilder-python validates inbound tokens with keys it downloads through ``requests``
(synchronously, on the event loop, without a timeout) and gets outbound tokens through
MSAL (also synchronously, and anew for every reply). Both would stall every answer in
flight, Slack's included, while login.microsoftonline.com is slow. This module keeps
botbuilder's validation logic and replaces only the I/O:

- ``install_signing_keys`` puts an asyncio key cache (timeouts, stale keys kept when a
  refresh fails, unknown key ids refused cleanly) into botbuilder's per-URL cache of
  OpenID metadata, which its token validation reads.
- ``AsyncTokenCredentialFactory`` wraps botbuilder's credential factory: the same app id,
  tenant, authority and scope, but the client-credentials token is fetched with aiohttp
  and cached until shortly before it expires.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from botframework.connector.auth import (
    AppCredentials,
    AuthenticationConstants,
    ChannelValidation,
    GovernmentConstants,
    JwtTokenExtractor,
    MicrosoftAppCredentials,
    ServiceClientCredentialsFactory,
)
from jwt.algorithms import RSAAlgorithm
from msrest.authentication import Authentication

from adapters.teams.errors import CredentialsError, SigningKeysUnavailable

log = logging.getLogger(__name__)

KEYS_MAX_AGE = 24 * 3600.0  # Microsoft rotates signing keys about every few weeks
UNKNOWN_KEY_REFRESH = 300.0  # a token with an unknown key id refreshes the keys at most this often
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=15)
TOKEN_REFRESH_MARGIN = 300.0  # renew outbound tokens five minutes before they expire
OPAQUE_TOKEN_LIFETIME = 600.0  # tokens whose lifetime we are not told (managed identity)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """What botbuilder's JwtTokenExtractor reads from a key."""

    public_key: Any
    endorsements: list[str]


class AsyncOpenIdMetadata:
    """The signing keys published at one OpenID metadata URL, fetched with aiohttp."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self, key_id: str | None) -> SigningKey:
        """The key that signed a token; raises PermissionError for a key nobody published."""
        now = time.monotonic()
        if self._fetched_at is None or now - self._fetched_at > KEYS_MAX_AGE:
            await self._refresh(stale_ok=True)
        key = self._keys.get(key_id or "")
        if key is None and (
            self._fetched_at is None or time.monotonic() - self._fetched_at > UNKNOWN_KEY_REFRESH
        ):
            await self._refresh(stale_ok=False)
            key = self._keys.get(key_id or "")
        if key is None:
            raise PermissionError("token signed with a key Bot Framework does not publish")
        endorsements = key.get("endorsements")
        return SigningKey(
            public_key=RSAAlgorithm.from_jwk(json.dumps(key)),
            endorsements=list(endorsements) if isinstance(endorsements, list) else [],
        )

    async def _refresh(self, *, stale_ok: bool) -> None:
        async with self._lock:
            try:
                async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT, trust_env=True) as http:
                    async with http.get(self.url) as resp:
                        resp.raise_for_status()
                        metadata = await resp.json(content_type=None)
                    async with http.get(str(metadata["jwks_uri"])) as resp:
                        resp.raise_for_status()
                        keys = (await resp.json(content_type=None))["keys"]
            except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError) as exc:
                if self._keys and stale_ok:
                    log.warning(
                        "could not refresh Bot Framework signing keys (%s); using the cached ones",
                        type(exc).__name__,
                    )
                    return
                if self._keys:
                    return  # an unknown key id stays unknown; the token is refused
                raise SigningKeysUnavailable(
                    f"cannot fetch Bot Framework signing keys from {self.url}"
                ) from exc
            self._keys = {
                k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)
            }
            self._fetched_at = time.monotonic()


def signing_key_urls() -> set[str]:
    """Every OpenID metadata URL botbuilder validates Teams, Emulator and skill tokens with."""
    urls = {
        AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL,
        AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL,
        GovernmentConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL,
        GovernmentConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL,
        ChannelValidation.open_id_metadata_endpoint,
    }
    return {url for url in urls if url}


def install_signing_keys() -> None:
    """Make botbuilder's token validation use the asyncio key cache (idempotent)."""
    for url in signing_key_urls():
        if not isinstance(JwtTokenExtractor.metadataCache.get(url), AsyncOpenIdMetadata):
            JwtTokenExtractor.metadataCache[url] = AsyncOpenIdMetadata(url)


class BearerToken(Authentication):
    """msrest credentials that add an already acquired token to each request."""

    def __init__(self, token: str) -> None:
        self._token = token

    def signed_session(self, session: Any = None) -> Any:
        session = super().signed_session(session)
        session.headers["Authorization"] = f"Bearer {self._token}"
        return session


@dataclass(slots=True)
class _Cached:
    token: str
    expires_at: float


class AsyncTokenCredentialFactory(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """botbuilder's credential factory, with tokens fetched asynchronously and cached."""

    def __init__(self, inner: ServiceClientCredentialsFactory) -> None:
        self._inner = inner
        self._tokens: dict[tuple[str, ...], _Cached] = {}
        self._opaque: dict[tuple[str, ...], AppCredentials] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def is_valid_app_id(self, app_id: str) -> bool:
        return bool(await self._inner.is_valid_app_id(app_id))

    async def is_authentication_disabled(self) -> bool:
        return bool(await self._inner.is_authentication_disabled())

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Authentication:
        credentials: Authentication = await self._inner.create_credentials(
            app_id, oauth_scope, login_endpoint, validate_authority
        )
        if not isinstance(credentials, AppCredentials) or not credentials.microsoft_app_id:
            return credentials  # authentication disabled: requests go out without a token
        return BearerToken(await self.token_for(credentials))

    async def token_for(self, credentials: AppCredentials) -> str:
        """A valid token for these credentials, from the cache when it has one."""
        key = (
            type(credentials).__name__,
            str(credentials.microsoft_app_id),
            str(credentials.oauth_endpoint),
            str(credentials.oauth_scope),
        )
        cached = self._tokens.get(key)
        if cached is not None and cached.expires_at - time.monotonic() > TOKEN_REFRESH_MARGIN:
            return cached.token
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_at - time.monotonic() > TOKEN_REFRESH_MARGIN:
                return cached.token
            if isinstance(credentials, MicrosoftAppCredentials) and getattr(
                credentials, "microsoft_app_password", None
            ):
                cached = await self._client_credentials(credentials)
            else:
                cached = await self._in_thread(key, credentials)
            self._tokens[key] = cached
            return cached.token

    async def _client_credentials(self, credentials: MicrosoftAppCredentials) -> _Cached:
        """OAuth 2.0 client-credentials grant against the Entra ID authority botbuilder chose
        (its tenant: botframework.com for multi-tenant bots, the bot's own otherwise)."""
        scope = str(credentials.oauth_scope)
        if not scope.endswith("/.default"):
            scope += "/.default"
        url = str(credentials.oauth_endpoint).rstrip("/") + "/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": str(credentials.microsoft_app_id),
            "client_secret": str(credentials.microsoft_app_password),
            "scope": scope,
        }
        try:
            # A session per token (about one an hour); trust_env honours HTTPS_PROXY like the
            # Bot Connector calls (requests) do.
            async with aiohttp.ClientSession(timeout=TOKEN_TIMEOUT, trust_env=True) as http:
                async with http.post(url, data=form) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CredentialsError(
                f"cannot reach {url} for a Bot Framework token ({type(exc).__name__})"
            ) from exc
        if status != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error", "") if isinstance(body, dict) else ""
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            raise CredentialsError(
                f"Entra ID refused a Bot Framework token ({status} {error}): "
                f"{str(description).splitlines()[0] if description else 'no description'}"
                + _hint(str(description))
            )
        lifetime = float(body.get("expires_in") or 3599)
        return _Cached(str(body["access_token"]), time.monotonic() + lifetime)

    async def _in_thread(self, key: tuple[str, ...], credentials: AppCredentials) -> _Cached:
        # Managed identity: MSAL's client is synchronous; keep one per identity (and its cache).
        credentials = self._opaque.setdefault(key, credentials)
        try:
            token = await asyncio.wait_for(
                asyncio.to_thread(credentials.get_access_token), TOKEN_TIMEOUT.total
            )
        except Exception as exc:
            raise CredentialsError(
                f"cannot get a Bot Framework token for the managed identity ({type(exc).__name__})"
            ) from exc
        return _Cached(str(token), time.monotonic() + OPAQUE_TOKEN_LIFETIME)


def _hint(description: str) -> str:
    # The usual mistake: a single-tenant registration configured as multi-tenant, or back.
    if "AADSTS700016" in description:
        return (
            " — the app id is not known in that tenant: check MICROSOFT_APP_TYPE "
            "(SingleTenant needs MICROSOFT_APP_TENANT_ID) against the Azure Bot's type"
        )
    if "AADSTS7000215" in description:
        return " — MICROSOFT_APP_PASSWORD is not a valid client secret of this app"
    return ""
