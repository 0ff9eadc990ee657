"""Loading documents from sources: a directory, a git checkout, a website or sitemap.

Bad input never stops a source: each file or page that cannot be used is reported as
``Skipped`` with its reason, and the rest goes on. File reading and parsing run off the
event loop (``asyncio.to_thread``); pages are fetched with httpx, redirects checked by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
import pathspec
from bs4 import BeautifulSoup

from inference.knowledge.sources import Source

MAX_FILE_BYTES = 2_000_000
MAX_PDF_BYTES = 20_000_000
MAX_PDF_PAGES = 500
MAX_PAGE_BYTES = 3_000_000
MAX_PAGES = 500
MAX_REDIRECTS = 5
READ_BATCH = 32
PAGE_CONCURRENCY = 4
GIT_TIMEOUT_SECONDS = 300.0

TEXT_KINDS = {".md": "markdown", ".markdown": "markdown", ".mdx": "markdown", ".rst": "rst",
              ".txt": "text", ".text": "text", ".adoc": "text", ".html": "html",
              ".htm": "html", ".pdf": "pdf"}  # fmt: skip
CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "js", ".jsx": "js", ".mjs": "js", ".ts": "ts",
    ".tsx": "ts", ".go": "go", ".java": "java", ".kt": "kotlin", ".kts": "kotlin",
    ".rs": "rust", ".rb": "ruby", ".php": "php", ".cs": "csharp", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".scala": "scala", ".swift": "swift",
    ".lua": "lua", ".sol": "sol", ".proto": "proto", ".ex": "elixir", ".exs": "elixir",
    ".sh": "text", ".bash": "text", ".sql": "text", ".yaml": "text", ".yml": "text",
    ".toml": "text", ".ini": "text", ".cfg": "text", ".json": "text", ".tf": "text",
}  # fmt: skip
CODE_NAMES = {"Dockerfile": "text", "Makefile": "text", "Jenkinsfile": "text"}


@dataclass(frozen=True, slots=True)
class Document:
    """One loaded document."""

    id: str  # stable within its source: the relative path or the page URL
    title: str
    url: str  # a link a person can open
    text: str
    kind: str  # markdown, rst, text, html-as-markdown ("markdown"), pdf ("text"), code:<lang>

    @property
    def content_hash(self) -> str:
        """Changes when anything stored for the document would change."""
        digest = hashlib.sha256()
        for part in (self.kind, self.title, self.url, self.text):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file or page not indexed, and why. ``keep``: a passing failure (a 5xx, a timeout):
    what the store already holds of it stays."""

    id: str
    reason: str
    keep: bool = False


class SourceFailed(Exception):
    """The source as a whole cannot be read (missing directory, unreachable remote or site)."""


LoadItem = Document | Skipped


# -- text helpers --------------------------------------------------------------------------


def decode(data: bytes) -> str | None:
    """Text from bytes: UTF-8 (BOM allowed), else UTF-16 with a BOM, else Windows-1252 /
    Latin-1; None for binary content (NUL bytes or mostly control characters)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    head = data[:8192]
    if b"\x00" in head:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\n\r\t\f\v")
    if controls > max(8, len(text[:8192]) // 20):
        return None
    return text


_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_RST_TITLE = re.compile(
    r"^(?:([=\-~*#^\"+`'])\1{2,}\n)?(\S[^\n]{0,200})\n([=\-~*#^\"+`'])\3{2,}\s*$", re.MULTILINE
)


def title_of(text: str, kind: str, fallback: str) -> str:
    """The first top heading of Markdown / reStructuredText, else ``fallback``."""
    if kind == "markdown":
        match = _MD_TITLE.search(text[:20000])
        if match:
            return match.group(1).strip()[:200]
    elif kind == "rst":
        match = _RST_TITLE.search(text[:20000])
        if match:
            return match.group(2).strip()[:200]
    return fallback


def html_to_markdown(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page: scripts, styles and navigation dropped, headings kept
    as Markdown headings so the splitter can follow them."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg", "iframe", "nav",
                     "header", "footer", "form"]):  # fmt: skip
        tag.decompose()
    title = ""
    if soup.title is not None and soup.title.string:
        title = soup.title.string.strip()
    main = soup.find("main") or soup.find("article") or soup.body or soup
    for level in range(1, 7):
        for heading in main.find_all(f"h{level}"):
            text = heading.get_text(" ", strip=True)
            if not title and level == 1:
                title = text
            heading.replace_with(f"\n\n{'#' * level} {text}\n\n")
    for pre in main.find_all("pre"):
        pre.replace_with(f"\n\n```\n{pre.get_text()}\n```\n\n")
    text = main.get_text("\n")
    text = re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text)
    return title[:200], text.strip()


def pdf_text(path: Path) -> str:
    """The text of a PDF's pages (raises on a broken file)."""
    from pypdf import PdfReader

    reader = PdfReader(str(path), strict=False)
    pages = []
    for number, page in enumerate(reader.pages):
        if number >= MAX_PDF_PAGES:
            break
        pages.append(page.extract_text() or "")
    return "\n\n".join(pages)


