"""Git sources: fetched at their ref into a cache directory, then read like a directory.

git runs with a minimal environment (no Slack, OpenAI or Teams secrets), no system
config, only the https and ssh protocols (file too when the source names a local
repository), in its own process group: on a timeout or a cancel the whole group goes
(an ``ssh`` child included), so a remote that hangs fails its source within the timeout.
A checkout larger than ``MAX_CHECKOUT_BYTES`` is refused before it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from inference.knowledge.loaders.documents import LoadItem, SourceFailed
from inference.knowledge.loaders.files import load_directory
from inference.knowledge.sources import Source
from inference.urls import public_url

GIT_TIMEOUT_SECONDS = 300.0
MAX_CHECKOUT_BYTES = 1_000_000_000
# What git may see of our environment: where programs and the home directory are, the ssh
# agent, proxies and certificates, and the operator's own GIT_* settings.
_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "SSH_AUTH_SOCK", "SSL_CERT_FILE", "SSL_CERT_DIR",
           "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
           "TMPDIR")  # fmt: skip


def git_env() -> dict[str, str]:
    """The environment git runs with."""
    env = {k: v for k, v in os.environ.items() if k in _PASSED or k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", GIT_CONFIG_NOSYSTEM="1")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=20")
    return env


def protocols(location: str | None) -> list[str]:
    """git options allowing https and ssh only, and file when ``location`` is local."""
    options = ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always",
               "-c", "protocol.ssh.allow=always"]  # fmt: skip
    if location is not None and (
        urlsplit(location).scheme == "file" or location.startswith(("/", ".", "~"))
    ):
        options += ["-c", "protocol.file.allow=always"]
    return options


async def run_git(
    *args: str,
    cwd: Path | None = None,
    timeout: float = GIT_TIMEOUT_SECONDS,
    location: str | None = None,
) -> str:
    """Run git (``location``: the remote it may reach); its output, or ``SourceFailed``."""
    process = await asyncio.create_subprocess_exec(
        "git", *protocols(location), *args, cwd=cwd, env=git_env(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout):  # (asyncio.wait_for may lose a cancellation)
            out, err = await process.communicate()
    except TimeoutError:
        await _kill_group(process)
        raise SourceFailed(f"git {args[0]} took longer than {timeout:.0f} s") from None
    except BaseException:  # cancelled (Ctrl-C, shutdown): nothing of git stays behind
        await _kill_group(process)
        raise
    if process.returncode != 0:
        message = err.decode("utf-8", "replace").strip().splitlines()
        detail = message[-1] if message else f"exit {process.returncode}"
        raise SourceFailed(f"git {args[0]} failed: {public_url(detail)}")
    return out.decode("utf-8", "replace").strip()


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill git and every process it started (ssh keeps the pipes open otherwise). git leads
    its own process group, so the group's kill is git's too: no `process.kill()` after it,
    whose poll could reap git before asyncio's child watcher does (which then logs "Unknown
    child process pid")."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await asyncio.shield(process.wait())


def web_url(remote: str, commit: str, path: str) -> str | None:
    """The page of ``path`` at ``commit`` on a GitHub/GitLab-style https remote."""
    parts = urlsplit(remote)
    if parts.scheme != "https" or not parts.hostname:
        return None
    repo = parts.path.rstrip("/").removesuffix(".git")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    middle = "/-/blob/" if "gitlab" in parts.hostname else "/blob/"
    return f"https://{host}{repo}{middle}{commit}/{path}"


async def checkout(
    source: Source,
    cache: Path,
    *,
    timeout: float = GIT_TIMEOUT_SECONDS,
    max_bytes: int = MAX_CHECKOUT_BYTES,
) -> tuple[Path, str]:
    """Fetch a git source at its ref into ``cache`` (again on every call); (path, commit).
    ``timeout`` bounds each git command."""
    key = hashlib.sha256(source.location.encode()).hexdigest()[:16]
    path = cache / key
    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
    if not (path / ".git").exists():
        await run_git("init", "--quiet", str(path), timeout=timeout)
    ref = source.ref or "HEAD"
    await run_git(
        "fetch", "--quiet", "--depth", "1", "--", source.location, ref,
        cwd=path, timeout=timeout, location=source.location,
    )  # fmt: skip
    listing = await run_git("ls-tree", "-r", "-l", "FETCH_HEAD", cwd=path, timeout=timeout)
    size = sum(_blob_size(line) for line in listing.splitlines())
    if size > max_bytes:
        raise SourceFailed(
            f"the checkout would be {size // 1_000_000} MB; the cap is {max_bytes // 1_000_000} MB"
        )
    await run_git("checkout", "--quiet", "--force", "--detach", "FETCH_HEAD", cwd=path,
                  timeout=timeout)  # fmt: skip
    await run_git("clean", "--quiet", "-fdx", cwd=path, timeout=timeout)
    commit = await run_git("rev-parse", "HEAD", cwd=path, timeout=timeout)
    return path, commit


def _blob_size(line: str) -> int:
    """The size column of one ``git ls-tree -l`` line (0 for submodules and trees)."""
    meta = line.split("\t", 1)[0].split()
    return int(meta[3]) if len(meta) == 4 and meta[3].isdigit() else 0


async def load_git(
    source: Source, cache: Path, *, timeout: float = GIT_TIMEOUT_SECONDS
) -> AsyncIterator[LoadItem]:
    """Every document of a git source at its ref."""
    path, commit = await checkout(source, cache, timeout=timeout)

    def url_for(rel: str) -> str:
        return web_url(source.location, commit, rel) or f"{public_url(source.location)}#{rel}"

    async for item in load_directory(path, url_for=url_for):
        yield item
