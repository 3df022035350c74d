"""Every link the web app hands out to a lot, built one way.

A lot code may hold ``/``, ``%``, ``"``, ``?``, ``#``, spaces or dots, so a link
to a lot is never made from decoded text (``request.path`` turns ``A%2F21%2FX``
into ``A/21/X``, which names lot ``A``, serial ``X``) nor by handing an encoded
path to something that encodes it again (``url_for`` turns ``%2F`` into
``%252F``). It is made from the lot's canonical, percent-encoded path
(`gs1.lot_path`), and this page's own links from the path exactly as the
client sent it.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit

from flask import current_app, g, request

from provenance.core import gs1

BUNDLE_PREFIX = "/bundle"
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"  # RFC 3986 pchar, "/" and the escapes already made


def lot_path(lot_uri: str) -> str:
    """``/01/{GTIN-14}/10/{lot}``, percent-encoded: the lot's page on this resolver."""
    return gs1.lot_path(lot_uri)


def bundle_path(lot_uri: str) -> str:
    """Where the lot's proof bundle is downloaded."""
    return BUNDLE_PREFIX + lot_path(lot_uri)


def origin() -> str:
    """The resolver's public origin: BASE_URL when set, else the request's."""
    return (current_app.config.get("BASE_URL") or request.host_url).rstrip("/")


def lot_url(lot_uri: str, link_type: str | None = None) -> str:
    """The lot's page as an absolute URL, optionally for one GS1 link type
    (``?linkType=gs1:traceability``, written as GS1 resolvers write it)."""
    url = origin() + lot_path(lot_uri)
    if link_type is not None:
        url += "?linkType=" + quote(link_type, safe=":")
    return url


def bundle_url(lot_uri: str) -> str:
    return origin() + bundle_path(lot_uri)


def raw_target() -> str:
    """The request target still percent-encoded, as the Digital Link parser needs
    (a decoded path cannot tell ``A%2FB`` from the segments ``A`` and ``B``)."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        split = urlsplit(raw)
        if split.scheme:  # absolute-form request target (through a proxy)
            return split.path + (f"?{split.query}" if split.query else "")
        return raw
    query = environ.get("QUERY_STRING", "")
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/%")
    return path + ("?" + query if query else "")


def this_path() -> str:
    """This page's path, percent-encoded: the canonical path a view set in
    ``g.page_path`` (the lot page does), else the path as the client sent it."""
    page = g.get("page_path")
    if page:
        return str(page)
    path = raw_target().split("?", 1)[0].split("#", 1)[0]
    # Escape what may not stand in a path (a browser reads "\\" as "/"), keep the
    # escapes already there, and never start with "//", which names another site.
    path = quote(path, safe=_PATH_SAFE)
    return "/" + path.lstrip("/")


def url_with(**changes: str) -> str:
    """This page's URL with some query parameters changed (the language and
    text-size switches are plain links, so they work without JavaScript)."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in changes]
    args.extend(changes.items())
    return this_path() + "?" + urlencode(args)
