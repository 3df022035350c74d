"""What an imported EPCIS event says, as text a reader of a spreadsheet wants: CBV short
names (``shipping``, ``po``), places and parties as ``GLN …``, and the lots of its quantity
lists. Pure; the FSMA 204 rows (:mod:`provenance.exchange.fsma204`) use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from provenance.exchange.canonical_values import normalise_identifier
from provenance.exchange.epcis_import import lot_of


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def short_name(value: Any, web: str, urn: str) -> str | None:
    """The CBV short name of a bizStep or business transaction type in any of its spellings."""
    if not isinstance(value, str):
        return None
    for marker in (web, urn):
        if marker in value:
            return value.split(marker, 1)[1]
    return value.split(":", 1)[1] if value.startswith("cbv:") else value


def identifier_text(value: Any) -> str | None:
    """A location or party identifier as a reader wants it: ``GLN …`` when it is one."""
    if not isinstance(value, str):
        return None
    normal = normalise_identifier(value) or value
    match = re.fullmatch(r"https://id\.gs1\.org/(414|417)/([0-9]{13})(?:/254/(.+))?", normal)
    if match:
        return f"GLN {match[2]}" + (f" (extension {match[3]})" if match[3] else "")
    return value


def place(value: Any) -> str | None:
    return identifier_text(value.get("id")) if isinstance(value, Mapping) else None


def ends(value: Any, key: str) -> str | None:
    """A source or destination list as text: its locations first, then its parties."""
    ends = [end for end in as_list(value) if isinstance(end, Mapping) and end.get(key)]
    ends.sort(key=lambda end: short_name(end.get("type"), "SDT-", "sdt:") != "location")
    names = []
    for end in ends:
        text = identifier_text(end[key])
        if text and text not in names:
            names.append(text)
    return "; ".join(names) or None


def quantities(value: Any) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(lot URI, quantity) for each LGTIN class in a quantity list."""
    for element in as_list(value):
        if not isinstance(element, Mapping):
            continue
        uri = lot_of(element.get("epcClass"))
        if uri is None:
            continue
        amount = element.get("quantity")
        quantity = None
        if isinstance(amount, (int, float)) and not isinstance(amount, bool):
            quantity = {"value": amount, "unit": element.get("uom")}
        yield uri, quantity
