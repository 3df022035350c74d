"""Places in the words exports use (docs/protocol.md §15): a location as an event
gives it, completed from the places registry (`resolve_location`), and written
out in one line — "name, street, city, region postal_code, country (GLN …)"
(`describe_location`), as FSMA 204's location descriptions and the pages want it.

Pure: a location and a registry lookup in, values out. The registry is any
callable from a GLN to what is known of it (`Known`); `store_registry` is the
thin adapter over a Store: registered places (`place` events), then parties'
PGLNs (their enrolments).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provenance.store import places

if TYPE_CHECKING:  # the adapter only
    from provenance.store.db import Store

_FILLED = ("name", "address", "lat", "lon", "country")


@dataclass(frozen=True)
class Known:
    """What the ledger knows of a GLN: a registered place (``party`` operates it)
    or a party's PGLN (``party`` is the party itself)."""

    gln: str
    name: str
    party: str  # the party's name
    address: Mapping[str, str] | None = None
    lat: float | None = None
    lon: float | None = None
    type: str | None = None  # farm, packhouse, … ("party" for a PGLN)

    def as_location(self) -> dict[str, Any]:
        location: dict[str, Any] = {"name": self.name, "gln": self.gln}
        if self.address:
            location["address"] = dict(self.address)
        if self.lat is not None and self.lon is not None:
            location["lat"], location["lon"] = self.lat, self.lon
        return location


Registry = Callable[[str], Known | None]


def nowhere(_gln: str) -> None:
    """The registry that knows no GLN."""
    return None


def resolve_location(
    location: Mapping[str, Any] | None, registry: Registry = nowhere
) -> dict[str, Any] | None:
    """*location* as an event gives it, its gaps filled from the registered place
    with its GLN: what the event says wins; a location cited as ``{"gln": …}``
    alone gets the place's name, address and coordinates. None stays None; a GLN
    the registry does not know stays as given."""
    if not location:
        return None
    resolved = dict(location)
    gln = location.get("gln")
    known = registry(gln) if isinstance(gln, str) else None
    if known is not None:
        for key, value in known.as_location().items():
            if key in _FILLED and key not in resolved:
                if key in ("lat", "lon") and ("lat" in location or "lon" in location):
                    continue  # coordinates come as a pair
                resolved[key] = value
    return resolved


def describe_address(address: Mapping[str, Any] | None) -> str:
    """A postal address in one line: "street, city, region postal_code, country"."""
    if not address:
        return ""
    region = " ".join(str(address[key]) for key in ("region", "postal_code") if address.get(key))
    parts = [address.get("street"), address.get("city"), region, address.get("country")]
    return ", ".join(str(part) for part in parts if part)


def describe_location(location: Mapping[str, Any] | None, registry: Registry = nowhere) -> str:
    """A location in one line, completed from the registry: "name, street, city,
    region postal_code, country (GLN 9506000000008)"; coordinates when there is
    no address; "" for no location."""
    resolved = resolve_location(location, registry)
    if not resolved:
        return ""
    address = resolved.get("address")
    parts = [resolved.get("name"), describe_address(address)]
    if not address and resolved.get("country"):
        parts.append(resolved["country"])
    if not address and "lat" in resolved and "lon" in resolved:
        parts.append(f"{resolved['lat']}, {resolved['lon']}")
    text = ", ".join(str(part) for part in parts if part)
    gln = resolved.get("gln")
    if gln:
        text = f"{text} (GLN {gln})" if text else f"GLN {gln}"
    return text


def store_registry(store: Store) -> Registry:
    """The registry over a Store, cached per call site: a registered place by its
    GLN, else the party whose PGLN it is."""
    cache: dict[str, Known | None] = {}

    def lookup(gln: str) -> Known | None:
        if gln not in cache:
            cache[gln] = _known(store, gln)
        return cache[gln]

    return lookup


def _known(store: Store, gln: str) -> Known | None:
    found = places.place(store, gln)
    if found is not None:
        return Known(
            gln, found.name, found.party_name, found.address, found.lat, found.lon, found.type
        )
    party = places.party_with_pgln(store, gln)
    identity = store.identity_by_id(party) if party is not None else None
    if identity is None:
        return None
    details = places.party_details(store, identity.id)
    return Known(gln, identity.name, identity.name, details.address, type="party")
