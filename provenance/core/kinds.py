"""Event kinds of wire protocol v1: what each kind's `data` may hold and who may
sign it.

Validation is strict: unknown fields are refused (partner extras go under
`data.ext`), and every error names the field and the rule it broke.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from provenance.core import gs1, kind_checks
from provenance.core import sscc as sscc_rules
from provenance.core.ed25519 import is_usable_public_key
from provenance.core.errors import ValidationError
from provenance.core.fields import (
    Validator,
    a_date,
    boolean,
    check_fields,
    count,
    date_or_time,
    did,
    event_id,
    evidence,
    ext,
    list_of,
    lot_uri,
    note,
    number,
    obj,
    one_of,
    sha256_hex,
    text,
    timestamp,
)
from provenance.core.identity import (
    COMMISSIONING_ROLES,
    PARTY_ROLES,
    public_key_from_did,
)
from provenance.core.places import (  # COUNTRY, LAT, LON: the names others import from here
    ADDRESS,
    COUNTRY,
    GLN,
    LAT,
    LOCATION,
    LON,
    PLACE_TYPE,
)

# Stable small codes for storage. Append only; never renumber.
KIND_CODES: dict[str, int] = {
    "enrol": 1,
    "revoke": 2,
    "commission": 3,
    "reading": 4,
    "attach": 5,
    "detach": 6,
    "ship": 7,
    "receive": 8,
    "transform": 9,
    "inspect": 10,
    "recall": 11,
    "recall-lift": 12,
    "dispense": 13,
    "epcis": 14,
    "hold": 15,
    "release": 16,
    "flag": 17,
    "grant": 18,
    "rotate": 19,
    "anchor": 20,  # 19 is `rotate` (the rotation work)
    "stability": 21,
    "pack": 22,
    "unpack": 23,
    "serials": 24,
    "recall-ack": 25,
    "cool": 26,  # FSMA 204 cooling (§ 1.1325(b))
    "place": 27,
}
KIND_NAMES = {code: name for name, code in KIND_CODES.items()}

REGISTRAR = "registrar"
DEVICE = "device"
# The rules engine's key (docs/rules.md): an identity of its own type, enrolled by
# the registrar like a party or device, that may sign only holds, releases and flags.
RULES = "rules"
IDENTITY_TYPES = ("party", DEVICE, REGISTRAR, RULES)

# Who may sign each kind, by enrolled role (devices have the role "device").
# Custodianship and the like are checked by the ledger against its state.
SIGNER_ROLES: dict[str, frozenset[str]] = {
    "enrol": frozenset({REGISTRAR}),
    "revoke": frozenset({REGISTRAR}),
    "commission": frozenset(COMMISSIONING_ROLES),
    "reading": frozenset({DEVICE}),
    "attach": frozenset(PARTY_ROLES),
    "detach": frozenset(PARTY_ROLES),
    "ship": frozenset(PARTY_ROLES),
    "receive": frozenset(PARTY_ROLES),
    "transform": frozenset(COMMISSIONING_ROLES),
    "inspect": frozenset(PARTY_ROLES),
    "recall": frozenset({"regulator"}),
    "recall-lift": frozenset({"regulator"}),
    "dispense": frozenset(PARTY_ROLES),
    "epcis": frozenset(PARTY_ROLES),
    "hold": frozenset({RULES}),
    "release": frozenset({RULES, "regulator"}),
    "flag": frozenset({RULES}),
    "grant": frozenset({REGISTRAR, "regulator"}),
    # The old key itself, or the registrar with a regulator's approval inside
    # (docs/protocol.md, "Key rotation"); the ledger checks which.
    "rotate": frozenset({*PARTY_ROLES, DEVICE, RULES, REGISTRAR}),
    # The operator vouches for its own audit trails (docs/protocol.md §11).
    "anchor": frozenset({REGISTRAR, RULES}),
    # A product's stability data come from who makes it: a party that may
    # commission under the GTIN's company prefix (the ledger checks the prefix).
    "stability": frozenset(COMMISSIONING_ROLES),
    # A party registers the places it operates (docs/protocol.md §15).
    "place": frozenset(PARTY_ROLES),
    # Whoever holds the lots packs them; the pallet's holder unpacks it (the
    # ledger checks both against its state: provenance/ledger/kinds/pallets.py).
    "pack": frozenset(PARTY_ROLES),
    "unpack": frozenset(PARTY_ROLES),
    # Cooling a raw agricultural commodity (FSMA 204): its custodian (the ledger checks).
    "cool": frozenset(PARTY_ROLES),
    # A holder's answer to a recall; the ledger checks it holds or held the lot.
    "recall-ack": frozenset(PARTY_ROLES),
    # A lot's maker issues its serials (the ledger checks it made the lot).
    "serials": frozenset(COMMISSIONING_ROLES),
}

# Kinds whose `batches` may be absent (the lots are derived), and kinds that
# concern identities rather than lots (their `batches` must be absent).
LOTS_OPTIONAL = frozenset({"reading", "epcis"})
NO_LOTS = frozenset({"enrol", "revoke", "grant", "rotate", "anchor", "stability"})
NO_LOTS |= {"place"}  # a place is about a location, filed under its GLN (place_chain)


EPCIS_STREAM_FRAGMENT = "#epcis"
ANCHOR_FRAGMENT = "#anchors/"
GS1_PREFIX_FRAGMENT = "#gs1"
PREFIXES_FIELD = "gs1_company_prefixes"
CUSTODIAL_FIELD = "custodial"  # enrol: true when the operator holds the party's key
MAX_PREFIXES = 64

# GS1 EPCIS 2.0 event types an imported `epcis` event may carry verbatim.
EPCIS_EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "TransformationEvent",
    "TransactionEvent",
    "AssociationEvent",
)
# xsd:dateTime as EPCIS uses it: a UTC `Z` or a ±hh:mm offset (the envelope's own
# `time` stays strict UTC; this is the partner's text, carried as signed).
_EPCIS_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)


# EPCIS 2.0 lets partners define their own event types (the schema's
# Extended-Event): a compact IRI such as example:CustomEvent, or an absolute URI.
_EPCIS_EXTENSION_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]{1,200}")


def epcis_stream(did_key: str) -> str:
    """The chain subject of a signer's imported EPCIS events that name no ledger
    lot: a DID URL of the signer (docs/protocol.md §5). Not the identity chain,
    which stays enrolments and revocations only."""
    return did_key + EPCIS_STREAM_FRAGMENT


def prefix_chain(did_key: str) -> str:
    """The chain subject of the `grant` events of a party: a DID URL of the
    party (docs/protocol.md §5), so that identity chains stay enrolments and
    revocations only."""
    return did_key + GS1_PREFIX_FRAGMENT


def anchor_chain(did_key: str, trail: str) -> str:
    """The chain subject of a signer's `anchor` events for one audit trail: a
    DID URL of the signer, `{did}#anchors/{trail}` (docs/protocol.md §5)."""
    return did_key + ANCHOR_FRAGMENT + trail


def stability_chain(gtin14: str) -> str:
    """The chain subject of a product's `stability` profiles: the GTIN's GS1
    Digital Link URI, ``https://id.gs1.org/01/{GTIN-14}`` (docs/protocol.md §5).
    The newest profile on it is the one in force."""
    return gs1.gtin_uri(gtin14)


def company_prefix_digits(gtin14: str) -> str:
    """The digits a GS1 company prefix is matched against: the GTIN-14 without
    its indicator digit (a GTIN-13's own digits; a GTIN-12's with a leading 0),
    as GS1 allocates prefixes (GS1 General Specifications §1.4.2)."""
    return gtin14[1:]


def under_prefix(gtin14: str, prefixes: Any) -> bool:
    """Whether the GTIN lies under one of *prefixes* (GS1 company prefixes)."""
    digits = company_prefix_digits(gtin14)
    return any(digits.startswith(prefix) for prefix in prefixes)


def company_prefixes(value: Any, field: str) -> None:
    """A list of GS1 company prefixes: 1 to MAX_PREFIXES distinct strings of 6 to
    12 digits, as GS1 issued them (without the indicator digit)."""
    if not isinstance(value, list):
        raise ValidationError(field, 'must be a list of GS1 company prefixes, e.g. ["9506000"]')
    if not 1 <= len(value) <= MAX_PREFIXES:
        raise ValidationError(field, f"must have 1 to {MAX_PREFIXES} items, got {len(value)}")
    for position, prefix in enumerate(value):
        if not isinstance(prefix, str) or not re.fullmatch(r"[0-9]{6,12}", prefix):
            raise ValidationError(
                f"{field}[{position}]",
                "must be a GS1 company prefix: 6 to 12 digits as GS1 issued it (without "
                f"the GTIN-14 indicator digit), e.g. 9506000; got {prefix!r}",
            )
    if len(set(value)) != len(value):
        raise ValidationError(field, "lists a prefix twice")


def epcis_event(value: Any, field: str) -> None:
    """An EPCIS 2.0 event object, carried verbatim: only its `type` and
    `eventTime` are checked here (the envelope's size and depth limits bound
    the rest; its JSON must be representable in JCS, so no integers beyond
    ±(2**53 - 1))."""
    if not isinstance(value, dict):
        raise ValidationError(field, "must be an EPCIS 2.0 event object")
    event_type = value.get("type")
    extension = isinstance(event_type, str) and _EPCIS_EXTENSION_TYPE.fullmatch(event_type)
    if event_type not in EPCIS_EVENT_TYPES and not extension:
        raise ValidationError(
            f"{field}.type",
            f"must be one of {', '.join(EPCIS_EVENT_TYPES)}, or an extension event type "
            f"named by a prefixed name or URI (e.g. example:CustomEvent); got {event_type!r}",
        )
    event_time = value.get("eventTime")
    if not isinstance(event_time, str) or not _EPCIS_TIME.fullmatch(event_time):
        raise ValidationError(
            f"{field}.eventTime",
            "is required: an xsd:dateTime with Z or a ±hh:mm offset, "
            f"e.g. 2005-04-03T20:33:31.116-06:00; got {event_time!r}",
        )


# --- shared shapes


def sscc(value: Any, field: str) -> None:
    """A Serial Shipping Container Code: 18 digits ending in the GS1 check digit."""
    sscc_rules.validate_sscc(value, field)


SSCC = sscc
SSCCS = list_of(sscc, 1, sscc_rules.MAX_SHIPMENT_PALLETS)

UNIT = text(3, r"[A-Z0-9]{2,3}", "must be a UN/CEFACT Rec 20 unit code such as KGM, EA or H87")
QUANTITY = obj({"value": number(0, 1e12), "unit": UNIT})
# ship/receive: how much of each lot moves (docs/protocol.md, "Quantities")
LOT_QUANTITIES = list_of(obj({"batch": lot_uri, "quantity": QUANTITY}))
PROFILE = text(32, r"[a-z0-9][a-z0-9-]*", "must be a profile name such as chilled or vaccine")
CATEGORY = one_of("food", "vaccine")
RECALL_RETURN = "recall-return"
SHIP_PURPOSE = one_of(RECALL_RETURN)  # docs/protocol.md §3: shipping a recalled lot back
PRODUCT = text(200)
# FSMA 204 reference documents (21 CFR 1.1310: "reference document type and number")
# on ship, receive, transform, commission and cool (docs/protocol.md, FSMA 204).
DOCUMENT_TYPES = ("bol", "invoice", "po", "asn", "work-order", "other")
MAX_DOCUMENTS = 16
DOCUMENTS = list_of(obj({"type": one_of(*DOCUMENT_TYPES), "number": text(100)}), 1, MAX_DOCUMENTS)
# The CTE a commission records (docs/fsma204.md); absent: initial packing by a
# producer, transformation by a processor, as before the field existed.
COMMISSION_CTES = ("harvesting", "initial-packing", "first-land-based-receiving")
FIRST_LAND_BASED_RECEIVING = "first-land-based-receiving"
HARVEST = obj({}, {"date": a_date, "farm": LOCATION, "field": text()})
COOLING = obj({"date": a_date}, {"location": LOCATION})
LANDING = obj(
    {"vessel": obj({"name": text()}, {"id": text(100), "flag": COUNTRY})},
    {"harvest_from": a_date, "harvest_to": a_date, "area": text()},
)
DEVICE_NAME = text(64, r"[A-Za-z0-9][A-Za-z0-9._:-]*", "letters, digits and . _ : - only")
RULE_NAME = text(
    64, r"[a-z0-9][a-z0-9._-]*", "must be a rule name: lowercase letters, digits and . _ - only"
)
TRAIL_NAME = text(
    64, r"[a-z0-9][a-z0-9._-]*", "must be a trail name: lowercase letters, digits and . _ - only"
)
TEMPERATURE = number(-100, 150, " °C")
ALLOWED_HOURS = number(0.001, 1e6, " h")
MAX_STABILITY_BANDS = 16
STABILITY_BAND = obj({"low_c": TEMPERATURE, "high_c": TEMPERATURE, "hours": ALLOWED_HOURS})
ARRHENIUS = obj(
    {
        "activation_kj_mol": number(1, 500, " kJ/mol"),
        "reference_c": TEMPERATURE,
        "hours": ALLOWED_HOURS,
    }
)
VVM_CATEGORY = one_of("VVM30", "VVM14", "VVM7", "VVM2")  # WHO PQS E006 (docs/coldchain.md)
MAX_SERIALS_PER_EVENT = 1000  # 1,000 × ≤ 20 characters stays far below the envelope limit


def serial(value: Any, field: str) -> None:
    """An item's serial number, GS1 AI (21): 1-20 characters of character set 82."""
    if isinstance(value, str):
        gs1.validate_serial(value, field)
        if value in gs1.DOT_SEGMENTS:
            raise ValidationError(field, f"{value!r} cannot be carried in a web address (/21/…)")
    else:
        raise ValidationError(field, "must be a serial number: 1-20 characters (GS1 AI 21)")


