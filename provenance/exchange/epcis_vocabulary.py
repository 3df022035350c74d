"""What the EPCIS 2.0 export says and the records it is given: the EPCIS and CBV names.

The JSON-LD ``@context`` (:func:`context`) with our user-extension namespace and its
``provenance:`` prefix (:func:`ns`), the CBV master-data vocabulary types and attributes,
the kind of events imported from partners (:data:`IMPORTED`) and the kinds that have no
EPCIS counterpart; and the records the mapping takes: :class:`PartyInfo` and
:class:`LotInfo` behind their lookups, :class:`LedgerEvent` (an envelope with the lots it
was filed under). Changing :data:`NAMESPACE` changes every exported eventID
(docs/epcis.md, "The namespace"). Pure: constants and frozen records only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provenance.core.envelope import Envelope

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
# Our user-extension namespace (docs/epcis.md, "The namespace"): a W3C Permanent Identifier
# (w3id.org), so it outlives any host the project moves to. It ends in "/" because GS1's
# reference event hasher treats a key as an extension of its structure (a sensorElement…)
# only then. It is part of the pre-hash string of every exported ledger event: changing it
# changes every eventID (docs/epcis.md has the migration note).
NAMESPACE = "https://w3id.org/provenance-ledger/epcis/"
PREFIX = "provenance"
CBVMDA = "urn:epcglobal:cbv:mda:"
SCHEMA_VERSION = "2.0"
TIME_ZONE_OFFSET = "+00:00"  # ledger times are UTC
READING_WINDOW_S = 3600  # readings of one device for the same lots, grouped per hour
GS1_STEM = "https://id.gs1.org"
WGS84 = "http://www.opengis.net/def/crs/EPSG/0/4326"
STANDARD_GRAVITY = 9.80665  # m/s² per g (exact, by definition)
IMPORTED = "epcis"  # the kind of events imported from partners' EPCIS documents
# No EPCIS counterpart: identities and their GS1 prefixes are master data.
IDENTITY_KINDS = ("enrol", "revoke", "grant", "place")  # place: Location master data

# Master data vocabulary types and attributes (CBV).
VTYPE_EPC_CLASS = "urn:epcglobal:epcis:vtype:EPCClass"
VTYPE_SOURCE_DEST = "urn:epcglobal:epcis:vtype:SourceDest"
VTYPE_IDENTITY = NAMESPACE + "Identity"
MDA_NAME = "urn:epcglobal:cbv:mda#name"
MDA_DESCRIPTION = "urn:epcglobal:cbv:mda#descriptionShort"
ATTR_ROLE = NAMESPACE + "role"


def context() -> list[Any]:
    """The document ``@context``: the EPCIS context plus our prefix (and ``cbvmda``, which the
    EPCIS context defines too, inline so that tools reading only inline prefixes agree)."""
    return [EPCIS_CONTEXT, {PREFIX: NAMESPACE, "cbvmda": CBVMDA}]


def ns(name: str) -> str:
    """Our extension key for *name*: ``provenance:name``."""
    return f"{PREFIX}:{name}"


@dataclass(frozen=True)
class PartyInfo:
    """What the export needs to know about a did: a display name, a role (parties; devices
    have "device") and a GLN when the party has one (then ``417`` Digital Link URIs name it)."""

    name: str
    role: str | None = None
    gln: str | None = None


@dataclass(frozen=True)
class LotInfo:
    gtin: str
    lot: str
    product: str


@dataclass(frozen=True)
class LedgerEvent:
    """An envelope with the subjects of the chains the ledger filed it under: lot URIs (for a
    reading without ``batches``: the lots its device was attached to), or for an imported
    event without ``batches`` its signer's EPCIS stream."""

    envelope: Envelope
    lots: tuple[str, ...]


IdentityLookup = Callable[[str], PartyInfo | None]
LotLookup = Callable[[str], LotInfo | None]
ShipmentLookup = Callable[[str], Envelope | None]


def dumps(value: Any) -> str:
    """Compact JSON text as the export writes it (UTF-8 characters kept, no NaN)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
