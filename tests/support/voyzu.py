"""A voyzu API client for tests: aiohttp with a real cookie jar, driven synchronously."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp


class VoyzuClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._loop = asyncio.new_event_loop()
        self._session = self._loop.run_until_complete(self._open())

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    def close(self) -> None:
        self._loop.run_until_complete(self._session.close())
        self._loop.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        async def send() -> tuple[int, Any, aiohttp.ClientResponse]:
            data = raw if raw is not None else (json.dumps(body) if body is not None else None)
            async with self._session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                content = await response.read()
                kind = response.headers.get("Content-Type", "")
                parsed = json.loads(content) if kind.startswith("application/json") else content
                return response.status, parsed, response

        return self._loop.run_until_complete(send())

    def post(self, path: str, body: Any = None, **options: Any) -> tuple[int, Any]:
        status, parsed, _ = self.request("POST", path, body, **options)
        return status, parsed

    def sign_in(self, email: str, password: str) -> dict[str, Any]:
        status, body = self.post("/api/auth", {"Email": email, "Password": password})
        assert status == 200, body
        return body

    def cookie(self, name: str) -> str | None:
        for morsel in self._session.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None

    def wait_for(self, request_id: str, deadline: float = 30.0) -> dict[str, Any]:
        """Poll a background request until it is PROCESSED or FAILED."""
        limit = time.monotonic() + deadline
        while True:
            status, body = self.post(f"/api/request/get/{request_id}")
            assert status == 200, body
            if body["ProcessStatus"] in ("PROCESSED", "FAILED"):
                return body
            assert time.monotonic() < limit, body
            time.sleep(0.05)