# -- directories -----------------------------------------------------------------------------


def _kind_of(name: str) -> str | None:
    suffix = os.path.splitext(name)[1].lower()
    if suffix in TEXT_KINDS:
        return TEXT_KINDS[suffix]
    if suffix in CODE_LANGUAGES:
        return f"code:{CODE_LANGUAGES[suffix]}"
    if name in CODE_NAMES:
        return f"code:{CODE_NAMES[name]}"
    return None


def _ignore_spec(directory: Path) -> pathspec.GitIgnoreSpec | None:
    path = directory / ".gitignore"
    try:
        if path.is_file() and not path.is_symlink():
            lines = path.read_text("utf-8", errors="replace").splitlines()
            return pathspec.GitIgnoreSpec.from_lines(lines)
    except OSError:
        return None
    return None


def walk(root: Path) -> Iterator[tuple[str, Path, str] | Skipped]:
    """(relative id, path, kind) of every file to load below ``root``, or why one is skipped.

    Hidden and ``.gitignore``d paths are left out; symlinked directories are not entered
    (no loops); a symlinked file is read only when it points inside ``root``.
    """
    root = root.resolve()
    stack: list[tuple[Path, list[tuple[Path, pathspec.GitIgnoreSpec]]]] = [(root, [])]
    while stack:
        directory, specs = stack.pop()
        own = _ignore_spec(directory)
        if own is not None:
            specs = [*specs, (directory, own)]
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(str(directory.relative_to(root)) or ".", f"cannot list: {exc.strerror}")
            continue
        subdirs: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                is_link = entry.is_symlink()
            except OSError:
                continue
            if any(
                spec.match_file(path.relative_to(base).as_posix() + ("/" if is_dir else ""))
                for base, spec in specs
            ):
                continue
            if is_link:
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    yield Skipped(rel, "broken symlink or symlink loop")
                    continue
                if not target.is_relative_to(root):
                    yield Skipped(rel, "symlink out of the directory (not followed)")
                    continue
                if target.is_dir():
                    yield Skipped(rel, "symlinked directory (not followed)")
                    continue
            if is_dir:
                subdirs.append(path)
                continue
            kind = _kind_of(entry.name)
            if kind is None:
                yield Skipped(rel, "not a text, document or code file")
                continue
            yield rel, path, kind
        stack.extend((d, specs) for d in reversed(subdirs))


def read_file(rel: str, path: Path, kind: str, url: str) -> LoadItem:
    """Load one file (blocking: call off the event loop)."""
    try:
        info = path.stat()
    except OSError as exc:
        return Skipped(rel, f"cannot read: {exc.strerror}")
    if not stat.S_ISREG(info.st_mode):
        return Skipped(rel, "not a regular file")
    limit = MAX_PDF_BYTES if kind == "pdf" else MAX_FILE_BYTES
    if info.st_size > limit:
        return Skipped(
            rel, f"too large ({info.st_size // 1_000_000} MB; the cap is {limit // 1_000_000} MB)"
        )
    fallback = path.name
    if kind == "pdf":
        try:
            text = pdf_text(path)
        except Exception as exc:  # pypdf raises many kinds on broken files
            return Skipped(rel, f"unreadable PDF ({type(exc).__name__})")
        if not text.strip():
            return Skipped(rel, "PDF without extractable text")
        return Document(id=rel, title=fallback, url=url, text=text, kind="text")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Skipped(rel, f"cannot read: {exc.strerror}")
    decoded = decode(data)
    if decoded is None:
        return Skipped(rel, "binary content")
    text = decoded
    if not text.strip():
        return Skipped(rel, "empty")
    if kind == "html":
        title, text = html_to_markdown(text)
        return Document(id=rel, title=title or fallback, url=url, text=text, kind="markdown")
    return Document(id=rel, title=title_of(text, kind, fallback), url=url, text=text, kind=kind)