SIGNAL = text(
    32, r"[a-z][a-z0-9-]*", "must be a signal type such as coldchain, logger-silent or counterfeit"
)

READING_MEASURES = {
    "temperature_c": number(-100, 150, " °C"),
    "humidity_pct": number(0, 100, " %"),
    "lat": LAT,
    "lon": LON,
    "shock_g": number(0, 1000, " g"),
    "door_open": boolean,
    "battery_pct": number(0, 100, " %"),
}

DATA_SCHEMAS: dict[str, tuple[dict[str, Validator], dict[str, Validator]]] = {
    "enrol": (
        {"subject": did, "type": one_of(*IDENTITY_TYPES), "name": text(100)},
        {
            "role": one_of(*PARTY_ROLES),
            "owner": did,
            PREFIXES_FIELD: company_prefixes,
            CUSTODIAL_FIELD: boolean,
            "pgln": GLN,
            "address": ADDRESS,
        },
    ),
    "revoke": ({"subject": did, "from": timestamp}, {"reason": note()}),
    "commission": (
        {"gtin": text(14), "lot": text(20), "product": PRODUCT},
        {
            "category": CATEGORY,
            "origin": LOCATION,
            "produced": date_or_time,
            "expiry": a_date,
            "quantity": QUANTITY,
            "profile": PROFILE,
        },
    ),
    "reading": ({}, {**READING_MEASURES, "sensor": DEVICE_NAME}),
    "attach": ({"device": did}, {}),
    "detach": ({"device": did}, {}),
    "ship": (
        {"to": did},
        {
            "location": LOCATION,
            "purpose": SHIP_PURPOSE,
            "quantities": LOT_QUANTITIES,
            "pallets": SSCCS,
        },
    ),
    "receive": (
        {"shipment": event_id},
        {
            "location": LOCATION,
            "condition": note(),
            "quantities": LOT_QUANTITIES,
            "damaged": LOT_QUANTITIES,
            "pallets": SSCCS,
        },
    ),
    "transform": (
        {
            "inputs": list_of(obj({"batch": lot_uri, "quantity": QUANTITY})),
            "outputs": list_of(
                obj(
                    {"batch": lot_uri, "quantity": QUANTITY},
                    {
                        "product": PRODUCT,
                        "category": CATEGORY,
                        "expiry": a_date,
                        "profile": PROFILE,
                    },
                )
            ),
        },
        {"location": LOCATION},
    ),
    "inspect": (
        {"result": one_of("pass", "fail")},
        {
            "document": obj(
                {"sha256": sha256_hex, "name": text(), "media_type": text(100)},
            ),
            "notes": note(),
        },
    ),
    "recall": (
        {"reason": note(), "class": one_of("I", "II", "III")},
        {"instructions": note()},
    ),
    "recall-lift": ({"reason": note()}, {}),
    "dispense": ({"quantity": QUANTITY}, {"location": LOCATION}),
    "epcis": ({"event": epcis_event}, {}),
    "hold": ({"rule": RULE_NAME, "reason": note()}, {"evidence": evidence}),
    "release": ({"reason": note()}, {"hold": event_id}),
    "flag": (
        {"signal": SIGNAL, "rule": RULE_NAME, "reason": note(), "key": text(200)},
        {"evidence": evidence},
    ),
    "grant": ({"subject": did, PREFIXES_FIELD: company_prefixes}, {"reason": note()}),
    "rotate": (
        {"subject": did, "key": did},
        {
            "reason": note(),
            "approval": obj({"regulator": did, "signature": text(100)}),
            CUSTODIAL_FIELD: boolean,
        },
    ),
    "anchor": ({"trail": TRAIL_NAME, "count": count, "head": sha256_hex}, {}),
    "stability": (
        {"gtin": text(14)},
        {
            "bands": list_of(STABILITY_BAND, 1, MAX_STABILITY_BANDS),
            "arrhenius": ARRHENIUS,
            "vvm": VVM_CATEGORY,
            "source": text(500),
        },
    ),
    "place": (
        {"gln": GLN, "name": text()},
        {"address": ADDRESS, "lat": LAT, "lon": LON, "type": PLACE_TYPE},
    ),
    "pack": (
        {
            "sscc": SSCC,
            "contents": list_of(
                obj({"batch": lot_uri, "quantity": QUANTITY}), 1, sscc_rules.MAX_PALLET_LOTS
            ),
        },
        {"parent": SSCC},
    ),
    "unpack": ({"sscc": SSCC}, {}),
    "cool": ({}, {"location": LOCATION, "quantity": QUANTITY, "documents": DOCUMENTS}),
    "recall-ack": (
        {"recall": event_id},
        {"returned": QUANTITY, "destroyed": QUANTITY, "notes": note()},
    ),
    "serials": ({"serials": list_of(serial, 1, MAX_SERIALS_PER_EVENT)}, {}),
}
# FSMA 204 (docs/protocol.md, its FSMA 204 section), optional so that every older envelope
# stays valid: the reference documents of commission, ship, receive and transform, and a
# commission's CTE with its Key Data Elements. Added here rather than in the entries above,
# which other work on these kinds edits.
for _kind in ("commission", "ship", "receive", "transform"):
    DATA_SCHEMAS[_kind][1]["documents"] = DOCUMENTS
