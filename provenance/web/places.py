"""Places and parties' GS1 keys in the pages' words (docs/protocol.md §15): the
template globals `place_words(location)` — "Riverside packhouse, 1 Mill Lane,
Nakuru, KE · GLN 9506000000008", a location cited by GLN alone completed from the
places registry — and `party_gln(party)`, a party's PGLN. The registry is read
through the request's store (`state.store`), once per GLN per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import g
from flask_babel import gettext as _

from provenance.exchange.places import Registry, describe_address, resolve_location, store_registry
from provenance.store import places

from .state import store as read_store


def _registry() -> Registry:
    if "place_registry" not in g:
        g.place_registry = store_registry(read_store())
    return g.place_registry


def place_words(location: Mapping[str, Any] | None) -> str:
    """A location in plain words: name, address (or country), and its GLN."""
    resolved = resolve_location(location, _registry())
    if not resolved:
        return ""
    address = describe_address(resolved.get("address"))
    if not address and resolved.get("country"):
        address = str(resolved["country"])
    words = ", ".join(str(part) for part in (resolved.get("name"), address) if part)
    gln = resolved.get("gln")
    if gln:
        number = _("GLN %(gln)s", gln=gln)
        words = f"{words} · {number}" if words else number
    return words


def party_gln(party: Any) -> str | None:
    """The PGLN of a party (a `Party`, an `Identity` or anything with a `did`), if
    its enrolment gave one."""
    did = getattr(party, "did", None)
    if not did:
        return None
    cache = g.setdefault("party_glns", {})
    if did not in cache:
        store = read_store()
        identity = store.identity_by_did(did)
        cache[did] = places.party_details(store, identity.id).pgln if identity else None
    return cache[did]


GLOBALS = {"place_words": place_words, "party_gln": party_gln}
