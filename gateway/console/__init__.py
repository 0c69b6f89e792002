"""The browser console at `/`: static HTML, CSS and one ES module (in `static/`) that use
the voyzu API only as any customer's front end would, through its served `/class`
modules and `RequestPoller`. Nothing is built or fetched from elsewhere.

The page is revalidated on every visit (its ETag is the assets' digest); the assets are
served under that digest (`/console/{version}/…`), so browsers keep them for a year and a
new release is fetched at once. Every answer forbids framing, sniffing and any script or
style but these files (no inline code, so the CSP needs no `'unsafe-inline'`)."""

from __future__ import annotations

import hashlib
from importlib import resources

from aiohttp import web

CONSOLE_PATH = "/"
ASSETS_PATH = "/console"
ASSET_TYPES = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    # Media thumbnails are this server's /media URLs; API calls and /class modules too.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PAGE_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=31536000, immutable"


def routes() -> list[web.RouteDef]:
    """GET `/` (the page) and `/console/{version}/{name}` (its assets)."""
    static = resources.files(__package__) / "static"
    assets = {name: (static / name).read_bytes() for name in ASSET_TYPES}
    version = hashlib.sha256(b"".join(assets.values())).hexdigest()[:16]
    page = (static / "index.html").read_text().replace("{version}", version).encode()
    etag = f'"{hashlib.sha256(page).hexdigest()[:16]}"'

    async def console(request: web.Request) -> web.Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": PAGE_CACHE, "ETag": etag}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=headers)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.match_info["version"] != version or name not in assets:
            # A page of an older release asks for assets this one no longer has.
            raise web.HTTPNotFound(text='{"error": "not_found"}', content_type="application/json")
        return web.Response(
            body=assets[name],
            headers={
                **SECURITY_HEADERS,
                "Content-Type": ASSET_TYPES[name],
                "Cache-Control": ASSET_CACHE,
            },
        )

    return [
        web.get(CONSOLE_PATH, console),
        web.get(ASSETS_PATH + "/{version}/{name}", asset),
    ]
