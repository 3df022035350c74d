"""Places and parties by GS1 key in an EPCIS export (docs/epcis.md, "Places and
parties"): the master data of every location (``414`` Digital Link URI in a
readPoint, bizLocation or a ``location`` source/destination) and of every party
named by its PGLN (``417``), with CBV master data attributes — name, street,
city, state, postal code, country, latitude and longitude — from the places
registry (provenance/exchange/places.py), else from what the events themselves
said of the place. Pure: references and a registry in, vocabularies out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provenance.exchange.epcis_vocabulary import GS1_STEM, MDA_NAME, ns
from provenance.exchange.places import Registry, nowhere

VTYPE_LOCATION = "urn:epcglobal:epcis:vtype:Location"
LOCATION_STEM = f"{GS1_STEM}/414/"
PARTY_STEM = f"{GS1_STEM}/417/"
_MDA = "urn:epcglobal:cbv:mda#"
# CBV 2.0 §8.2 (location and party master data attributes), in this order.
ADDRESS_ATTRIBUTES = (
    ("street", _MDA + "streetAddressOne"),
    ("city", _MDA + "city"),
    ("region", _MDA + "state"),
    ("postal_code", _MDA + "postalCode"),
    ("country", _MDA + "countryCode"),
)
LATITUDE = _MDA + "latitude"
LONGITUDE = _MDA + "longitude"


def gln_of(uri: str) -> str | None:
    """The GLN of a ``414`` or ``417`` Digital Link URI, else None."""
    for stem in (LOCATION_STEM, PARTY_STEM):
        if uri.startswith(stem):
            return uri[len(stem) :]
    return None


class PlaceReferences:
    """The location and party URIs an export's events name, with what the events
    said of each location (a location given whole rather than by GLN alone)."""

    def __init__(self) -> None:
        self.locations: dict[str, Mapping[str, Any] | None] = {}
        self.parties: set[str] = set()

    def add(self, event: Mapping[str, Any]) -> None:
        said = event.get(ns("location"))
        for field in ("readPoint", "bizLocation"):
            place = event.get(field)
            uri = place.get("id") if isinstance(place, Mapping) else None
            if isinstance(uri, str) and uri.startswith(LOCATION_STEM):
                self._location(uri, said)
        for field, key in (("sourceList", "source"), ("destinationList", "destination")):
            for end in event.get(field) or ():
                uri = end.get(key) if isinstance(end, Mapping) else None
                if not isinstance(uri, str):
                    continue
                if uri.startswith(LOCATION_STEM):
                    self._location(uri, said)
                elif uri.startswith(PARTY_STEM):
                    self.parties.add(uri)

    def _location(self, uri: str, said: Any) -> None:
        inline = said if isinstance(said, Mapping) and said.get("gln") == gln_of(uri) else None
        if self.locations.get(uri) is None:
            self.locations[uri] = inline

    def location_vocabulary(self, registry: Registry = nowhere) -> dict[str, Any] | None:
        """The Location vocabulary: one element per location URI."""
        elements = []
        for uri in sorted(self.locations):
            gln = gln_of(uri) or ""
            known = registry(gln)
            place: Mapping[str, Any] = known.as_location() if known else (self.locations[uri] or {})
            attributes = _attributes(place)
            if known and known.type:
                attributes.append({"id": ns("placeType"), "attribute": known.type})
            if attributes:
                elements.append({"id": uri, "attributes": attributes})
        return {"type": VTYPE_LOCATION, "vocabularyElementList": elements} if elements else None

    def party_elements(self, registry: Registry = nowhere) -> list[dict[str, Any]]:
        """SourceDest elements for the parties named by PGLN: name and address."""
        elements = []
        for uri in sorted(self.parties):
            known = registry(gln_of(uri) or "")
            if known is not None:
                place = {"name": known.party, "address": known.address}
                elements.append({"id": uri, "attributes": _attributes(place)})
        return elements


def _attributes(place: Mapping[str, Any]) -> list[dict[str, Any]]:
    attributes: list[dict[str, Any]] = []
    if place.get("name"):
        attributes.append({"id": MDA_NAME, "attribute": place["name"]})
    address = dict(place.get("address") or {})
    if "country" not in address and place.get("country"):
        address["country"] = place["country"]
    for key, attribute in ADDRESS_ATTRIBUTES:
        if address.get(key):
            attributes.append({"id": attribute, "attribute": address[key]})
    if isinstance(place.get("lat"), (int, float)) and isinstance(place.get("lon"), (int, float)):
        attributes.append({"id": LATITUDE, "attribute": place["lat"]})
        attributes.append({"id": LONGITUDE, "attribute": place["lon"]})
    return attributes
