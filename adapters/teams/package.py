"""The Teams app package: manifest.json and the two icons, zipped for upload.

The icons are drawn here and encoded as PNG with zlib and struct, so building the package
needs no image library: a 192x192 color icon (a white chat bubble with a code prompt on
the accent color) and the 32x32 outline icon Teams requires (white on transparent).
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.teams.ids import is_guid
from bot.suggestions import TITLE_LIMIT, Suggestion, suggestions

MANIFEST_VERSION = "1.30"  # the current app manifest schema (Microsoft 365 app manifest)
MANIFEST_SCHEMA = (
    f"https://developer.microsoft.com/json-schemas/teams/v{MANIFEST_VERSION}/"
    "MicrosoftTeams.schema.json"
)
ACCENT = (0x46, 0x47, 0xC1)  # Teams' purple
SCOPES = ("personal", "team", "groupChat")
COMMANDS = (
    ("/premium", "Answer with the premium model: /premium <question>"),
    ("/reset", "Forget this conversation (only this chat or thread)"),
    ("/help", "What I can do and the commands I know"),
)

DEFAULT_OUTPUT = "teams-app.zip"

Pixel = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class AppInfo:
    """What the manifest says about the app; the defaults suit an internal deployment."""

    app_id: str
    # The same name as the Slack app (slack/manifest.*.yml): one bot, one name.
    name: str = "Chatbot"
    full_name: str = "Chatbot — self-hosted AI assistant"
    version: str = "1.0.0"
    developer: str = "Your engineering team"
    website_url: str = "https://example.com/chatbot"
    privacy_url: str = "https://example.com/chatbot/privacy"
    terms_url: str = "https://example.com/chatbot/terms"
    # Prompt starters offered in the personal chat (the same suggestions as Slack's DM).
    starters: tuple[Suggestion, ...] = ()


def prompt_starters(found: Sequence[Suggestion]) -> tuple[Suggestion, ...]:
    """The suggestions Teams can offer: a starter sends its title, at most 32 characters, so
    a longer message cannot be one."""
    return tuple(s for s in found if len(s.message) <= TITLE_LIMIT)


def manifest(info: AppInfo) -> dict[str, Any]:
    """The app manifest: one bot in personal, team and group chat scopes, with its commands."""
    commands = [{"title": title, "description": text} for title, text in COMMANDS]
    # In the personal chat the list also holds the prompt starters: Teams shows them when
    # the chat opens and sends a starter's title when it is picked.
    starters = [{"title": s.message, "description": s.title[:128]} for s in info.starters]
    return {
        "$schema": MANIFEST_SCHEMA,
        "manifestVersion": MANIFEST_VERSION,
        "version": info.version,
        "id": info.app_id,
        "developer": {
            "name": info.developer,
            "websiteUrl": info.website_url,
            "privacyUrl": info.privacy_url,
            "termsOfUseUrl": info.terms_url,
        },
        "name": {"short": info.name[:30], "full": info.full_name[:100]},
        "description": {
            "short": "Coding answers from a self-hosted model, in chats and channels.",
            "full": (
                "Ask programming questions and get answers from the company's self-hosted model "
                "(your code stays on company servers). Chat with the bot personally, or "
                "@-mention it in a channel or group chat: each thread is its own conversation "
                "and the bot remembers it. Commands, typed after the mention: /premium "
                "<question> answers with the premium model, /reset forgets the conversation, "
                "/help lists the commands."
            ),
        },
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": "#{:02X}{:02X}{:02X}".format(*ACCENT),
        "bots": [
            {
                "botId": info.app_id,
                "scopes": list(SCOPES),
                "supportsFiles": False,
                "isNotificationOnly": False,
                # One list per scope, each offering the same commands.
                "commandLists": [
                    {
                        "scopes": [scope],
                        "commands": commands + starters if scope == "personal" else commands,
                    }
                    for scope in SCOPES
                ],
            }
        ],
        "validDomains": [],
    }


def png(width: int, height: int, pixel: Callable[[int, int], Pixel]) -> bytes:
    """An RGBA PNG image; ``pixel(x, y)`` gives each pixel's colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _in_rounded_rect(x: float, y: float, box: tuple[float, float, float, float], r: float) -> bool:
    left, top, right, bottom = box
    if not (left <= x <= right and top <= y <= bottom):
        return False
    cx = min(max(x, left + r), right - r)
    cy = min(max(y, top + r), bottom - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _bubble(u: float, v: float) -> bool:
    """A speech bubble with a tail, in unit coordinates (0..1)."""
    if _in_rounded_rect(u, v, (0.12, 0.16, 0.88, 0.70), 0.12):
        return True
    # The tail: a triangle below the bubble's lower left.
    return 0.70 <= v <= 0.86 and 0.24 <= u <= 0.24 + (0.86 - v) * 1.2


def _prompt(u: float, v: float) -> bool:
    """A '>_' code prompt inside the bubble."""
    stroke = 0.055
    # '>' : two strokes meeting at (0.44, 0.43)
    for y0, y1 in ((0.30, 0.43), (0.56, 0.43)):
        t = (v - y0) / (y1 - y0) if y1 != y0 else 0
        if 0 <= t <= 1 and abs(u - (0.30 + t * 0.14)) <= stroke:
            return True
    # '_' : a bar under the right half
    return 0.50 <= u <= 0.70 and 0.53 <= v <= 0.58


def color_icon(size: int = 192) -> bytes:
    """The full-colour icon: white bubble and accent-coloured prompt on the accent colour."""
    background: Pixel = (*ACCENT, 255)
    white: Pixel = (255, 255, 255, 255)

    def pixel(x: int, y: int) -> Pixel:
        u, v = (x + 0.5) / size, (y + 0.5) / size
        if _bubble(u, v):
            return background if _prompt(u, v) else white
        return background

    return png(size, size, pixel)


def outline_icon(size: int = 32) -> bytes:
    """The outline icon: the bubble's outline in white on a transparent background."""
    white: Pixel = (255, 255, 255, 255)
    clear: Pixel = (0, 0, 0, 0)
    edge = 2.0 / size

    def pixel(x: int, y: int) -> Pixel:
        u, v = (x + 0.5) / size, (y + 0.5) / size
        if not _bubble(u, v):
            return clear
        inner = all(_bubble(u + du, v + dv) for du in (-edge, edge) for dv in (-edge, edge))
        return white if not inner or _prompt(u, v) else clear

    return png(size, size, pixel)


def build_package(info: AppInfo) -> bytes:
    """The zip to upload to Teams: manifest.json, color.png and outline.png at its root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest(info), indent=2) + "\n")
        archive.writestr("color.png", color_icon())
        archive.writestr("outline.png", outline_icon())
    return buffer.getvalue()


def write_package(info: AppInfo, path: Path) -> Path:
    """Write the package to ``path`` (a folder gets `teams-app.zip` inside) and return it."""
    if path.is_dir():
        path = path / DEFAULT_OUTPUT
    path.write_bytes(build_package(info))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `chatbot teams-package`."""
    defaults = AppInfo(app_id="")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(DEFAULT_OUTPUT),
        help=f"the zip, or a folder to write {DEFAULT_OUTPUT} in (default: ./{DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--app-id", default=None, help="the bot's Microsoft App ID (default: $MICROSOFT_APP_ID)"
    )
    parser.add_argument("--name", default=defaults.name, help="the bot's name in Teams")
    parser.add_argument("--version", default=defaults.version, help="the app's version")
    parser.add_argument("--developer", default=defaults.developer, help="publisher name")
    parser.add_argument(
        "--website-url",
        default=defaults.website_url,
        help="the publisher's site, shown in the app's details (https://)",
    )
    parser.add_argument(
        "--privacy-url",
        default=defaults.privacy_url,
        help="the privacy statement Teams links to (https://)",
    )
    parser.add_argument(
        "--terms-url", default=defaults.terms_url, help="the terms of use Teams links to (https://)"
    )


