"""Matching a request to an annotated route, telling 'no such path' from 'wrong verb'."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote

import grpc

from gateway.errors import METHOD_NOT_ALLOWED, ROUTE_NOT_FOUND, reject
from gateway.routes import Route


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = list(routes)  # most specific first (see discover_routes)

    def match(self, http_method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        """The route and its decoded path variables; raises CallFailed (NOT_FOUND with
        reason route_not_found or method_not_allowed) when none fits."""
        path_matched = False
        for route in self._routes:
            values = route.path.match(raw_path)
            if values is None:
                continue
            if route.http_method == http_method or (
                http_method == "HEAD" and route.http_method == "GET"
            ):
                return route, {name: unquote(value) for name, value in values.items()}
            path_matched = True
        if path_matched:
            raise reject(
                grpc.StatusCode.UNIMPLEMENTED,
                METHOD_NOT_ALLOWED,
                method=http_method,
                path=unquote(raw_path),
            )
        raise reject(grpc.StatusCode.NOT_FOUND, ROUTE_NOT_FOUND, path=unquote(raw_path))
