"""Lineage in tests: lots named by a short code, commissioning them and
transforms between them (the fixtures of test_lineage, test_recall and
test_notify), and the ledger from before lineage kept in tests/fixtures/."""

from __future__ import annotations

from pathlib import Path

from support.world import GTIN, World, at


def lot(code: str) -> str:
    return f"https://id.gs1.org/01/{GTIN}/10/{code}"


def commission(world: World, code: str, who: str = "farm", value: float = 100, **extra) -> None:
    data = {"gtin": GTIN, "lot": code, "product": f"Product {code}"}
    data["quantity"] = {"value": value, "unit": extra.pop("unit", "KGM")}
    world.ok(who, "commission", [lot(code)], {**data, **extra}, time=at(0))


def transform(
    world: World,
    who: str,
    inputs: dict[str, float],
    outputs: dict[str, float],
    *,
    unit_in: str = "KGM",
    unit_out: str = "EA",
    hours: float = 1,
    location: dict | None = None,
):
    data: dict = {
        "inputs": [
            {"batch": lot(code), "quantity": {"value": value, "unit": unit_in}}
            for code, value in inputs.items()
        ],
        "outputs": [
            {"batch": lot(code), "quantity": {"value": value, "unit": unit_out}, "product": code}
            for code, value in outputs.items()
        ],
    }
    if location:
        data["location"] = location
    lots = [lot(code) for code in (*inputs, *outputs)]
    return world.append(who, "transform", lots, data, time=at(hours))


def ok_transform(world: World, *args, **kwargs):
    result = transform(world, *args, **kwargs)
    assert result.status == "accepted", result
    return result


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


BEFORE_LINEAGE_LOG_KEY = "7a0d71b98e48961ea9d9c1997c7381adc6938be1c0ec1245284349c568ac080a"
