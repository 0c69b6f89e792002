"""S3's XML answers."""

from __future__ import annotations

from xml.sax.saxutils import escape

from aiohttp import web

XML = "application/xml"


def error(code: str, message: str, status: int, request_id: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{escape(request_id)}</RequestId></Error>"
    )
    return web.Response(text=body, status=status, content_type=XML)


def post_response(location: str, bucket: str, key: str, etag: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<PostResponse><Location>{escape(location)}</Location><Bucket>{escape(bucket)}</Bucket>"
        f"<Key>{escape(key)}</Key><ETag>{escape(etag)}</ETag></PostResponse>"
    )
    return web.Response(text=body, status=201, content_type=XML, headers={"ETag": etag})
