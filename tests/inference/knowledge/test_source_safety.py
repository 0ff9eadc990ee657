"""Nothing a source holds can hurt the bot: compression bombs, pages that reach internal
addresses, sitemaps with entities, pages built to slow the HTML conversion, PDFs beyond
their limits, files swapped for symlinks, and secrets inside indexed files.

Websites are local aiohttp servers; a website "reached by name" goes through a resolver
stub that answers for names no DNS knows, so the loader must connect to the address it
checked."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard
from aiohttp import web
from pypdf import PdfWriter

from inference.knowledge.loaders import (
    Document,
    Skipped,
    SourceFailed,
    load_site,
    parse_allow_private,
    read_file,
    walk,
)
from inference.knowledge.loaders.html import ConversionTooSlow, html_to_markdown
from inference.knowledge.loaders.pdf import PdfRefused, pdf_text
from inference.knowledge.loaders.sitemaps import SitemapRefused, parse_sitemap
from inference.knowledge.loaders.web import MAX_PAGE_BYTES, Site
from inference.knowledge.sources import parse_source
from tests.fakes.ollama import FakeOllama
from tests.support import REPO
from tests.support.knowledge_helpers import MODEL, collect, stack, write

REPO = REPO
LOCAL = parse_allow_private("127.0.0.1")
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def _bomb(compress: object, total: int) -> bytes:
    chunk = bytes(1 << 20)
    out = bytearray()
    for _ in range(total >> 20):
        out += compress.compress(chunk)  # type: ignore[attr-defined]
    out += compress.flush()  # type: ignore[attr-defined]
    return bytes(out)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """2 GB of zeros as zstd (64 KB) and 512 MB of zeros as one gzip member (500 KB)."""
    return {
        "zstd": _bomb(zstandard.ZstdCompressor(level=3).compressobj(), 2 << 30),
        "gzip": _bomb(zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS), 512 << 20),
    }


class Server:
    """A web server with a bomb page per encoding and an ordinary page."""

    def __init__(self, bombs: dict[str, bytes]) -> None:
        self.bombs = bombs
        self.accept_encoding: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/docs/{name}.html", self.page)
        app.router.add_get("/sitemap.xml", self.sitemap)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    async def page(self, request: web.Request) -> web.Response:
        self.accept_encoding.append(request.headers.get("Accept-Encoding", ""))
        name = request.match_info["name"]
        if name in self.bombs:
            return web.Response(
                body=self.bombs[name],
                headers={"Content-Type": "text/html", "Content-Encoding": name},
            )
        body = f"<html><head><title>{name}</title></head><body><h1>{name}</h1>"
        body += "<p>Ordinary documentation text.</p></body></html>"
        return web.Response(text=body, content_type="text/html")

    async def sitemap(self, request: web.Request) -> web.Response:
        xml = (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{self.url()}'
            "/docs/a.html&lol2;</loc></url></urlset>"
        )
        return web.Response(text=xml, content_type="application/xml")


@pytest.fixture
async def server(bombs: dict[str, bytes]) -> AsyncIterator[Server]:
    running = Server(bombs)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama([MODEL]) as ollama:
        yield ollama


# -- 1. compression bombs ------------------------------------------------------------------

# Loads one page in a fresh interpreter and prints its peak RSS before and after, in MB.
_MEASURE = """
import asyncio, json, sys
from inference.knowledge.loaders import SourceFailed, load_site, parse_allow_private
from inference.knowledge.sources import parse_source

def peak_mb():  # VmHWM: this interpreter's own peak (ru_maxrss carries the parent's over exec)
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

async def main():
    idle = peak_mb()
    error = ""
    try:
        async for _ in load_site(parse_source(sys.argv[1]), allow=parse_allow_private("127.0.0.1")):
            pass
    except SourceFailed as exc:
        error = str(exc)
    print(json.dumps({"idle_mb": idle, "peak_mb": peak_mb(), "error": error}))

