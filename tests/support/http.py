"""Plain HTTP calls a test makes to a running bot."""

from __future__ import annotations

import json

import aiohttp

from tests.support.harness import sign


async def get_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def post(url: str, body: dict) -> int:
    raw = json.dumps(body)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/slack/events",
            data=raw,
            headers={"Content-Type": "application/json", **sign(raw)},
        ) as resp,
    ):
        return resp.status