DATA_SCHEMAS["commission"][1].update(
    {
        "cte": one_of(*COMMISSION_CTES),
        "variety": text(),
        "harvest": HARVEST,
        "cooling": COOLING,
        "landing": LANDING,
    }
)


def validate_data(kind: str, data: Any, lots: tuple[str, ...] | None) -> None:
    """Check `data` of *kind* against its schema and the cross-field rules that
    need nothing but the envelope itself."""
    required, optional = DATA_SCHEMAS[kind]
    if not isinstance(data, dict):
        raise ValidationError("data", "must be an object")
    check_fields(data, required, {**optional, "ext": ext}, "data")
    rule = _CROSS_CHECKS.get(kind)
    if rule:
        rule(data, lots)


def custodial(enrolment: dict[str, Any]) -> bool:
    """Whether the operator holds the key a party's enrolment names. Enrolments
    from before the field say nothing: their keys were made by the operator
    (`party add` had no other way), so they count as custodial."""
    return enrolment.get(CUSTODIAL_FIELD) is not False


def _check_enrol(data: dict[str, Any], _lots: Any) -> None:
    if not is_usable_public_key(public_key_from_did(data["subject"], "data.subject")):
        raise ValidationError(
            "data.subject",
            "is not a usable Ed25519 public key (a small-order or off-curve point: no "
            "signature by it can verify); generate a new key pair and enrol that",
        )
    kind = data["type"]
    if kind == "party" and "role" not in data:
        raise ValidationError(
            "data.role", f"is required for a party: one of {', '.join(PARTY_ROLES)}"
        )
    if kind != "party" and "role" in data:
        raise ValidationError("data.role", "only parties have a role")
    if kind == "device":
        if "owner" not in data:
            raise ValidationError("data.owner", "is required for a device: the owning party's did")
        DEVICE_NAME(data["name"], "data.name")
    elif "owner" in data:
        raise ValidationError("data.owner", "only devices have an owner")
    if data.get(CUSTODIAL_FIELD) is not None and kind != "party":
        raise ValidationError(f"data.{CUSTODIAL_FIELD}", "only parties' enrolments say it")
    if data.get(CUSTODIAL_FIELD) is True and data.get("role") == "regulator":
        raise ValidationError(
            f"data.{CUSTODIAL_FIELD}",
            "a regulator's key is never held by the operator: the regulator makes it on its "
            "own machine and is enrolled by its public key",
        )
    if PREFIXES_FIELD in data and data.get("role") not in COMMISSIONING_ROLES:
        raise ValidationError(
            f"data.{PREFIXES_FIELD}",
            "only parties that commission lots (producer, processor) hold GS1 company prefixes",
        )
    for field in ("pgln", "address"):
        if field in data and kind != "party":
            raise ValidationError(f"data.{field}", "only a party's enrolment gives one")