def run(
    args: argparse.Namespace,
    *,
    app_id: str,
    suggested: Sequence[str] | None = None,
    knowledge: bool = False,
) -> int:
    """`chatbot teams-package`: write the package; 0 on success, 2 without an app id.
    ``suggested``/``knowledge``: SUGGESTED_PROMPTS, and whether knowledge sources are set."""
    app_id = args.app_id or app_id
    if not app_id:
        print(
            "chatbot: the package needs the bot's app id: set MICROSOFT_APP_ID or pass --app-id",
            file=sys.stderr,
        )
        return 2
    if not is_guid(app_id):
        print(
            f"chatbot: --app-id / MICROSOFT_APP_ID must be the Azure app id, a GUID like "
            f"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (got {app_id!r}): Teams refuses any other",
            file=sys.stderr,
        )
        return 2
    if not args.output.is_dir() and not args.output.parent.is_dir():
        print(
            f"chatbot: cannot write {args.output}: the folder {args.output.parent} does not exist",
            file=sys.stderr,
        )
        return 2
    info = AppInfo(
        app_id=app_id,
        name=args.name,
        full_name=f"{args.name} — self-hosted AI assistant",
        version=args.version,
        developer=args.developer,
        website_url=args.website_url,
        privacy_url=args.privacy_url,
        terms_url=args.terms_url,
        starters=prompt_starters(suggestions(suggested, knowledge=knowledge)),
    )
    skipped = len(suggestions(suggested, knowledge=knowledge)) - len(info.starters)
    if skipped:
        print(
            f"chatbot: {skipped} suggested prompt(s) left out of the Teams prompt starters: "
            f"a starter's message may have at most {TITLE_LIMIT} characters",
            file=sys.stderr,
        )
    try:
        path = write_package(info, args.output)
    except OSError as exc:
        print(f"chatbot: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}: upload it in Teams (Apps → Manage your apps → Upload an app)")
    return 0
