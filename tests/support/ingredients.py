"""A product made from other lots, for the ingredient tests (page, twin, browser): SALAD1
made from the World's kale (LOT42, chilled), which was too warm on the farm, and chard."""

from __future__ import annotations

from provenance.core import gs1
from support.world import GTIN, HOUR, LOT, T0, World, at

SALAD = gs1.lot_uri(GTIN, "SALAD1")
CHARD = gs1.lot_uri(GTIN, "CHARD7")


def make_salad(world: World) -> None:
    """SALAD1 made at 12 h from LOT42 (Kale, chilled, 3 h at 9 °C on the farm) and
    CHARD7 (no temperature requirement)."""
    world.ledger.append(
        [world.reading(1 + k / 4, 9.0 if 3 <= 1 + k / 4 < 6 else 3.0) for k in range(36)]
    )
    world.ok("farm", "detach", [LOT], {"device": world.did("probe")}, time=at(10))
    world.ok(
        "farm",
        "commission",
        [CHARD],
        {"gtin": GTIN, "lot": "CHARD7", "product": "Chard", "origin": {"name": "Hill Farm"}},
        time=at(1),
    )
    quantity = {"value": 2, "unit": "KGM"}
    world.ok(
        "farm",
        "transform",
        [LOT, CHARD, SALAD],
        {
            "inputs": [
                {"batch": LOT, "quantity": quantity},
                {"batch": CHARD, "quantity": quantity},
            ],
            "outputs": [{"batch": SALAD, "quantity": quantity, "product": "Salad"}],
        },
        time=at(12),
    )
    world.now = T0 + 13 * HOUR