def _check_commission(data: dict[str, Any], lots: tuple[str, ...] | None) -> None:
    gtin = gs1.normalize_gtin(data["gtin"], field="data.gtin")
    lot = gs1.require_linkable_lot(gs1.validate_lot(data["lot"], field="data.lot"), "data.lot")
    uri = gs1.lot_uri(gtin, lot)
    if lots != (uri,):
        raise ValidationError("batches", f"a commission names exactly its own lot: [{uri!r}]")
    landed = data.get("cte") == FIRST_LAND_BASED_RECEIVING
    if landed != ("landing" in data):
        raise ValidationError(
            "data.landing",
            f'is required with "cte": "{FIRST_LAND_BASED_RECEIVING}" (the fishing vessel '
            "the food came from) and allowed only with it",
        )
    harvest = data.get("landing", {})
    if harvest.get("harvest_to", "9") < harvest.get("harvest_from", "0"):
        raise ValidationError("data.landing.harvest_to", "is before harvest_from")


def _check_reading(data: dict[str, Any], _lots: Any) -> None:
    if not any(name in data for name in READING_MEASURES):
        raise ValidationError(
            "data", f"a reading needs at least one of {', '.join(READING_MEASURES)}"
        )


def _check_rotate(data: dict[str, Any], _lots: Any) -> None:
    if data["key"] == data["subject"]:
        raise ValidationError("data.key", "is the key being rotated away from: give the new key")
    if not is_usable_public_key(public_key_from_did(data["key"], "data.key")):
        raise ValidationError(
            "data.key",
            "is not a usable Ed25519 public key (a small-order or off-curve point: no "
            "signature by it can verify); generate a new key pair and rotate to that",
        )


_CROSS_CHECKS: dict[str, Callable[[dict[str, Any], Any], None]] = {
    "enrol": _check_enrol,
    "rotate": _check_rotate,
    "commission": _check_commission,
    "reading": _check_reading,
    "transform": kind_checks.check_transform,
    "stability": kind_checks.check_stability,
    "pack": kind_checks.check_pack,
    "ship": kind_checks.check_shipment_lists,
    "receive": kind_checks.check_shipment_lists,
    "place": kind_checks.check_place,
    "recall-ack": kind_checks.check_recall_ack,
    "serials": kind_checks.check_serials,
}
