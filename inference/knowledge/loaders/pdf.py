"""PDF text, extracted in a child process with a memory cap (``RLIMIT_AS``) and a time
limit: a PDF built to exhaust pypdf costs that child, never the bot.

The child is a bare interpreter (``python -I -c _CHILD MAX_BYTES MAX_PAGES``) that imports
only pypdf: it reads the PDF on stdin and writes its text to stdout (UTF-8).
"""

from __future__ import annotations

import subprocess
import sys

MAX_PDF_PAGES = 500
PDF_MEMORY_BYTES = 1_000_000_000
PDF_SECONDS = 60.0


_CHILD = """
import io, resource, sys
memory, max_pages = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
try:
    from pypdf import PdfReader
    reader = PdfReader(io.BytesIO(sys.stdin.buffer.read()), strict=False)
    pages = []
    for number, page in enumerate(reader.pages):
        if number >= max_pages:
            break
        pages.append(page.extract_text() or "")
    sys.stdout.buffer.write("\\n\\n".join(pages).encode("utf-8", "replace"))
except MemoryError:
    sys.exit(3)
except Exception as exc:  # pypdf raises many kinds on broken files
    print(type(exc).__name__, file=sys.stderr)
    sys.exit(2)
"""


class PdfRefused(Exception):
    """The PDF could not be read within the limits, or is broken; the message says which."""


def pdf_text(
    data: bytes,
    *,
    memory: int = PDF_MEMORY_BYTES,
    seconds: float = PDF_SECONDS,
    max_pages: int = MAX_PDF_PAGES,
) -> str:
    """The text of a PDF's pages (blocking: call off the event loop); ``PdfRefused``
    when it is broken or exceeds ``memory`` bytes or ``seconds``."""
    command = [sys.executable, "-I", "-c", _CHILD, str(memory), str(max_pages)]
    try:
        done = subprocess.run(  # our own interpreter and module
            command, input=data, capture_output=True, timeout=seconds, check=False
        )
    except subprocess.TimeoutExpired:
        raise PdfRefused(f"took longer than {seconds:g} s to read") from None
    if done.returncode == 0:
        return done.stdout.decode("utf-8", "replace")
    if done.returncode == 3 or b"MemoryError" in done.stderr:
        raise PdfRefused(f"needs more than {memory // 1_000_000} MB to read")
    error = done.stderr.decode("utf-8", "replace").strip().splitlines()
    name = error[-1] if error else f"exit {done.returncode}"
    raise PdfRefused(f"unreadable PDF ({name[:80]})")
