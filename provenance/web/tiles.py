"""The log as C2SP tlog-tiles under ``/log/tiles/`` (docs/protocol.md, "Tiles"):
``checkpoint``, ``tile/<L>/<N>[.p/<W>]``, ``tile/entries/<N>[.p/<W>]`` and
``envelopes/<N>[.p/<W>]``, read from the folder that `provenance serve --tiles DIR`
keeps caught up (``TILES_DIR``). The same files any static web server can serve.

`TileFiles` is a plain WSGI app that `create_app` mounts in front of Flask, as a
static file server would sit in front of the app: an answer is a file read, with
none of the pages' per-request work (sessions, languages, rate limits). So
``/log/tiles/`` is outside the rate limits of ``/log/v1/*``. Tiles and bundles
are immutable (cached for a year); the checkpoint is ``no-cache``. Only paths
that parse as tlog-tiles paths reach the file system; anything else is a 404.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask

from provenance.infra.tile_files import read_published

PREFIX = "/log/tiles"
IMMUTABLE = "public, max-age=31536000, immutable"
NO_TILES = "this server publishes no tiles: start it with `provenance serve --tiles DIR`"
COMMON = [
    ("X-Content-Type-Options", "nosniff"),
    ("Access-Control-Allow-Origin", "*"),  # public data, for verifiers in browsers too
]

StartResponse = Callable[..., Any]


class TileFiles:
    """WSGI: ``GET``/``HEAD`` of the files of ``app.config["TILES_DIR"]``."""

    def __init__(self, app: Flask):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return self._answer(
                start_response,
                405,
                b"GET or HEAD only\n",
                "text/plain",
                "no-cache",
                method,
                [("Allow", "GET, HEAD")],
            )
        folder = self.app.config.get("TILES_DIR")
        if folder is None:
            return self._missing(start_response, NO_TILES, method)
        path = environ.get("PATH_INFO", "").removeprefix("/")
        data, reason = read_published(Path(folder), path)
        if data is None:
            return self._missing(start_response, reason, method)
        if path == "checkpoint":
            return self._answer(
                start_response, 200, data, "text/plain; charset=utf-8", "no-cache", method
            )
        return self._answer(
            start_response, 200, data, "application/octet-stream", IMMUTABLE, method
        )

    def _missing(self, start_response: StartResponse, reason: str, method: str) -> Iterable[bytes]:
        body = (reason + "\n").encode("utf-8")
        return self._answer(
            start_response, 404, body, "text/plain; charset=utf-8", "no-cache", method
        )

    @staticmethod
    def _answer(
        start_response: StartResponse,
        status: int,
        body: bytes,
        content_type: str,
        cache: str,
        method: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> Iterable[bytes]:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", cache),
            *COMMON,
            *(extra or []),
        ]
        start_response(f"{status} {reason}", headers)
        return [b""] if method == "HEAD" else [body]


def init_app(app: Flask) -> None:
    """Mount `TileFiles` at ``/log/tiles`` in front of the Flask app."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {PREFIX: TileFiles(app)}
    )
