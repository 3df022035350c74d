"""A world with pallets: two lots on one pallet (a case of one of them on it),
for the pallet tests of the ledger, the scan page, the CLI and EPCIS.

world = pallet_world(World.create())   # farm packed PALLET (CASE on it), unshipped
"""

from __future__ import annotations

from typing import Any

from provenance.core.gs1 import check_digit
from support.world import GTIN, LOT, World, at

LOT2 = f"https://id.gs1.org/01/{GTIN}/10/LOT43"
LOT3 = f"https://id.gs1.org/01/{GTIN}/10/LOT44"
KG = "KGM"


def sscc(serial: int, prefix: str = "0614141", extension: str = "1") -> str:
    """An SSCC under *prefix* (the world's producer holds 0614141)."""
    body = extension + prefix + str(serial).zfill(16 - len(prefix))
    return body + check_digit(body)


PALLET = sscc(1)
CASE = sscc(2)


def contents(*lots: str, value: float = 100) -> list[dict[str, Any]]:
    return [{"batch": uri, "quantity": {"value": value, "unit": KG}} for uri in lots]


def commission(world: World, uri: str, lot: str) -> None:
    world.ok(
        "farm",
        "commission",
        [uri],
        {"gtin": GTIN, "lot": lot, "product": "Kale", "quantity": {"value": 500, "unit": KG}},
        time=at(0),
    )


def pallet_world(world: World) -> World:
    """LOT42 and LOT43 packed on PALLET by the farm; LOT44 in CASE on PALLET."""
    commission(world, LOT2, "LOT43")
    commission(world, LOT3, "LOT44")
    world.ok(
        "farm", "pack", [LOT, LOT2], {"sscc": PALLET, "contents": contents(LOT, LOT2)}, time=at(2)
    )
    world.ok(
        "farm",
        "pack",
        [LOT3],
        {"sscc": CASE, "parent": PALLET, "contents": contents(LOT3, value=20)},
        time=at(2.5),
    )
    return world


def ship_pallet(world: World, to: str = "dc", hours: float = 3) -> str:
    """Ship PALLET (and so everything on it) from the farm to *to*; its event id."""
    shipped = world.ok(
        "farm",
        "ship",
        [LOT, LOT2, LOT3],
        {"to": world.did(to), "pallets": [PALLET]},
        time=at(hours),
    )
    return shipped.event_id
