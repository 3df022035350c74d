"""Consumer scans, counted for recall reports: lot, hour and a coarse place;
and, when the link names an item (`/01/{gtin}/10/{lot}/21/{serial}`), the serial
too, for the counterfeit rule (docs/rules.md).

A scan is a successful GET of a lot's consumer page (HTML, 200 or 304) from the
resolver. The place is the value of a trusted header a CDN sets (configure
``SCAN_COUNTRY_HEADER``, e.g. ``CF-IPCountry``; env
``PROVENANCE_SCAN_COUNTRY_HEADER``), else ``unknown``. No address, cookie or
user agent is stored. Recording never breaks a page: a failure is logged.

A serial's scan also records a coarse position for the impossible-travel rule when
``SCAN_GEO_HEADERS`` names the CDN's latitude and longitude headers
(``"CF-IPLatitude,CF-IPLongitude"``; env ``PROVENANCE_SCAN_GEO_HEADERS``): the
geolocation of the client's address that the CDN already computed, rounded to 0.1°
(about 11 km), by minute. Nothing is looked up here and no outside service is called;
without the setting, or without the headers on a request, no position is kept.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from flask import Response, request

from provenance.barcodes import digital_link
from provenance.core.errors import ProvenanceError
from provenance.store.accounts.models import AccountError
from provenance.store.accounts.scans import check_place, coarse_position
from provenance.store.errors import DATABASE_ERRORS

from ..errors import wants_json
from .state import portal

log = logging.getLogger(__name__)

SCAN_ENDPOINT = "resolver.resolve"


def place() -> str:
    header = portal().config.get("SCAN_COUNTRY_HEADER")
    return check_place(request.headers.get(header)) if header else "unknown"


def record_scan(lot_uri: str, at_us: int, where: str) -> None:
    """Count one consumer scan of *lot_uri* (the hook a resolver calls)."""
    try:
        portal().accounts.record_scan(lot_uri, at_us, where)
    except (*DATABASE_ERRORS, OSError, AccountError) as exc:
        log.warning("could not count a scan of %s: %s", lot_uri, exc)


def record_serial_scan(lot_uri: str, serial: str, at_us: int, where: str) -> None:
    """Count one consumer scan of item *serial* of *lot_uri* (never breaks a page)."""
    try:
        portal().accounts.record_serial_scan(lot_uri, serial, at_us, where)
    except (*DATABASE_ERRORS, OSError, ProvenanceError) as exc:
        log.warning("could not count a scan of %s serial %s: %s", lot_uri, serial, exc)


def position() -> tuple[float, float] | None:
    """The request's coarse position from the configured CDN headers, or None."""
    names = portal().config.get("SCAN_GEO_HEADERS")
    if not names or names.count(",") != 1:
        return None
    lat, lon = (name.strip() for name in names.split(","))
    return coarse_position(request.headers.get(lat), request.headers.get(lon))


def record_sighting(lot_uri: str, serial: str, at_us: int, where: tuple[float, float]) -> None:
    """Count one scan of *serial* at a coarse position (never breaks a page)."""
    try:
        if not portal().accounts.record_sighting(lot_uri, serial, at_us, where):
            log.warning("serial sightings are full: a scan of %s was not counted", lot_uri)
    except (*DATABASE_ERRORS, OSError, ProvenanceError) as exc:
        log.warning("could not count a sighting of %s serial %s: %s", lot_uri, serial, exc)


def _scanned() -> tuple[str, str | None] | None:
    """(lot URI, serial or None) of the link being answered, or None."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        query = environ.get("QUERY_STRING", "")
        raw = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/%")
        raw += "?" + query if query else ""
    try:
        link = digital_link.parse_digital_link(raw)
    except ProvenanceError:
        return None
    lot_id = link.lot_id
    return (lot_id.uri, link.serial) if lot_id else None


def count_consumer_scans(response: Response) -> Response:
    """after_request: count the scan when the resolver answered with the page."""
    if (
        request.endpoint == SCAN_ENDPOINT
        and request.method == "GET"
        and response.status_code in (200, 304)
        and not wants_json()  # a person's page, not the JSON twin or the linkset
        and request.args.get("linkType") in (None, "gs1:pip")
        and portal().config.get("RECORD_SCANS")
    ):
        scanned = _scanned()
        if scanned is not None:
            uri, serial = scanned
            at, where = portal().clock(), place()
            record_scan(uri, at, where)
            if serial:
                record_serial_scan(uri, serial, at, where)
                spot = position()
                if spot is not None:
                    record_sighting(uri, serial, at, spot)
    return response
