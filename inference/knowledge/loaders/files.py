"""Loading a directory: the text, document and code files below it.

Hidden and ``.gitignore``d paths are left out, and so are names that usually hold secrets
(``.env*``, ``*.tfvars``, ``*secret*``...). Symlinked directories are not entered; a
symlinked file is read only when it points inside the directory, and every file is opened
without following a symlink swapped in after the walk (``O_NOFOLLOW``).
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pathspec

from inference.knowledge.loaders.documents import (
    Document,
    LoadItem,
    Skipped,
    SourceFailed,
    decode,
    title_of,
)
from inference.knowledge.loaders.html import ConversionTooSlow, html_to_markdown
from inference.knowledge.loaders.pdf import PdfRefused, pdf_text

MAX_FILE_BYTES = 2_000_000
MAX_PDF_BYTES = 20_000_000
READ_BATCH = 32

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
# Names that usually hold secrets: never indexed (matched case-insensitively), except
# documentation (Markdown, reStructuredText, HTML, PDF: ``secret-rotation.md`` explains,
# it does not hold); the redaction still runs on those.
SECRET_NAMES = (".env*", "*.tfvars", "*.tfvars.json", "*secret*", "*credential*", "*.pem",
                "*.key", "id_rsa*", "id_ecdsa*", "id_ed25519*", ".netrc", ".npmrc",
                ".pypirc", "*.kdbx")  # fmt: skip


def kind_of(name: str) -> str | None:
    """How a file is read, from its name; None for files that are not indexed."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in TEXT_KINDS:
        return TEXT_KINDS[suffix]
    if suffix in CODE_LANGUAGES:
        return f"code:{CODE_LANGUAGES[suffix]}"
    if name in CODE_NAMES:
        return f"code:{CODE_NAMES[name]}"
    return None


_DOCUMENTATION = frozenset({"markdown", "rst", "html", "pdf"})


def holds_secrets(name: str) -> bool:
    """Whether a file's name says it usually holds secrets (documentation aside)."""
    if kind_of(name) in _DOCUMENTATION:
        return False
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in SECRET_NAMES)


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
    """(relative id, path to open, kind) of every file to load below ``root``, or why one
    is skipped. A symlinked file inside ``root`` is given as the file it points to."""
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
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            if entry.name.startswith("."):  # hidden (.env, .git...): never indexed
                continue
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
                path = target
            if is_dir:
                subdirs.append(path)
                continue
            if holds_secrets(entry.name):
                yield Skipped(rel, "may hold secrets (such names are never indexed)")
                continue
            kind = kind_of(entry.name)
            if kind is None:
                yield Skipped(rel, "not a text, document or code file")
                continue
            yield rel, path, kind
        stack.extend((d, specs) for d in reversed(subdirs))


def _read_bytes(path: Path, limit: int) -> bytes | str:
    """The file's bytes, or why not: opened without following a symlink (one swapped in
    after the walk is refused), only a regular file, at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the path is now a symlink
            return "became a symlink after the directory was read (not followed)"
        return f"cannot read: {exc.strerror}"
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > limit:
            return f"too large ({info.st_size // 1_000_000} MB; the cap is {limit // 1_000_000} MB)"
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            return f"cannot read: {exc.strerror}"
    if len(data) > limit:
        return f"too large (over {limit // 1_000_000} MB)"
    return data


def read_file(rel: str, path: Path, kind: str, url: str) -> LoadItem:
    """Load one file (blocking: call off the event loop)."""
    data = _read_bytes(path, MAX_PDF_BYTES if kind == "pdf" else MAX_FILE_BYTES)
    if isinstance(data, str):
        return Skipped(rel, data)
    fallback = path.name
    if kind == "pdf":
        try:
            text = pdf_text(data)
        except PdfRefused as exc:
            return Skipped(rel, str(exc))
        if not text.strip():
            return Skipped(rel, "PDF without extractable text")
        return Document(id=rel, title=fallback, url=url, text=text, kind="text")
    decoded = decode(data)
    if decoded is None:
        return Skipped(rel, "binary content")
    text = decoded
    if not text.strip():
        return Skipped(rel, "empty")
    if kind == "html":
        try:
            title, text = html_to_markdown(text)
        except ConversionTooSlow as exc:
            return Skipped(rel, str(exc))
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
