"""The Teams app package `chatbot teams-package` writes: a manifest Teams accepts and the two
icons it requires, drawn without image libraries."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from adapters.cli import main
from adapters.teams.package import AppInfo, build_package, manifest
from tests.support import REPO

APP_ID = "c9e8c047-2a74-40a2-b28a-b162d5f5327c"


def decode_png(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """Width, height and RGBA rows of a PNG, checking signature, chunk CRCs and filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color_type = struct.unpack(">IIBB", header[:10])
    assert (depth, color_type) == (8, 6)
    raw = zlib.decompress(idat)
    stride = width * 4 + 1
    rows = []
    for y in range(height):
        line = raw[y * stride : (y + 1) * stride]
        assert line[0] == 0
        rows.append([tuple(line[1 + 4 * x : 5 + 4 * x]) for x in range(width)])
    return width, height, rows


def test_manifest_declares_the_bot_its_scopes_and_commands() -> None:
    data = manifest(AppInfo(app_id=APP_ID))
    assert data["manifestVersion"] == "1.30"
    assert data["$schema"].endswith("/teams/v1.30/MicrosoftTeams.schema.json")
    assert data["id"] == APP_ID
    [bot] = data["bots"]
    assert bot["botId"] == APP_ID
    assert bot["scopes"] == ["personal", "team", "groupChat"]
    for command_list in bot["commandLists"]:
        titles = [c["title"] for c in command_list["commands"]]
        assert titles[:3] == ["/premium", "/reset", "/help"]
        assert all(len(c["description"]) <= 128 for c in command_list["commands"])
    assert sorted(s for cl in bot["commandLists"] for s in cl["scopes"]) == sorted(bot["scopes"])
    assert data["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert len(data["name"]["short"]) <= 30 and len(data["description"]["short"]) <= 80
    assert all(data["developer"][k].startswith("https://") for k in ("websiteUrl", "privacyUrl"))


def test_package_holds_the_manifest_and_icons_of_the_required_sizes() -> None:
    with zipfile.ZipFile(__import__("io").BytesIO(build_package(AppInfo(app_id=APP_ID)))) as z:
        assert sorted(z.namelist()) == ["color.png", "manifest.json", "outline.png"]
        assert json.loads(z.read("manifest.json"))["id"] == APP_ID
        width, height, color = decode_png(z.read("color.png"))
        assert (width, height) == (192, 192)
        assert all(p[3] == 255 for row in color for p in row), "the color icon is opaque"
        assert len({p for row in color for p in row}) == 2
        width, height, outline = decode_png(z.read("outline.png"))
        assert (width, height) == (32, 32)
        pixels = [p for row in outline for p in row]
        # Teams' outline icon: white on a transparent background.
        assert {p for p in pixels if p[3]} == {(255, 255, 255, 255)}
        assert 50 < sum(1 for p in pixels if p[3]) < 600


def test_chatbot_teams_package_writes_the_zip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    monkeypatch.setenv("MICROSOFT_APP_ID", APP_ID)
    out = tmp_path / "app.zip"
    assert main(["teams-package", "--output", str(out), "--name", "Helper"]) == 0
    with zipfile.ZipFile(out) as z:
        data = json.loads(z.read("manifest.json"))
    assert data["id"] == APP_ID and data["name"]["short"] == "Helper"
    assert str(out) in capsys.readouterr().out


def test_chatbot_teams_package_needs_an_app_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MICROSOFT_APP_ID", raising=False)
    assert main(["teams-package", "--output", str(tmp_path / "x.zip")]) == 2
    assert "MICROSOFT_APP_ID" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_teams_package_output_problems_are_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROSOFT_APP_ID", APP_ID)
    assert main(["teams-package", "--output", str(tmp_path / "missing" / "app.zip")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # A folder: the package is written inside it.
    assert main(["teams-package", "--output", str(tmp_path)]) == 0
    assert zipfile.is_zipfile(tmp_path / "teams-app.zip")


def test_teams_package_refuses_an_app_id_teams_would_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "x.zip"
    assert main(["teams-package", "--app-id", "not-a-guid", "--output", str(out)]) == 2
    assert "GUID" in capsys.readouterr().err and not out.exists()


def test_the_app_has_the_same_name_in_teams_as_in_slack() -> None:
    slack = (REPO / "slack/manifest.http.yml").read_text()
    name = manifest(AppInfo(app_id=APP_ID))["name"]["short"]
    assert f"name: {name}\n" in slack
