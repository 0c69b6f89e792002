"""Floors for the upload benchmarks: bare aiohttp handlers that do only the unavoidable
work — read the JSON body, decode base64, convert a JPEG to WebP with the product's
settings and write the files (C2C), or stream a multipart file to disk (Close)."""

from __future__ import annotations

import base64
import io
import json
import sys
import tempfile
from pathlib import Path

from aiohttp import web
from PIL import Image

from bench.bare import run_floor, serve_app
from server.c2c.images import WEBP_METHOD, WEBP_QUALITY

ROOT = Path(tempfile.mkdtemp(prefix="bare-upload-"))


async def c2c(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    for index, item in enumerate(body["files"]):
        data = base64.b64decode(item["content"])
        if item["mime_type"] == "image/jpeg":
            out = io.BytesIO()
            Image.open(io.BytesIO(data)).save(out, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
            data = out.getvalue()
        (ROOT / f"{index}.bin").write_bytes(data)
    return web.json_response({"stored": len(body["files"])}, status=201)


async def multipart(request: web.Request) -> web.Response:
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if part.name == "file":
            with (ROOT / "upload.bin").open("wb") as sink:
                while chunk := await part.read_chunk(256 * 1024):
                    sink.write(chunk)
        else:
            await part.read()
    return web.Response(status=201)


async def main() -> None:
    app = web.Application(client_max_size=200 * 1024 * 1024)
    app.router.add_post("/c2c", c2c)
    app.router.add_post("/multipart", multipart)
    await serve_app(app)


if __name__ == "__main__":
    run_floor(main())
    sys.exit(0)