asyncio.run(main())
"""


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
async def test_a_compression_bomb_fails_its_source_in_one_line_within_bounded_memory(
    server: Server, encoding: str
) -> None:
    url = f"{server.url()}/docs/{encoding}.html"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _MEASURE, url, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    print(f"{encoding} bomb: idle {result['idle_mb']:.0f} MB, peak {result['peak_mb']:.0f} MB")
    assert result["peak_mb"] < 250, result
    assert result["peak_mb"] - result["idle_mb"] < 60, result
    error = result["error"]
    assert "\n" not in error and error.startswith(url)
    if encoding == "zstd":  # never asked for: refused before a byte of it is read
        assert "compressed as zstd, which was not asked for" in error
    else:  # decoded only up to the page cap
        assert f"too large (over {MAX_PAGE_BYTES // 1_000_000} MB)" in error
    assert server.accept_encoding == ["gzip, identity"]


async def test_a_bomb_fails_its_source_alone(
    server: Server, tmp_path: Path, fake: FakeOllama
) -> None:
    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n"})
    async with stack(tmp_path, fake) as s:
        bomb, good = await s.index(f"{server.url()}/docs/gzip.html,{docs}")
    assert not bomb.ok and "too large" in bomb.error and "\n" not in bomb.error
    assert good.ok and good.documents_added == 1


# -- 4. addresses ------------------------------------------------------------------------------


class Resolver:
    """A DNS stub: names no real resolver knows, answering the addresses given."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"unknown host {host}")
        return self.answers[host]


async def test_a_name_pointing_at_a_private_address_is_refused_unless_allowed(
    server: Server,
) -> None:
    resolver = Resolver({"docs.example.test": ["127.0.0.1"]})
    url = f"{server.url('docs.example.test')}/docs/a.html"
    with pytest.raises(SourceFailed) as refused:
        await collect(load_site(parse_source(url), resolver=resolver))
    assert str(refused.value) == (
        f"{url}: docs.example.test resolves to 127.0.0.1, a private or local address "
        "(not reached); to index it, add docs.example.test to KNOWLEDGE_ALLOW_PRIVATE"
    )
    assert server.accept_encoding == []  # nothing reached the server
    # Allowed by name or by network, the page is read from the address that was checked
    # (the name resolves nowhere but in the stub).
    for allowed in ("docs.example.test", "10.0.0.0/8, 127.0.0.0/8"):
        docs, _ = await collect(
            load_site(parse_source(url), allow=parse_allow_private(allowed), resolver=resolver)
        )
        assert docs[url].title == "a"
    assert resolver.asked == ["docs.example.test"] * 3


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "10.1.2.3",
        "100.64.0.7",
        "192.168.1.1",
        "::1",
        "fd00::5",
        "::ffff:127.0.0.1",
        "0.0.0.0",
    ],
)
async def test_metadata_private_cgnat_and_ula_addresses_are_refused(address: str) -> None:
    resolver = Resolver({"wiki.example.test": ["93.184.215.14", address]})
    with pytest.raises(SourceFailed, match="KNOWLEDGE_ALLOW_PRIVATE"):
        await collect(load_site(parse_source("http://wiki.example.test/"), resolver=resolver))


def test_an_https_source_never_goes_to_http() -> None:
    site = Site("https", "docs.example.com", "/")
    assert site.holds("https://docs.example.com/a.html")
    assert not site.holds("http://docs.example.com/a.html")
    assert "from https to http" in site.why_not("http://docs.example.com/a.html")
    assert Site("http", "docs.example.com", "/").holds("https://docs.example.com/a.html")


def test_a_bad_allow_private_entry_is_named() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        parse_allow_private("wiki.internal, 10.0.0.0/33")


# -- sitemaps --------------------------------------------------------------------------------


async def test_a_sitemap_with_entities_is_refused(server: Server) -> None:
    docs, skipped = await collect(
        load_site(parse_source(f"{server.url()}/sitemap.xml"), allow=LOCAL)
    )
    assert not docs
    assert skipped == {
        f"127.0.0.1:{server.port}": "the sitemap declares a DTD or entities (not read)"
    }


def test_sitemaps_and_sitemap_indexes_are_parsed() -> None:
    urlset = (
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<url><loc> https://d.example/a.html </loc></url>"
        "<url><loc>https://d.example/b?x=1&amp;y=2</loc></url></urlset>"
    )
    assert parse_sitemap(urlset).pages == [
        "https://d.example/a.html",
        "https://d.example/b?x=1&y=2",
    ]
    index = "<sitemapindex><sitemap><loc>https://d.example/s1</loc></sitemap></sitemapindex>"
    assert parse_sitemap(index).sitemaps == ["https://d.example/s1"]
    with pytest.raises(SitemapRefused, match="not a readable sitemap"):
        parse_sitemap("<urlset><loc>")


# -- 6. HTML conversion ----------------------------------------------------------------------


def test_a_page_of_many_headings_converts_in_one_walk_with_headings_capped() -> None:
    page = "<html><body>" + "<h2>Part</h2><p>text</p>" * 100_000 + "</body></html>"
    title, text = html_to_markdown(page, max_headings=500)
    assert title == ""
    assert text.count("## Part") == 500
    assert text.count("Part") == 100_000  # the rest stays as text
    with pytest.raises(ConversionTooSlow, match="took longer than 0 s"):
        html_to_markdown(page, budget=0.0)