async def load_directory(
    root: Path, *, url_for: Callable[[str], str] | None = None
) -> AsyncIterator[LoadItem]:
    """Every document below ``root``, read off the event loop in small batches."""
    if not await asyncio.to_thread(root.is_dir):
        raise SourceFailed(f"{root} is not a directory")
    files = await asyncio.to_thread(lambda: list(walk(root)))
    batch: list[tuple[str, Path, str]] = []

    def link(rel: str) -> str:
        return url_for(rel) if url_for is not None else str(root / rel)

    def read(items: list[tuple[str, Path, str]]) -> list[LoadItem]:
        return [read_file(rel, path, kind, link(rel)) for rel, path, kind in items]

    for item in files:
        if isinstance(item, Skipped):
            yield item
            continue
        batch.append(item)
        if len(batch) >= READ_BATCH:
            for loaded in await asyncio.to_thread(read, batch):
                yield loaded
            batch = []
    if batch:
        for loaded in await asyncio.to_thread(read, batch):
            yield loaded


# -- git -------------------------------------------------------------------------------------


async def run_git(*args: str, cwd: Path | None = None, timeout: float = GIT_TIMEOUT_SECONDS) -> str:
    """Run git without prompting for credentials; its output, or ``SourceFailed``."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SourceFailed(f"git {args[0]} took longer than {timeout:.0f} s") from None
    if process.returncode != 0:
        message = err.decode("utf-8", "replace").strip().splitlines()
        detail = message[-1] if message else f"exit {process.returncode}"
        raise SourceFailed(f"git {args[0]} failed: {redact_url(detail)}")
    return out.decode("utf-8", "replace").strip()


def redact_url(text: str) -> str:
    """Text with any ``user:password@`` in URLs removed."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1", text)


def web_url(remote: str, commit: str, path: str) -> str | None:
    """The page of ``path`` at ``commit`` on a GitHub/GitLab-style https remote."""
    parts = urlsplit(remote)
    if parts.scheme != "https" or not parts.hostname:
        return None
    repo = parts.path.rstrip("/").removesuffix(".git")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    middle = "/-/blob/" if "gitlab" in parts.hostname else "/blob/"
    return f"https://{host}{repo}{middle}{commit}/{path}"


async def checkout(source: Source, cache: Path) -> tuple[Path, str]:
    """Fetch a git source at its ref into ``cache`` (again on every call); (path, commit)."""
    key = hashlib.sha256(source.location.encode()).hexdigest()[:16]
    path = cache / key
    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
    if not (path / ".git").exists():
        await run_git("init", "--quiet", str(path))
    ref = source.ref or "HEAD"
    await run_git("fetch", "--quiet", "--depth", "1", "--", source.location, ref, cwd=path)
    await run_git("checkout", "--quiet", "--force", "--detach", "FETCH_HEAD", cwd=path)
    await run_git("clean", "--quiet", "-fdx", cwd=path)
    commit = await run_git("rev-parse", "HEAD", cwd=path)
    return path, commit


async def load_git(source: Source, cache: Path) -> AsyncIterator[LoadItem]:
    """Every document of a git source at its ref."""
    path, commit = await checkout(source, cache)

    def url_for(rel: str) -> str:
        return web_url(source.location, commit, rel) or f"{redact_url(source.location)}#{rel}"

    async for item in load_directory(path, url_for=url_for):
        yield item


# -- websites --------------------------------------------------------------------------------


def _in_site(url: str, host: str, prefix: str) -> bool:
    parts = urlsplit(url)
    return (
        parts.scheme in ("http", "https") and parts.netloc == host and parts.path.startswith(prefix)
    )


_LOC = re.compile(r"<loc>\s*([^<\s]+)\s*</loc>", re.IGNORECASE)


