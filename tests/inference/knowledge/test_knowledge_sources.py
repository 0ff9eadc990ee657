"""Team knowledge sources: a directory full of bad input, a git repository made here, and a
website (a local aiohttp app) with links, a sitemap and broken pages."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from inference.knowledge.loaders import (
    SourceFailed,
    load_directory,
    load_site,
    parse_allow_private,
    web_url,
)
from inference.knowledge.sources import SourceError, parse_source, parse_sources
from tests.fakes.ollama import FakeOllama
from tests.support.knowledge_helpers import MODEL, collect, stack, write

# The tests' sites listen on the loopback address, which website sources reach only when
# KNOWLEDGE_ALLOW_PRIVATE lists it.
LOCAL = parse_allow_private("127.0.0.1")


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama([MODEL]) as server:
        yield server


def test_sources_are_parsed_with_their_restrictions() -> None:
    git = parse_source("git+https://git.example.com/team/docs.git#release-2?only=C1+T2")
    assert (git.kind, git.location, git.ref, git.only) == (
        "git",
        "https://git.example.com/team/docs.git",
        "release-2",
        ("C1", "T2"),
    )
    assert git.name == "git+https://git.example.com/team/docs.git#release-2"
    site = parse_source("https://docs.example.com/sitemap.xml")
    assert site.kind == "web" and site.is_sitemap and site.only == ()
    assert parse_source("./docs").kind == "directory"
    assert [s.name for s in parse_sources("./a, ./b?only=X, ./a")] == ["./a", "./b"]
    for bad in ("ftp://host/x", "./a?only=", "git+"):
        with pytest.raises(SourceError):
            parse_source(bad)


async def test_a_directory_skips_bad_files_with_reasons_and_reads_the_rest(
    tmp_path: Path,
) -> None:
    root = write(
        tmp_path / "docs",
        {
            "guide.md": "# Guide\n\nHello.\n",
            "api/handler.py": "def handle():\n    return 42\n",
            "notes.rst": "Release notes\n=============\n\nFixed things.\n",
            "page.html": "<html><head><title>Page</title><script>steal()</script></head>"
            "<body><h1>Page</h1><p>Visible text.</p></body></html>",
            ".hidden.md": "# Hidden\n",
            ".gitignore": "build/\n*.log.md\n",
            "build/out.md": "# Built\n",
            "debug.log.md": "# Log\n",
        },
    )
    (root / "blob.txt").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    (root / "huge.md").write_bytes(b"# Huge\n" + b"x" * 2_100_000)
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage\n%%EOF")
    (root / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    (root / "loop").symlink_to(root, target_is_directory=True)
    outside = write(tmp_path / "outside", {"secret.md": "# Secret\n"})
    (root / "escape.md").symlink_to(outside / "secret.md")
    (root / "inside.md").symlink_to(root / "guide.md")
    (root / "dangling.md").symlink_to(root / "nowhere.md")

    docs, skipped = await collect(load_directory(root))

    assert set(docs) == {
        "guide.md",
        "api/handler.py",
        "notes.rst",
        "page.html",
        "latin1.txt",
        "inside.md",
    }
    assert docs["latin1.txt"].text == "Café crème brûlée"
    assert docs["notes.rst"].title == "Release notes"
    assert docs["api/handler.py"].kind == "code:python"
    assert docs["page.html"].title == "Page"
    assert "Visible text." in docs["page.html"].text and "steal" not in docs["page.html"].text
    assert skipped["blob.txt"] == "binary content"
    assert skipped["huge.md"].startswith("too large")
    assert skipped["broken.pdf"].startswith("unreadable PDF")
    assert skipped["image.png"] == "not a text, document or code file"
    assert skipped["loop"] == "symlinked directory (not followed)"
    assert skipped["escape.md"] == "symlink out of the directory (not followed)"
    assert skipped["dangling.md"] == "broken symlink or symlink loop"
    for ignored in (".hidden.md", "build/out.md", "debug.log.md", ".gitignore"):
        assert ignored not in docs and ignored not in skipped


async def test_skipped_files_show_in_the_report_and_the_rest_is_indexed(
    tmp_path: Path, fake: FakeOllama
) -> None:
    root = write(tmp_path / "docs", {"ok.md": "# Ok\n\nfine\n"})
    (root / "bad.pdf").write_bytes(b"not a pdf at all")
    async with stack(tmp_path, fake) as s:
        [report] = await s.index(str(root))
        statuses = await s.store.statuses()
    assert report.ok and report.documents_added == 1
    assert [(k.id, k.reason.split(" (")[0]) for k in report.skipped] == [
        ("bad.pdf", "unreadable PDF")
    ]
    assert statuses[str(root)].skipped[0].startswith("bad.pdf: unreadable PDF")


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


async def test_a_git_source_is_indexed_at_its_ref_and_fetched_again(
    tmp_path: Path, fake: FakeOllama
) -> None:
    repo = write(
        tmp_path / "repo",
        {"README.md": "# Service\n\nDeploy with make ship.\n", "src/app.py": "print('hi')\n"},
    )
    await asyncio.to_thread(_git, repo, "init", "--quiet", "--initial-branch=main")
    await asyncio.to_thread(_git, repo, "add", ".")
    await asyncio.to_thread(_git, repo, "commit", "--quiet", "-m", "first")
    source = f"git+file://{repo}#main"
    async with stack(tmp_path, fake) as s:
        [report] = await s.index(source)
        assert report.ok, report.error
        assert report.documents_added == 2
        [passage, *_] = await s.knowledge.retrieve("how do I deploy with make ship", scope=[])
        assert passage.document == "README.md" and passage.title == "Service"
        assert passage.url == f"file://{repo}#README.md"

        (repo / "README.md").write_text("# Service\n\nDeploy with make launch.\n")
        await asyncio.to_thread(_git, repo, "commit", "--quiet", "-am", "second")
        [report] = await s.index(source)
        assert report.documents_changed == 1 and report.documents_unchanged == 1

        ok, failed = await s.index(f"{source},git+file://{tmp_path}/nowhere.git?only=C1")
        assert not failed.ok and "git fetch failed" in failed.error
        assert ok.ok and ok.documents_unchanged == 2 and ok.documents == 2
        assert (await s.store.statuses())[source].documents == 2


def test_git_links_point_at_the_file_at_the_indexed_commit() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert web_url("https://github.com/acme/api.git", sha, "docs/a.md") == (
        f"https://github.com/acme/api/blob/{sha}/docs/a.md"
    )
    assert web_url("https://gitlab.example.com/g/api", sha, "a.md") == (
        f"https://gitlab.example.com/g/api/-/blob/{sha}/a.md"
    )
    assert web_url("git@github.com:acme/api.git", sha, "a.md") is None


# -- a website -----------------------------------------------------------------------------

PAGE = "<html><head><title>{title}</title></head><body>{body}</body></html>"


class Site:
    """A small documentation site with every kind of trouble."""

    def __init__(self) -> None:
        self.broken_status = 500
        self.pages = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/docs/", self.index)
        app.router.add_get("/docs/a.html", self.page_a)
        app.router.add_get("/docs/flaky.html", self.flaky)
        app.router.add_get("/docs/missing.html", self.missing)
        app.router.add_get("/docs/away.html", self.away)
        app.router.add_get("/docs/moved.html", self.moved)
        app.router.add_get("/docs/huge.html", self.huge)
        app.router.add_get("/docs/many/{n}.html", self.many)
        app.router.add_get("/docs/latin.html", self.latin)
        app.router.add_get("/docs/blob.html", self.blob)
        app.router.add_get("/outside.html", self.outside)
        app.router.add_get("/sitemap.xml", self.sitemap)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def html(self, title: str, body: str) -> web.Response:
        self.pages += 1
        return web.Response(text=PAGE.format(title=title, body=body), content_type="text/html")

    async def index(self, request: web.Request) -> web.Response:
        links = "".join(
            f'<a href="{h}">{h}</a>'
            for h in ("a.html", "flaky.html", "missing.html", "away.html", "moved.html",
                      "huge.html", "/outside.html", "mailto:x@example.com", "a.html#part")
        )  # fmt: skip
        return self.html("Docs home", f"<h1>Docs</h1><p>Welcome.</p>{links}")

    async def page_a(self, request: web.Request) -> web.Response:
        return self.html(
            "Alpha",
            "<nav>menu menu</nav><h1>Alpha</h1><p>Alpha explains the ALPHA_MODE flag.</p>"
            "<script>document.write('tracking')</script><style>p{}</style>",
        )

    async def flaky(self, request: web.Request) -> web.Response:
        if self.broken_status != 200:
            return web.Response(status=self.broken_status, text="oops")
        return self.html("Flaky", "<h1>Flaky</h1><p>Sometimes works.</p>")

    async def missing(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="not found")

    async def away(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("http://elsewhere.example.com/phish")

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/docs/a.html")

    async def huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"<p>" + b"x" * 100_000 + b"</p>")
        return response

    async def many(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return self.html(f"Page {n}", f'<p>page {n}</p><a href="{n + 1}.html">next</a>')

    async def latin(self, request: web.Request) -> web.Response:
        """An old page in Windows-1252 whose server names no charset."""
        page = PAGE.format(title="Latin", body="<p>Caf\u00e9 cr\u00e8me \u2013 na\u00efve</p>")
        return web.Response(body=page.encode("cp1252"), headers={"Content-Type": "text/html"})

    async def blob(self, request: web.Request) -> web.Response:
        """Binary content served as a page."""
        return web.Response(body=bytes(range(256)) * 8, headers={"Content-Type": "text/html"})

    async def outside(self, request: web.Request) -> web.Response:
        return self.html("Outside", "<p>not under /docs/</p>")

    async def sitemap(self, request: web.Request) -> web.Response:
        locs = "".join(
            f"<url><loc>{self.url}{p}</loc></url>"
            for p in ("/docs/a.html", "/outside.html", "/docs/missing.html")
        )
        xml = f'<?xml version="1.0"?><urlset xmlns="http://x">{locs}</urlset>'
        return web.Response(text=xml, content_type="application/xml")


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    server = Site()
    await server.start()
    yield server
    await server.stop()


async def test_a_website_is_crawled_under_its_path_and_bad_pages_are_skipped(site: Site) -> None:
    docs, skipped = await collect(load_site(parse_source(f"{site.url}/docs/"), allow=LOCAL))
    assert set(docs) == {f"{site.url}/docs/", f"{site.url}/docs/a.html"}
    alpha = docs[f"{site.url}/docs/a.html"]
    assert alpha.title == "Alpha" and "ALPHA_MODE" in alpha.text
    assert "tracking" not in alpha.text and "menu" not in alpha.text
    assert skipped[f"{site.url}/docs/flaky.html"] == "HTTP 500"
    assert skipped[f"{site.url}/docs/missing.html"] == "HTTP 404"
    assert skipped[f"{site.url}/docs/away.html"].startswith("redirect off the site")
    assert skipped[f"{site.url}/docs/huge.html"].startswith("too large")
    # moved.html redirects to a.html inside the site: the same page, indexed once.
    assert f"{site.url}/docs/moved.html" not in skipped


async def test_a_page_without_a_declared_charset_is_read_as_it_is_encoded(site: Site) -> None:
    docs, _ = await collect(load_site(parse_source(f"{site.url}/docs/latin.html"), allow=LOCAL))
    text = docs[f"{site.url}/docs/latin.html"].text
    assert "Caf\u00e9 cr\u00e8me \u2013 na\u00efve" in text and "\ufffd" not in text
    docs, skipped = await collect(
        load_site(parse_source(f"{site.url}/docs/blob.html"), allow=LOCAL)
    )
    assert not docs and skipped[f"{site.url}/docs/blob.html"] == "no text"


async def test_a_crawl_is_capped(site: Site) -> None:
    docs, skipped = await collect(
        load_site(parse_source(f"{site.url}/docs/many/1.html"), max_pages=5, allow=LOCAL)
    )
    assert len(docs) == 5
    assert any("crawl capped at 5 pages" in reason for reason in skipped.values())


async def test_a_sitemap_lists_the_pages(site: Site) -> None:
    docs, skipped = await collect(load_site(parse_source(f"{site.url}/sitemap.xml"), allow=LOCAL))
    assert set(docs) == {f"{site.url}/docs/a.html", f"{site.url}/outside.html"}
    assert skipped == {f"{site.url}/docs/missing.html": "HTTP 404"}


async def test_an_unreachable_site_fails_and_a_passing_error_keeps_what_was_indexed(
    site: Site, tmp_path: Path, fake: FakeOllama
) -> None:
    with pytest.raises(SourceFailed):
        await collect(load_site(parse_source(f"{site.url}/docs/missing.html"), allow=LOCAL))
    site.broken_status = 200
    source = f"{site.url}/docs/"
    async with stack(tmp_path, fake) as s:
        [report] = await s.index(source)
        assert report.ok and report.documents_added == 3  # home, a, flaky
        site.broken_status = 503
        [report] = await s.index(source)
        assert report.documents_removed == 0 and report.documents == 3
        found = await s.knowledge.search("sometimes works flaky", scope=[])
        assert found and found[0].document == f"{site.url}/docs/flaky.html"
