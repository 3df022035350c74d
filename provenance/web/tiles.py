"""The log as C2SP tlog-tiles under ``/log/tiles/`` (docs/protocol.md, "Tiles"):
``checkpoint``, ``tile/<L>/<N>[.p/<W>]``, ``tile/entries/<N>[.p/<W>]`` and
``envelopes/<N>[.p/<W>]``, read from the folder that `provenance serve --tiles DIR`
keeps caught up (``TILES_DIR``). The same files any static web server can serve.

Outside the rate limits of ``/log/v1/*``: each answer is a file read. Tiles and
bundles are immutable (cached for a year); the checkpoint is ``no-cache``. Only
paths that parse as tlog-tiles paths reach the file system.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app

from provenance.core.errors import ValidationError
from provenance.core.merkle import HASH_SIZE
from provenance.core.tiles import TILE_WIDTH, parse_tile_path, tile_path

bp = Blueprint("tiles", __name__, url_prefix="/log/tiles")

IMMUTABLE = "public, max-age=31536000, immutable"
NO_TILES = "this server publishes no tiles: start it with `provenance serve --tiles DIR`"


def _missing(reason: str) -> Response:
    return Response(
        reason + "\n", 404, mimetype="text/plain", headers={"Cache-Control": "no-cache"}
    )


def _folder() -> Path | None:
    folder = current_app.config.get("TILES_DIR")
    return None if folder is None else Path(folder)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


@bp.get("/checkpoint")
def checkpoint() -> Response:
    folder = _folder()
    if folder is None:
        return _missing(
            "this server publishes no tiles: start it with `provenance serve --tiles DIR`"
        )
    data = _read(folder / "checkpoint")
    if data is None:
        return _missing("no checkpoint written yet")
    return Response(
        data,
        mimetype="text/plain",
        headers={"Cache-Control": "no-cache"},
        content_type="text/plain; charset=utf-8",
    )


@bp.get("/<path:path>")
def tile(path: str) -> Response:
    folder = _folder()
    if folder is None:
        return _missing(
            "this server publishes no tiles: start it with `provenance serve --tiles DIR`"
        )
    try:
        kind, index, width = parse_tile_path(path)
    except ValidationError as exc:
        return _missing(f"{exc}: see c2sp.org/tlog-tiles")
    data = _read(folder / path)
    if data is None and width < TILE_WIDTH and kind not in ("entries", "envelopes"):
        # A partial tile is removed once its full tile is written: its hashes are
        # the full tile's first ones (c2sp.org/tlog-tiles lets clients fall back).
        full = _read(folder / tile_path(int(kind), index))
        data = None if full is None else full[: width * HASH_SIZE]
    if data is None:
        return _missing(f"no {path} in this log (yet)")
    return Response(data, mimetype="application/octet-stream", headers={"Cache-Control": IMMUTABLE})
