"""Many voyzu calls at once, spread over several crmgate processes, for concurrency tests
and the concurrency benchmark."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support.voyzu import VoyzuClient


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


def session_id(http_url: str, email: str, password: str) -> str:
    """A voyzu session; any process on the same database accepts it."""
    client = VoyzuClient(http_url)
    try:
        return client.sign_in(email, password)["SessionId"]
    finally:
        client.close()


def post_all(
    urls: Sequence[str],
    calls: Sequence[tuple[str, Any]],
    session: str,
    concurrency: int = 100,
) -> list[Answer]:
    """POST every (path, body) at once (at most `concurrency` in flight), the i-th call to
    urls[i % len(urls)]; the answers in call order."""
    return asyncio.run(_post_all(urls, calls, session, concurrency))


async def _post_all(
    urls: Sequence[str], calls: Sequence[tuple[str, Any]], session: str, concurrency: int
) -> list[Answer]:
    headers = {"Cookie": f"voyzu_session_id={session}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def post(index: int, path: str, body: Any) -> Answer:
            url = urls[index % len(urls)] + path
            async with client.post(url, json=body, headers=headers) as response:
                kind = response.headers.get("Content-Type", "")
                parsed = await (response.json() if "json" in kind else response.read())
                return Answer(response.status, parsed)

        return await asyncio.gather(
            *(post(index, path, body) for index, (path, body) in enumerate(calls))
        )


def wait_for_requests(
    url: str, request_ids: Sequence[str], session: str, deadline: float = 60.0
) -> list[dict[str, Any]]:
    """Poll background requests until each is PROCESSED or FAILED; their last statuses."""
    limit = time.monotonic() + deadline
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(request_ids):
        pending = [request_id for request_id in request_ids if request_id not in done]
        calls = [(f"/api/request/get/{request_id}", None) for request_id in pending]
        for request_id, answer in zip(pending, post_all([url], calls, session), strict=True):
            assert answer.status == 200, answer
            if answer.body["ProcessStatus"] in ("PROCESSED", "FAILED"):
                done[request_id] = answer.body
        assert time.monotonic() < limit, f"{len(request_ids) - len(done)} requests unfinished"
        time.sleep(0.05)
    return [done[request_id] for request_id in request_ids]