def test_html_keeps_headings_code_and_drops_scripts() -> None:
    title, text = html_to_markdown(
        "<html><head><title>T</title><script>x()</script></head><body><nav>menu</nav>"
        "<main><h1>Top</h1><p>Body <!-- hidden --> text</p><pre>a = 1\nb = 2</pre>"
        "<h3>Deep <em>heading</em></h3></main></body></html>"
    )
    assert title == "T"
    assert text == "# Top\n\nBody \n text\n\n```\na = 1\nb = 2\n```\n\n### Deep heading"


# -- 7. PDFs ---------------------------------------------------------------------------------


def _blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_beyond_its_memory_or_time_is_skipped_with_the_reason(tmp_path: Path) -> None:
    pdf = _blank_pdf()
    assert pdf_text(pdf) == ""  # read within the limits: a page without text
    with pytest.raises(PdfRefused, match="needs more than 30 MB to read"):
        pdf_text(pdf, memory=30_000_000)
    with pytest.raises(PdfRefused, match=r"took longer than 0\.01 s to read"):
        pdf_text(pdf, seconds=0.01)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage\n%%EOF")
    skipped = read_file("broken.pdf", tmp_path / "broken.pdf", "pdf", "u")
    assert isinstance(skipped, Skipped) and skipped.reason.startswith("unreadable PDF")


# -- 8. files swapped for symlinks -----------------------------------------------------------


def test_a_file_swapped_for_a_symlink_after_the_walk_is_not_followed(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", {"passwd.md": "# root:x:0:0\n"})
    root = write(tmp_path / "docs", {"guide.md": "# Guide\n", "inner.md": "# Inner\n"})
    (root / "link.md").symlink_to(root / "inner.md")
    found = {item[0]: item for item in walk(root) if not isinstance(item, Skipped)}
    assert set(found) == {"guide.md", "inner.md", "link.md"}
    (root / "guide.md").unlink()
    (root / "guide.md").symlink_to(outside / "passwd.md")
    rel, path, kind = found["guide.md"]
    swapped = read_file(rel, path, kind, "u")
    assert swapped == Skipped(
        "guide.md", "became a symlink after the directory was read (not followed)"
    )
    rel, path, kind = found["link.md"]  # a symlink inside the directory: its target is read
    linked = read_file(rel, path, kind, "u")
    assert isinstance(linked, Document) and linked.title == "Inner"


# -- 5. secrets in indexed files -------------------------------------------------------------


async def test_secrets_are_redacted_at_indexing_and_secret_files_are_skipped(
    tmp_path: Path, fake: FakeOllama
) -> None:
    docs = write(
        tmp_path / "docs",
        {
            "deploy.yaml": f"ci:\n  github_token: {GITHUB_TOKEN}\n  region: eu-west-1\n",
            "runbook.md": "# Runbook\n\nConnect with postgres://app:hunter2secret@db/app\n",
            "guide.md": "# Guide\n\nNothing secret here.\n",
            "terraform.tfvars": 'db_password = "x"\n',
            "config/secrets.yaml": "api_key: abc\n",
            "app-credentials.json": "{}\n",
            ".env": "SLACK_BOT_TOKEN=xoxb-1\n",
        },
    )
    async with stack(tmp_path, fake) as s:
        [report] = await s.index(str(docs))
        assert report.ok and report.documents_added == 3
        assert report.documents_redacted == 2
        assert set(report.secret_kinds) == {"github-token", "url-password"}
        skipped = {item.id: item.reason for item in report.skipped}
        assert skipped == {
            "terraform.tfvars": "may hold secrets (such names are never indexed)",
            "config/secrets.yaml": "may hold secrets (such names are never indexed)",
            "app-credentials.json": "may hold secrets (such names are never indexed)",
        }
        embedded = "\n".join(fake.embedded_texts)
        assert GITHUB_TOKEN not in embedded and "hunter2secret" not in embedded
        [hit, *_] = await s.knowledge.search("github token region ci", scope=[])
        assert hit.document == "deploy.yaml"
        assert "[REDACTED:github-token]" in hit.text and GITHUB_TOKEN not in hit.text
        assert "eu-west-1" in hit.text  # the rest of the file is kept
        [again] = await s.index(str(docs))  # unchanged: no embedding, nothing to count
        assert again.documents_unchanged == 3 and again.documents_redacted == 0
