"""Per-app and per-thread state the views share: the Scanner and a read-only
ledger connection per thread."""

from __future__ import annotations

from flask import current_app, g

from provenance.ledger.lot_view import Scanner
from provenance.store.db import Store, StoreError
from provenance.store.location import database_location

from .errors import Unavailable


def scanner() -> Scanner:
    return current_app.extensions["provenance.scanner"]


def store() -> Store:
    """This thread's read-only connection to the ledger (kept across requests:
    opening one per request would cost more than most pages)."""
    if "store" in g:
        return g.store
    local = current_app.extensions["provenance.stores"]
    path = database_location(current_app.config["DATABASE"])
    opened = getattr(local, "store", None)
    if opened is None or opened.path != path:
        try:
            opened = Store(path, create=False, readonly=True)
        except StoreError as exc:
            raise Unavailable(str(exc)) from exc
        local.store = opened
    g.store = opened
    return opened
