"""The analytics page's routes: `GET /admin`, `GET /admin/login`, the CSV exports and the
stylesheet. Read-only: no request changes anything but the signing in itself."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.admin import charts
from adapters.admin.auth import (
    BearerResolver,
    is_https,
    no_bearer_tokens,
    set_session_cookie,
    signed_in_admin,
)
from adapters.admin.tables import show, tables, to_csv
from bot.admin import CODE_TTL_SECONDS, AdminSignIn
from bot.analytics import DEFAULT_WINDOW, WINDOWS, Analytics, AnalyticsReader
from bot.database import DatabaseError
from bot.errors import StateUnavailable

if TYPE_CHECKING:  # Jinja is imported when the page is first drawn, not by every bot
    import jinja2

log = logging.getLogger(__name__)

# No script, nothing from another host, no framing; the page's own stylesheet only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Link previewers fetch links posted in chat; they must not use up a one-time code.
SPEND_BARS = 12  # the workspaces and the people who spent most this month; the rest in the table
LINK_PREVIEWERS = ("slackbot", "skypeuripreview")  # Slackbot-LinkExpanding; Teams


@dataclass(frozen=True, slots=True)
class AdminPage:
    """What the routes need: the sign-in, the figures and how to show them."""

    sign_in: AdminSignIn
    reader: AnalyticsReader
    public_url: str
    show_questions: bool
    resolve_bearer: BearerResolver


PAGE: web.AppKey[AdminPage] = web.AppKey("admin_page", AdminPage)


def register_admin_routes(
    app: web.Application,
    *,
    sign_in: AdminSignIn,
    reader: AnalyticsReader,
    public_url: str,
    show_questions: bool = False,
    resolve_bearer: BearerResolver = no_bearer_tokens,
) -> None:
    """Add the analytics page's routes to ``app``. ``resolve_bearer`` maps a Bearer token to
    its owner's user id (the team API's personal tokens); an admin's token opens the page."""
    app[PAGE] = AdminPage(sign_in, reader, public_url.rstrip("/"), show_questions, resolve_bearer)
    app.router.add_get("/admin", _page)
    app.router.add_get("/admin/login", _login)
    app.router.add_get("/admin/export/{name}.csv", _export)
    app.router.add_get("/admin/admin.css", _stylesheet)


