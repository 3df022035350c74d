"""The demo's quantities step (docs/protocol.md, "Quantities"): the farm
splits one lot of kale across two shops, one of them receives it short and
partly damaged, over-shipping is refused with a reason, and `provenance
trace` says who holds how much now. Called once from
`provenance.cli.demo_story.narrate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # demo_story imports this module
    from provenance.cli.demo_story import Demo

SPLIT = "KALE-2613"  # 1,000 kg, split across two shops
SHOP_A = "Corner Shop"
SHOP_B = "Market Stall"

Append = Callable[..., str]


def split_lot(demo: Demo, at: Callable[[float], str], append: Append) -> None:
    """A 1,000 kg lot: 400 kg to one shop, 250 kg to another (received 240 kg,
    5 kg damaged, 5 kg short), 400 kg more refused (only 350 kg are free)."""
    from provenance.cli.demo_story import FARM, GTIN

    uri = f"https://id.gs1.org/01/{GTIN}/10/{SPLIT}"

    def _kilograms(value: float) -> list[dict]:
        return [{"batch": uri, "quantity": {"value": value, "unit": "KGM"}}]

    demo.say(
        f"10b. Quantities: the farm splits {SPLIT} (1,000 kg) across two shops; one receives "
        "it short, and shipping more than is left is refused"
    )
    shop_a = demo.run("party", "add", SHOP_A, "--role", "retailer").strip()
    shop_b = demo.run("party", "add", SHOP_B, "--role", "retailer").strip()
    append(
        FARM,
        {
            "kind": "commission",
            "batches": [uri],
            "data": {
                "gtin": GTIN,
                "lot": SPLIT,
                "product": "Curly kale, loose",
                "category": "food",
                "profile": "chilled",
                "quantity": {"value": 1000, "unit": "KGM"},
            },
            "time": at(1),
        },
    )
    to_a = append(
        FARM,
        {
            "kind": "ship",
            "batches": [uri],
            "data": {"to": shop_a, "quantities": _kilograms(400)},
            "time": at(1.5),
        },
    ).strip()
    to_b = append(
        FARM,
        {
            "kind": "ship",
            "batches": [uri],
            "data": {"to": shop_b, "quantities": _kilograms(250)},
            "time": at(1.6),
        },
    ).strip()
    append(
        SHOP_A,
        {"kind": "receive", "batches": [uri], "data": {"shipment": to_a}, "time": at(2)},
    )
    append(
        SHOP_B,
        {
            "kind": "receive",
            "batches": [uri],
            "data": {
                "shipment": to_b,
                "quantities": _kilograms(240),
                "damaged": _kilograms(5),
                "condition": "two crates crushed; 5 kg missing",
            },
            "time": at(2.2),
        },
    )
    append(  # 350 kg are left at the farm: 400 kg more is refused, naming both
        FARM,
        {
            "kind": "ship",
            "batches": [uri],
            "data": {"to": shop_a, "quantities": _kilograms(400)},
            "time": at(2.5),
        },
        expect=1,
    )
    demo.run("trace", uri, "--direction", "forward")
