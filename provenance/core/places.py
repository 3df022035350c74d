"""The shapes of places in wire protocol v1 (docs/protocol.md §15): where an event
happened (`LOCATION`), a postal address (`ADDRESS`), a GLN with its GS1 check
digit (`GLN`, a party's PGLN too), what kind of place a registered one is
(`PLACE_TYPES`), and the chain a place's registrations are filed under
(`place_chain`). Pure validation, as provenance/core/kinds.py, which uses them.
"""

from __future__ import annotations

from typing import Any

from provenance.core import gs1
from provenance.core.errors import ValidationError
from provenance.core.fields import new_input_rules, number, obj, one_of, text


def place_chain(gln: str) -> str:
    """The chain subject of a place's `place` events: the GLN's GS1 Digital Link
    URI, ``https://id.gs1.org/414/{GLN}`` (docs/protocol.md §15). The newest
    registration on it is the one in force."""
    return f"{gs1.DEFAULT_BASE}/414/{gln}"


LAT = number(-90, 90)
LON = number(-180, 180)
COUNTRY = text(2, r"[A-Z]{2}", "must be an ISO 3166-1 alpha-2 country code such as KE")
GLN_DIGITS = text(13, r"[0-9]{13}", "must be a 13-digit GLN")


def GLN(value: Any, field: str) -> None:
    """A GLN (a location's `gln`, a party's `pgln`): 13 digits, the last the GS1
    check digit. The check digit is a rule for new input: envelopes signed when
    13 digits were enough still verify (`fields.text_as_signed`, docs/protocol.md §15)."""
    GLN_DIGITS(value, field)
    if new_input_rules():
        gs1.validate_gln(value, field)


ADDRESS_PARTS = ("street", "city", "postal_code", "region", "country")
_ADDRESS = obj(
    {},
    {
        "street": text(200),
        "city": text(100),
        "postal_code": text(20),
        "region": text(100),
        "country": COUNTRY,
    },
)


def ADDRESS(value: Any, field: str) -> None:
    """A postal address: at least one of street, city, postal_code, region and
    country (ISO 3166-1 alpha-2)."""
    _ADDRESS(value, field)
    if not value:
        raise ValidationError(field, f"needs at least one of {', '.join(ADDRESS_PARTS)}")


_LOCATION = obj(
    {}, {"name": text(), "lat": LAT, "lon": LON, "country": COUNTRY, "gln": GLN, "address": ADDRESS}
)


def LOCATION(value: Any, field: str) -> None:
    """Where an event happened: a name (and perhaps coordinates, a country, a GLN,
    an address), or only the GLN of a place registered with a `place` event."""
    _LOCATION(value, field)
    if "name" not in value and "gln" not in value:
        raise ValidationError(
            f"{field}.name",
            'is required unless the location is a registered place cited by its GLN: {"gln": …}',
        )


PLACE_TYPES = (
    "farm",
    "packhouse",
    "processing-plant",
    "warehouse",
    "distribution-centre",
    "port",
    "store",
    "restaurant",
    "pharmacy",
    "clinic",
    "hospital",
    "other",
)
PLACE_TYPE = one_of(*PLACE_TYPES)