def _headers(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@functools.cache
def _templates() -> jinja2.Environment:
    """The page's templates, loaded when the page is first drawn (most bots never draw it)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("adapters.admin", "templates"), autoescape=True
    )
    environment.filters["cell"] = show
    return environment


def _render(request: web.Request, template: str, status: int, **context: Any) -> web.Response:
    text = _templates().get_template(template).render(context)
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    _headers(response)
    return response


def _sign_in_needed(request: web.Request, reason: str) -> web.Response:
    response = _render(request, "signin.html", 401, reason=reason)
    response.headers["WWW-Authenticate"] = 'Bearer realm="chatbot analytics"'
    return response


def _unavailable(request: web.Request) -> web.Response:
    return _render(
        request,
        "message.html",
        503,
        title="Analytics unavailable",
        text="The bot's storage (database or Redis) is not answering. Try again in a minute; "
        "`chatbot doctor` on the server says what is down.",
    )


async def _admin(request: web.Request) -> str | None:
    page = request.app[PAGE]
    return await signed_in_admin(request, sign_in=page.sign_in, resolve_bearer=page.resolve_bearer)


def _days(request: web.Request) -> int | None:
    text = request.query.get("days", str(DEFAULT_WINDOW)).strip()
    return int(text) if text.isdigit() and int(text) in WINDOWS else None


def _bad_days(request: web.Request) -> web.Response:
    return _render(
        request,
        "message.html",
        400,
        title="Unknown period",
        text=f"`days` must be one of {', '.join(map(str, WINDOWS))}, e.g. /admin?days=30.",
    )


async def _login(request: web.Request) -> web.StreamResponse:
    user_agent = request.headers.get("User-Agent", "").lower()
    if request.method != "GET" or any(p in user_agent for p in LINK_PREVIEWERS):
        # A link preview (or a HEAD) must not use the code up.
        return _render(
            request,
            "message.html",
            200,
            title="Analytics sign-in",
            text="Open the link to sign in.",
        )
    page = request.app[PAGE]
    try:
        user = await page.sign_in.redeem(request.query.get("code", ""))
        session = await page.sign_in.new_session(user) if user is not None else None
    except (DatabaseError, StateUnavailable):
        log.warning("analytics sign-in failed: storage unavailable", exc_info=True)
        return _unavailable(request)
    if user is None or session is None:
        minutes = CODE_TTL_SECONDS // 60
        return _sign_in_needed(
            request,
            f"This sign-in link does not work: it was used already, or it is more than "
            f"{minutes} minutes old.",
        )
    log.info("admin signed in to the analytics page")
    response = web.Response(status=303, headers={"Location": "/admin"})
    set_session_cookie(response, session, secure=is_https(request, page.public_url))
    _headers(response)
    return response


async def _authorised(request: web.Request) -> web.Response | None:
    """None when an admin asks; else the response to give (401 or 503)."""
    try:
        user = await _admin(request)
    except (DatabaseError, StateUnavailable):
        log.warning("analytics page: cannot check the session", exc_info=True)
        return _unavailable(request)
    if user is None:
        reason = (
            "Your session has expired or is not valid."
            if request.cookies or request.headers.get("Authorization")
            else "You are not signed in."
        )
        return _sign_in_needed(request, reason)
    return None


async def _read(request: web.Request, days: int) -> Analytics | web.Response:
    try:
        return await request.app[PAGE].reader.read(days)
    except DatabaseError:
        log.warning("analytics page: cannot read the ledger", exc_info=True)
        return _unavailable(request)


async def _page(request: web.Request) -> web.StreamResponse:
    refused = await _authorised(request)
    if refused is not None:
        return refused
    days = _days(request)
    if days is None:
        return _bad_days(request)
    analytics = await _read(request, days)
    if isinstance(analytics, web.Response):
        return analytics
    show_questions = request.app[PAGE].show_questions
    return _render(
        request,
        "page.html",
        200,
        a=analytics,
        days=days,
        windows=WINDOWS,
        tables=tables(analytics, show_questions=show_questions),
        charts=page_charts(analytics),
        show_questions=show_questions,
    )


async def _export(request: web.Request) -> web.StreamResponse:
    refused = await _authorised(request)
    if refused is not None:
        return refused
    days = _days(request)
    if days is None:
        return _bad_days(request)
    name = request.match_info["name"]
    if name not in TABLE_NAMES:
        return _render(
            request,
            "message.html",
            404,
            title="No such table",
            text=f"The tables are: {', '.join(sorted(TABLE_NAMES))}.",
        )
    analytics = await _read(request, days)
    if isinstance(analytics, web.Response):
        return analytics
    table = tables(analytics, show_questions=request.app[PAGE].show_questions)[name]
    response = web.Response(
        text=to_csv(table),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{days}d.csv"'},
    )
    _headers(response)
    return response


async def _stylesheet(request: web.Request) -> web.StreamResponse:
    css = resources.files("adapters.admin").joinpath("static/admin.css").read_text("utf-8")
    response = web.Response(text=css, content_type="text/css", charset="utf-8")
    response.headers["Cache-Control"] = "max-age=3600"
    _headers(response)
    return response


TABLE_NAMES = frozenset(
    (
        "questions_per_day",
        "people",
        "premium_spend",
        "latency",
        "votes",
        "documents",
        "gaps_by_day",
        "gaps_by_channel",
        "down_voted",
    )
)


def page_charts(a: Analytics) -> dict[str, charts.Chart]:
    """The page's charts, by name."""
    days = [(a.since + timedelta(days=i)).date().isoformat() for i in range(a.days)]
    series = sorted({f"{d.platform} · {d.route}" for d in a.per_day})
    per_day = {
        (d.day.isoformat(), f"{d.platform} · {d.route}"): float(d.questions) for d in a.per_day
    }
    every = 1 if a.days <= 7 else 5 if a.days <= 30 else 15
    gaps = {
        (g.day.isoformat(), "found a source"): float(g.searched - g.no_match) for g in a.gaps_by_day
    }
    gaps |= {(g.day.isoformat(), "found nothing"): float(g.no_match) for g in a.gaps_by_day}
    latency_rows = [
        (
            f"{x.route}: {label}",
            [
                (0, float(p50 or 0), f"median: {(p50 or 0) / 1000:.2f} s"),
                (1, float(p95 or 0), f"95th percentile: {(p95 or 0) / 1000:.2f} s"),
            ],
        )
        for x in a.latency
        for label, p50, p95 in (
            ("first token", x.first_token_p50, x.first_token_p95),
            ("whole answer", x.total_p50, x.total_p95),
        )
    ]
    vote_rows = [
        (
            f"{v.model} ({v.route})",
            [(0, float(v.up), f"thumbs up: {v.up}"), (1, float(v.down), f"thumbs down: {v.down}")],
        )
        for v in a.votes
    ]
    month = a.until.strftime("%Y-%m")
    spend_rows = [
        (
            f"{s.kind}: {s.who}",
            [(0, s.cost_usd, f"{s.month} spend: ${s.cost_usd:,.2f}")]
            + ([(1, s.budget_usd, f"budget: ${s.budget_usd:,.2f}")] if s.budget_usd > 0 else []),
        )
        for s in sorted(
            (s for s in a.spend if s.month == month),
            key=lambda s: (s.kind != "workspace", -s.cost_usd, s.who),
        )[:SPEND_BARS]
    ]
    document_rows = [
        (d.title, [(0, float(d.answers), f"{d.title}: {d.answers}")]) for d in a.documents[:10]
    ]
    return {
        "per_day": charts.stacked_columns(
            name="per_day",
            title="Questions per day by platform and route",
            categories=days,
            series=series,
            values=per_day,
            unit="questions",
            label_every=every,
        ),
        "gaps": charts.stacked_columns(
            name="gaps",
            title="Answers that searched the team knowledge, and found nothing",
            categories=days,
            series=["found a source", "found nothing"],
            values=gaps,
            unit="answers",
            label_every=every,
        ),
        "latency": charts.bars(
            name="latency",
            title="Time to the first token and to the whole answer",
            rows=latency_rows,
            series=["median", "95th percentile"],
        ),
        "votes": charts.bars(
            name="votes",
            title="Votes by model and route",
            rows=vote_rows,
            series=["thumbs up", "thumbs down"],
        ),
        "spend": charts.bars(
            name="spend",
            title=f"Premium spend in {month}, against the budget",
            rows=spend_rows,
            series=["spent", "budget"],
        ),
        "documents": charts.bars(
            name="documents", title="Most cited documents", rows=document_rows
        ),
    }