class _Fetcher:
    def __init__(self, client: httpx.AsyncClient, host: str, prefix: str) -> None:
        self.client = client
        self.host = host
        self.prefix = prefix

    async def get(self, url: str) -> tuple[str, str, str] | Skipped:
        """(final url, content type, text) or why not."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self.client.stream("GET", current) as response:
                    if response.is_redirect:
                        target = urljoin(current, response.headers.get("location", ""))
                        if not _in_site(target, self.host, self.prefix):
                            return Skipped(url, f"redirect off the site to {redact_url(target)}")
                        current = urldefrag(target).url
                        continue
                    if response.status_code >= 500 or response.status_code == 429:
                        return Skipped(url, f"HTTP {response.status_code}", keep=True)
                    if response.status_code != 200:
                        return Skipped(url, f"HTTP {response.status_code}")
                    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > MAX_PAGE_BYTES:
                        return Skipped(url, f"too large ({declared // 1_000_000} MB)")
                    body = bytearray()
                    async for piece in response.aiter_bytes():
                        body.extend(piece)
                        if len(body) > MAX_PAGE_BYTES:
                            return Skipped(
                                url, f"too large (over {MAX_PAGE_BYTES // 1_000_000} MB)"
                            )
                    return current, ctype, _page_text(bytes(body), response.charset_encoding)
            except httpx.HTTPError as exc:
                return Skipped(url, f"cannot fetch ({type(exc).__name__})", keep=True)
        return Skipped(url, "too many redirects")


def _page_text(body: bytes, charset: str | None) -> str:
    """A page's text in the charset its server declared (one Python knows), else as
    ``decode`` reads it; "" for binary content."""
    if charset:
        try:
            return body.decode(charset, "replace")
        except LookupError:
            pass
    return decode(body) or ""


def _links(html: str, base: str) -> list[str]:
    soup = BeautifulSoup(html, "html.parser")
    found = []
    for tag in soup.find_all("a", href=True):
        href = str(tag["href"]).strip()
        if href and not href.startswith(("mailto:", "javascript:", "#")):
            found.append(urldefrag(urljoin(base, href)).url)
    return found


async def load_site(
    source: Source, *, max_pages: int = MAX_PAGES, timeout: float = 20.0
) -> AsyncIterator[LoadItem]:
    """The start page and the pages under its path prefix it links to (breadth first,
    capped), or every page of a sitemap."""
    start = urldefrag(source.location).url
    parts = urlsplit(start)
    host = parts.netloc
    sitemap = source.is_sitemap
    prefix = "/" if sitemap else parts.path[: parts.path.rfind("/") + 1] or "/"
    async with httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout, connect=5.0),
        headers={"User-Agent": "chatbot-indexer/1"},
    ) as client:
        fetcher = _Fetcher(client, host, prefix)
        first = await fetcher.get(start)
        if isinstance(first, Skipped):
            raise SourceFailed(f"{redact_url(start)}: {first.reason}")
        queue: list[str] = []
        seen: set[str] = {start}
        if sitemap:
            queue = await _sitemap_pages(fetcher, first[2], host, max_pages)
            seen.update(queue)
        else:
            queue = [start]
        indexed: set[str] = set()
        capped = False
        prefetched: dict[str, tuple[str, str, str] | Skipped] = {} if sitemap else {start: first}
        while queue:
            batch, queue = queue[:PAGE_CONCURRENCY], queue[PAGE_CONCURRENCY:]
            results = await asyncio.gather(*(_fetch_known(fetcher, u, prefetched) for u in batch))
            for url, result in zip(batch, results, strict=True):
                if isinstance(result, Skipped):
                    yield result
                    continue
                final, ctype, body = result
                if final != url:  # redirected inside the site: index the page once, by its URL
                    if final in indexed:
                        continue
                    seen.add(final)
                indexed.add(final)
                if ctype in ("text/html", "application/xhtml+xml", ""):
                    title, text = await asyncio.to_thread(html_to_markdown, body)
                    if not sitemap:
                        for link in _links(body, final):
                            if link not in seen and _in_site(link, host, prefix):
                                seen.add(link)
                                if len(seen) > max_pages:
                                    capped = True
                                    continue
                                queue.append(link)
                    kind = "markdown"
                elif ctype.startswith("text/"):
                    title, text, kind = "", body, "markdown" if "markdown" in ctype else "text"
                else:
                    yield Skipped(url, f"not a web page ({ctype})")
                    continue
                if not text.strip():
                    yield Skipped(url, "no text")
                    continue
                yield Document(id=final, title=title or final, url=final, text=text, kind=kind)
        if capped:
            yield Skipped(start, f"crawl capped at {max_pages} pages; the rest was not indexed")


async def _fetch_known(
    fetcher: _Fetcher, url: str, prefetched: dict[str, tuple[str, str, str] | Skipped]
) -> tuple[str, str, str] | Skipped:
    if url in prefetched:
        return prefetched.pop(url)
    return await fetcher.get(url)


async def _sitemap_pages(fetcher: _Fetcher, xml: str, host: str, max_pages: int) -> list[str]:
    pages: list[str] = []
    nested = 0
    pending = [xml]
    while pending and len(pages) < max_pages:
        for loc in _LOC.findall(pending.pop(0)):
            loc = urldefrag(loc.replace("&amp;", "&")).url
            if urlsplit(loc).netloc != host:
                continue
            if urlsplit(loc).path.endswith(".xml") and nested < 20:
                nested += 1
                result = await fetcher.get(loc)
                if not isinstance(result, Skipped):
                    pending.append(result[2])
            elif loc not in pages:
                pages.append(loc)
    return pages[:max_pages]


async def load(source: Source, *, git_cache: Path) -> AsyncIterator[LoadItem]:
    """Every document of a source; raises ``SourceFailed`` when it cannot be read at all."""
    if source.kind == "directory":
        items = load_directory(Path(source.location))
    elif source.kind == "git":
        items = load_git(source, git_cache)
    else:
        items = load_site(source)
    async for item in items:
        yield item
