"""Redaction benchmark: what redacting secrets costs per document, now that every changed
document is redacted when it is indexed (not only prompts on the premium route).

Redacts this repository's own Python and Markdown files (code, prose, and the redaction
tests, which are full of secrets) and prints milliseconds per document and MB/s.

Run: `python -m bench.redaction`.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

from bot.redact import redact

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    files = sorted(
        p
        for pattern in (
            "bot/*.py",
            "adapters/**/*.py",
            "inference/**/*.py",
            "tests/*.py",
            "docs/*.md",
        )
        for p in ROOT.glob(pattern)
    )
    texts = [p.read_text("utf-8", errors="replace") for p in files]
    size = sum(len(t) for t in texts)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        redacted = sum(1 for t in texts if redact(t).changed)
        best = min(best, time.perf_counter() - started)
    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(f"{len(texts)} documents, {size / 1e6:.1f} MB, {redacted} with something redacted")
    print(f"redaction: {best / len(texts) * 1e3:.2f} ms per document, {size / best / 1e6:.1f} MB/s")


if __name__ == "__main__":
    main()
