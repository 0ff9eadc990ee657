"""The analytics page in a real browser: Debian's headless Chromium, driven by Playwright,
follows the sign-in link and shows the page with its charts drawn (SVG present, sized and
holding the seeded values). A screenshot is kept in the test's temporary folder.

Skipped, saying why, where Chromium is not installed (`apt-get install chromium`;
`.ci/run` installs it)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from bot.analytics import window_start
from bot.ledger import Ledger
from tests.support.analytics_seed import ADMIN, NOW, analytics_server, make_seed, write_seed

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"NO CHROMIUM at {CHROMIUM}: the browser test is SKIPPED "
        "(install Debian's package: apt-get install -y chromium)",
    ),
]


async def test_sign_in_and_see_the_charts_in_chromium(ledger: Ledger, tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    seed = make_seed()
    await write_seed(ledger, seed)
    since = window_start(7, NOW)
    rows = [r for r in seed.records if r.created_at >= since]
    bars = Counter((r.created_at.date().isoformat(), r.platform, r.route) for r in rows)

    async with (
        analytics_server(ledger._engine) as (server, sign_in),
        playwright_api.async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            external: list[str] = []
            base = str(server.make_url("/"))
            page.on(
                "request",
                lambda request: (
                    None if request.url.startswith(base) else external.append(request.url)
                ),
            )
            # Without a session: the sign-in page.
            response = await page.goto(str(server.make_url("/admin?days=7")))
            assert response is not None and response.status == 401
            assert "/admin" in await page.inner_text("#sign-in")

            code = await sign_in.issue_code(ADMIN)
            response = await page.goto(str(server.make_url(f"/admin/login?code={code}")))
            assert response is not None and response.status == 200
            assert page.url.endswith("/admin")
            await page.goto(str(server.make_url("/admin?days=7")))
            assert await page.inner_text("#total-questions") == f"{len(rows):,}"

            # The questions-per-day chart: one drawn bar per (day, platform, route), sized.
            chart = page.locator("#chart-per_day svg")
            box = await chart.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 100
            rects = chart.locator("rect.bar")
            assert await rects.count() == len(bars)
            titles = await rects.evaluate_all("els => els.map(e => e.textContent)")
            expected = {f"{d} · {p} · {route}: {n} questions" for (d, p, route), n in bars.items()}
            assert set(titles) == expected
            heights = await rects.evaluate_all(
                "els => els.map(e => e.getBoundingClientRect().height)"
            )
            assert all(h > 0 for h in heights)
            # Taller bars for more questions: the largest count has the tallest bar.
            values = await rects.evaluate_all("els => els.map(e => Number(e.dataset.value))")
            tallest = max(range(len(values)), key=lambda i: (heights[i], values[i]))
            assert values[tallest] == max(bars.values())

            for name in ("gaps", "latency", "votes"):
                svg = page.locator(f"#chart-{name} svg")
                assert await svg.count() == 1, name
                box = await svg.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 50, name
                assert await svg.locator("rect.bar").count() > 0, name

            # The stylesheet applied (bars coloured by series), nothing fetched elsewhere.
            fill = await rects.first.evaluate("e => getComputedStyle(e).fill")
            assert fill not in ("", "none", "rgb(0, 0, 0)")
            assert external == []
            await page.screenshot(path=str(tmp_path / "analytics.png"), full_page=True)
            assert (tmp_path / "analytics.png").stat().st_size > 10_000

            # A phone-sized screen: the charts shrink to fit, no sideways scrolling.
            await page.set_viewport_size({"width": 390, "height": 844})
            box = await chart.bounding_box()
            assert box is not None and box["width"] <= 390
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth > document.documentElement.clientWidth"
            )
            assert overflow is False
        finally:
            await browser.close()
