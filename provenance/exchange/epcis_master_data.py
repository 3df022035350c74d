"""The EPCIS master data of an export: the vocabularies for the lots and parties it names.

:class:`MasterDataReferences` notes every lot (EPCClass) and identity (SourceDest, our Identity
type) the exported events refer to, and turns them into the ``epcisMasterData`` vocabulary list
with names, descriptions, roles and GLNs from the lookups; :func:`master_data` does that for a
finished event list. Pure: events and lookups in, plain dicts out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from provenance.exchange.epcis_places import PlaceReferences
from provenance.exchange.epcis_vocabulary import (
    ATTR_ROLE,
    MDA_DESCRIPTION,
    MDA_NAME,
    VTYPE_EPC_CLASS,
    VTYPE_IDENTITY,
    VTYPE_SOURCE_DEST,
    IdentityLookup,
    LotLookup,
    ns,
)
from provenance.exchange.places import Registry, nowhere

_QUANTITY_LISTS = ("quantityList", "inputQuantityList", "outputQuantityList", "childQuantityList")


# --- master data


class MasterDataReferences:
    """What the events name that master data can describe: lot classes, parties in source
    and destination lists, signers and devices."""

    def __init__(self) -> None:
        self.classes: set[str] = set()
        self.ends: set[str] = set()
        self.dids: set[str] = set()
        self.places = PlaceReferences()  # locations (414) and parties by PGLN (417)

    def add(self, event: Mapping[str, Any]) -> None:
        self.places.add(event)
        for field in _QUANTITY_LISTS:
            for element in event.get(field) or ():
                if isinstance(element, Mapping) and isinstance(element.get("epcClass"), str):
                    self.classes.add(element["epcClass"])
        for field, key in (("sourceList", "source"), ("destinationList", "destination")):
            for end in event.get(field) or ():
                if (
                    isinstance(end, Mapping)
                    and end.get("type") != "location"
                    and isinstance(end.get(key), str)
                ):
                    self.ends.add(end[key])
        for did in (event.get(ns("signer")), event.get("parentID")):
            if isinstance(did, str) and did:
                self.dids.add(did)

    def add_reading(self, device: str, lots: Iterable[str]) -> None:
        self.classes.update(lots)
        self.dids.add(device)

    def vocabularies(
        self, identities: IdentityLookup, lots: LotLookup, places: Registry = nowhere
    ) -> list[dict[str, Any]]:
        vocabularies = []
        elements = []
        for uri in sorted(self.classes):
            info = lots(uri)
            if info is not None:
                elements.append(
                    {"id": uri, "attributes": [{"id": MDA_DESCRIPTION, "attribute": info.product}]}
                )
        if elements:
            vocabularies.append({"type": VTYPE_EPC_CLASS, "vocabularyElementList": elements})
        named = self.dids | {end for end in self.ends if end.startswith("did:")}
        by_did = {did: identities(did) for did in sorted(named)}
        elements = [
            {"id": uri, "attributes": [{"id": MDA_NAME, "attribute": info.name}]}
            for uri in sorted(self.ends)
            if (info := by_did.get(uri)) is not None
        ]
        elements += self.places.party_elements(places)
        if elements:
            vocabularies.append({"type": VTYPE_SOURCE_DEST, "vocabularyElementList": elements})
        elements = []
        for did in sorted(self.dids):
            info = by_did.get(did)
            if info is None:
                continue
            attributes = [{"id": MDA_NAME, "attribute": info.name}]
            if info.role:
                attributes.append({"id": ATTR_ROLE, "attribute": info.role})
            elements.append({"id": did, "attributes": attributes})
        if elements:
            vocabularies.append({"type": VTYPE_IDENTITY, "vocabularyElementList": elements})
        location = self.places.location_vocabulary(places)
        if location:
            vocabularies.append(location)
        return vocabularies


def master_data(
    events: Iterable[Mapping[str, Any]],
    *,
    identities: IdentityLookup,
    lots: LotLookup,
    places: Registry = nowhere,
) -> list[dict[str, Any]]:
    """The vocabularyList for the header: products of the lots (EPCClass), names of the
    parties in source/destination lists (SourceDest) and names and roles of the signers and
    devices (our Identity vocabulary), and the locations and parties named by GLN
    (Location, SourceDest; provenance/exchange/epcis_places.py) — whatever the lookups know."""
    references = MasterDataReferences()
    for event in events:
        references.add(event)
    return references.vocabularies(identities, lots, places)
