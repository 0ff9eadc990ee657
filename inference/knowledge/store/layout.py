"""The embedded store's directory (``KNOWLEDGE_STORE`` = a path), all synchronous file work
that the Edge backend runs off the event loop:

    <store>/shards/<name>/       one Qdrant Edge shard per (embedding model, dimension)
    <store>/shards/<name>.json   its embedding model and dimension (written once it exists)
    <store>/active.json          the shard answers are served from (replaced atomically)
    <store>/chatbot-sources.json the source statuses (readable while a bot holds the store)
    <store>/chatbot.lock         held (flock) by the one process that has the store open

The old format (qdrant-client's local mode, before Qdrant Edge) kept ``meta.json`` and a
``collection/`` folder at the top: it is detected, and removed once a new index is active.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from inference.knowledge.store.records import Active, SourceStatus, StoreLocked

OLD_FORMAT = ("collection", "meta.json", ".lock")


class Layout:
    """Paths and small files of one embedded store directory."""

    def __init__(self, root: Path) -> None:
        """``root``: the store directory (made on ``lock``)."""
        self.root = root
        self.shards = root / "shards"
        self.pointer = root / "active.json"
        self.status_file = root / "chatbot-sources.json"
        self.lock_file = root / "chatbot.lock"

    def shard(self, name: str) -> Path:
        """The directory of one shard."""
        return self.shards / name

    def _meta(self, name: str) -> Path:
        return self.shards / f"{name}.json"

    def lock(self) -> int:
        """Make the directory and hold its lock; the descriptor, to close on release.
        Raises ``StoreLocked`` when another process (or store object) holds it."""
        self.shards.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StoreLocked(
                f"the embedded store {self.root} is in use by another process "
                "(a running `chatbot serve`?)"
            ) from exc
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        """Release the lock taken by ``lock``."""
        os.close(fd)  # closing the descriptor releases the flock

    def old_format(self) -> bool:
        """Whether the directory holds an index of the old format."""
        return (self.root / "collection").is_dir() or (self.root / "meta.json").is_file()

    def remove_old_format(self) -> None:
        """Delete the old format's files (the new index replaced them)."""
        for name in OLD_FORMAT:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # -- shards and the pointer -----------------------------------------------------------

    def described(self, name: str) -> Active | None:
        """The shard ``name`` with its model and dimension, None if it is not complete."""
        data = _read_json(self._meta(name))
        if not isinstance(data, dict) or not self.shard(name).is_dir():
            return None
        return Active(name, str(data.get("embedding_model", "")), int(data.get("dimension") or 0))

    def describe_shard(self, name: str, model: str, dimension: int) -> None:
        """Record a new shard's model and dimension (it exists from then on)."""
        _write_json(self._meta(name), {"embedding_model": model, "dimension": dimension})

    def names(self) -> list[str]:
        """Every complete shard."""
        if not self.shards.is_dir():
            return []
        return sorted(p.stem for p in self.shards.glob("*.json") if self.shard(p.stem).is_dir())

    def remove_shard(self, name: str) -> None:
        """Delete a shard (its description first: a half-deleted one is not listed)."""
        self._meta(name).unlink(missing_ok=True)
        shutil.rmtree(self.shard(name), ignore_errors=True)

    def active_name(self) -> str | None:
        """The shard answers are served from, as the pointer says."""
        data = _read_json(self.pointer)
        return str(data["shard"]) if isinstance(data, dict) and data.get("shard") else None

    def point_at(self, name: str) -> None:
        """Serve answers from ``name`` (an atomic replace: a reader sees the old or the new)."""
        _write_json(self.pointer, {"shard": name})

    # -- statuses -------------------------------------------------------------------------

    def statuses(self) -> dict[str, SourceStatus]:
        """The recorded source statuses."""
        items = _read_json(self.status_file)
        if not isinstance(items, list):
            return {}
        found = [SourceStatus.from_payload(i) for i in items if isinstance(i, dict)]
        return {s.source: s for s in found}

    def save_statuses(self, statuses: dict[str, SourceStatus]) -> None:
        """Replace the recorded statuses."""
        _write_json(self.status_file, [s.payload() for s in statuses.values()])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
