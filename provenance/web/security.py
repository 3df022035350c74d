"""Response hardening and compression for every answer.

- A strict Content-Security-Policy: nothing from third parties, scripts only
  from our own `/static/`, and the page's one inline stylesheet allowed by its
  hash (the CSS is inlined so the first paint needs no second request).
- Text shown, never obeyed: every value a template prints goes through
  `terminal.safe_text` (control and bidi-override characters as ``\\uXXXX``).
- gzip for text bodies when the client accepts it (the page must stay small on
  slow mobile networks; waitress does not compress).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request
from jinja2 import pass_context
from markupsafe import Markup

from provenance.core.terminal import safe_text

COMPRESSIBLE = {
    "text/html",
    "text/plain",
    "text/css",
    "application/json",
    "application/ld+json",
    "application/linkset+json",
    "application/javascript",
    "text/javascript",
    "image/svg+xml",
}
MIN_GZIP_BYTES = 512


def init_app(app: Flask) -> None:
    static = Path(app.static_folder or ".")
    css = (static / "scan.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    app.config["PAGE_CSS"] = css
    app.config["CSP"] = "; ".join(
        [
            "default-src 'none'",
            f"style-src 'sha256-{digest}'",
            "script-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self'",  # the offline shell's service worker (/sw.js)
            "manifest-src 'self'",  # the installable scanner (/manifest.webmanifest)
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    app.jinja_env.globals["page_css"] = css
    app.jinja_env.finalize = shown_not_obeyed
    _values_in_messages_shown_not_obeyed(app)
    app.after_request(_harden)
    app.after_request(_compress)


def shown_not_obeyed(value: object) -> object:
    """Every value a template prints: text from the ledger (which may predate the
    text rule, docs/protocol.md) with its control and bidirectional-override
    characters written as ``\\uXXXX``, so U+202E cannot reorder the page."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return safe_text(value)
    return value


def _values_in_messages_shown_not_obeyed(app: Flask) -> None:
    """The same for values put into a translated message (``_('… %(p)s', p=name)``):
    the message comes back as Markup, which `finalize` passes as it is, so each
    value is made safe before it goes in."""
    env = app.jinja_env
    gettext, ngettext = env.globals.get("gettext"), env.globals.get("ngettext")
    if gettext is None or ngettext is None:
        return

    def shown(variables: dict[str, Any]) -> dict[str, Any]:
        return {name: shown_not_obeyed(value) for name, value in variables.items()}

    @pass_context
    def safe_gettext(context: Any, message: str, **variables: Any) -> str:
        return gettext(context, message, **shown(variables))

    @pass_context
    def safe_ngettext(context: Any, one: str, many: str, num: int, **variables: Any) -> str:
        return ngettext(context, one, many, num, **shown(variables))

    env.globals.update(gettext=safe_gettext, ngettext=safe_ngettext)


def _harden(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", current_app.config["CSP"])
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    return response


def _compress(response: Response) -> Response:
    if (
        response.direct_passthrough
        or response.status_code < 200
        or response.status_code in (204, 304)
        or "Content-Encoding" in response.headers
        or response.mimetype not in COMPRESSIBLE
        or "gzip" not in request.headers.get("Accept-Encoding", "")
    ):
        return response
    body = response.get_data()
    response.vary.add("Accept-Encoding")
    if len(body) < MIN_GZIP_BYTES:
        return response
    response.set_data(gzip.compress(body, compresslevel=6, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    return response
