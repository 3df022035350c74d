"""Scanning with the phone's camera inside the web app, and its offline shell.

- ``GET /scan``: the scanner page. ``static/camera.js`` reads GS1 Digital Link
  QR codes and GS1 DataMatrix with the browser's ``BarcodeDetector`` where it
  has one for both, else with the bundled ZXing (``static/vendor/``, loaded
  only then), and opens the lot's page. Without JavaScript or a camera the
  page is a form: type or paste the code.
- ``GET /scan/code?text=…``: what a scanned code opens. Parsed here, by the
  same GS1 code as the resolver (`provenance.barcodes.scanned`), not a second
  copy in JavaScript: a browser gets a 303 to the lot's page, a program
  (``Accept: application/json``) ``{"path": …}``; a code that is not GS1 data,
  or names no lot, is a 400 whose reason says what was read and what to do.
  The answer depends on the text alone, so the service worker may keep it.
- ``GET /sw.js``: the service worker (``static/sw.js``), served from the root
  so that its scope covers the lot pages; ``GET /manifest.webmanifest``: what
  makes the scanner an installable web app.

What is kept offline and how a saved page is marked: docs/scan.md, "Camera"
and "Offline".
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from flask_babel import gettext as _

from provenance.barcodes.scanned import MAX_SCAN_CHARS, NoLotInCode, link_of_scan, resolver_path
from provenance.core.errors import ValidationError

from .errors import InvalidCode, answer, wants_json

bp = Blueprint("camera", __name__)

ZXING_FILE = "vendor/zxing-library-0.23.0.min.js"
"""The bundled decoder (static/vendor/README.md has its origin and sha256)."""

ICONS = ((192, "icons/icon-192.png"), (512, "icons/icon-512.png"))


@bp.get("/scan")
def scan():
    return render_template("camera.html", zxing_file=ZXING_FILE, max_chars=MAX_SCAN_CHARS)


@bp.get("/scan/code")
def code():
    text = request.args.get("text")
    if text is None:
        raise InvalidCode("text", "give the code's text: /scan/code?text=…")
    try:
        path = resolver_path(link_of_scan(text))
    except NoLotInCode as exc:
        return answer(400, "no lot in code", str(exc), hint=_("Scan the code that names the lot."))
    except ValidationError as exc:
        raise InvalidCode(exc.field, exc.rule) from None
    if wants_json():
        return jsonify({"path": path})
    return redirect(path, code=303)


@bp.get("/sw.js")
def service_worker():
    # Read whole (a few KB), not streamed: no open file outlives the answer.
    body = (Path(current_app.static_folder or ".") / "sw.js").read_bytes()
    response = Response(body, mimetype="text/javascript")
    # Always ask: a browser checks for a new worker at most daily anyway, and a
    # fixed worker must reach the phones that run the old one at once.
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/manifest.webmanifest")
def manifest():
    body = {
        "name": _("Provenance scanner"),
        "short_name": "Provenance",
        "description": _("Scan a pack or vial to see where it came from and whether it is safe."),
        "id": "/scan",
        "start_url": "/scan",
        "scope": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1d4d3a",
        "icons": [
            {
                "src": f"/static/{path}",
                "sizes": f"{size}x{size}",
                "type": "image/png",
                "purpose": "any maskable",
            }
            for size, path in ICONS
        ],
    }
    response = jsonify(body)
    response.mimetype = "application/manifest+json"
    return response
