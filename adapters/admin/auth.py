"""Who is asking for the analytics page: an admin's signed session cookie, or an admin's
Bearer token (scripts)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.admin import SESSION_SECONDS, AdminSignIn

COOKIE = "chatbot_admin"
COOKIE_PATH = "/admin"

# Resolves a Bearer token to the user id of its owner, or None when it is not a valid
# token. The team API's personal tokens plug in here; without them no token is valid.
BearerResolver = Callable[[str], Awaitable[str | None]]


async def no_bearer_tokens(token: str) -> str | None:
    """The resolver while no token store is wired: every token is refused."""
    return None


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def bearer_admin(
    request: web.Request, *, sign_in: AdminSignIn, resolve_bearer: BearerResolver
) -> str | None:
    """The admin whose Bearer token the request carries; None without one, for a token
    ``resolve_bearer`` does not know, or for a token of someone who is not an admin."""
    token = bearer_token(request)
    if token is None:
        return None
    owner = await resolve_bearer(token)
    return owner if owner is not None and sign_in.is_admin(owner) else None


async def signed_in_admin(
    request: web.Request,
    *,
    sign_in: AdminSignIn,
    resolve_bearer: BearerResolver = no_bearer_tokens,
) -> str | None:
    """The admin making the request: by session cookie, else by Bearer token; None
    when neither is valid (the caller answers 401)."""
    session = request.cookies.get(COOKIE)
    if session:
        user = await sign_in.session_user(session)
        if user is not None:
            return user
    return await bearer_admin(request, sign_in=sign_in, resolve_bearer=resolve_bearer)


def is_https(request: web.Request, public_url: str) -> bool:
    """Whether people reach the page over https (then the cookie is Secure)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return public_url.lower().startswith("https://") or request.secure or forwarded == "https"


def set_session_cookie(response: web.StreamResponse, value: str, *, secure: bool) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure under https, 12 hours, /admin."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=secure,
    )
