"""Cross-field rules of the kinds whose data one field's validator cannot
judge alone: which lots a transform, a pack, a serials issue or a recall
acknowledgement names, the lists a shipment carries, stability bands, a
place's coordinates. Pure; `provenance.core.kinds.validate_data` runs them
after each field passed its own validator (docs/protocol.md §3)."""

from __future__ import annotations

import itertools
from typing import Any

from provenance.core import gs1
from provenance.core.errors import ValidationError


def check_transform(data: dict[str, Any], lots: tuple[str, ...] | None) -> None:
    inputs = [item["batch"] for item in data["inputs"]]
    outputs = [item["batch"] for item in data["outputs"]]
    everything = inputs + outputs
    if len(set(everything)) != len(everything):
        raise ValidationError("data", "a lot may appear only once among inputs and outputs")
    if lots is None or sorted(lots) != sorted(everything):
        raise ValidationError("batches", "must list exactly the transform's input and output lots")
    for index, uri in enumerate(outputs):  # new lots
        gs1.require_linkable_lot(gs1.parse_lot_uri(uri)[1], f"data.outputs[{index}].batch")


def check_recall_ack(_data: dict[str, Any], lots: tuple[str, ...] | None) -> None:
    if lots is None or len(lots) != 1:
        raise ValidationError(
            "batches", "a recall acknowledgement names exactly one lot: sign one per lot"
        )


def check_stability(data: dict[str, Any], _lots: Any) -> None:
    gtin = gs1.normalize_gtin(data["gtin"], field="data.gtin")
    if gtin != data["gtin"]:
        raise ValidationError("data.gtin", f"must be written as a GTIN-14: {gtin}")
    if not any(part in data for part in ("bands", "arrhenius", "vvm")):
        raise ValidationError(
            "data", "a stability profile needs at least one of bands, arrhenius or vvm"
        )
    bands = sorted(data.get("bands", ()), key=lambda band: band["low_c"])
    for position, band in enumerate(data.get("bands", ())):
        if band["low_c"] >= band["high_c"]:
            raise ValidationError(
                f"data.bands[{position}]",
                f"low_c must be below high_c, got {band['low_c']} and {band['high_c']}",
            )
    for below, above in itertools.pairwise(bands):
        if above["low_c"] < below["high_c"]:
            raise ValidationError(
                "data.bands",
                f"{below['low_c']}–{below['high_c']} °C and {above['low_c']}–{above['high_c']} "
                "°C overlap: bands may share an edge only",
            )


def check_lot_quantities(data: dict[str, Any], lots: tuple[str, ...] | None) -> None:
    """ship/receive `quantities` and `damaged` name each lot once, and only
    lots the envelope's `batches` list."""
    for name in ("quantities", "damaged"):
        named = [item["batch"] for item in data.get(name, ())]
        if len(set(named)) != len(named):
            raise ValidationError(f"data.{name}", "may name each lot only once")
        for position, uri in enumerate(named):
            if uri not in (lots or ()):
                raise ValidationError(
                    f"data.{name}[{position}].batch", f"{uri} is not among the event's batches"
                )


def check_place(data: dict[str, Any], _lots: Any) -> None:
    if ("lat" in data) != ("lon" in data):
        raise ValidationError("data", "give both lat and lon, or neither")


def check_pack(data: dict[str, Any], lots: tuple[str, ...] | None) -> None:
    contents = [item["batch"] for item in data["contents"]]
    if len(set(contents)) != len(contents):
        raise ValidationError("data.contents", "lists a lot twice: give each lot once")
    if lots is None or sorted(lots) != sorted(contents):
        raise ValidationError("batches", "must list exactly the lots of data.contents")
    if data.get("parent") == data["sscc"]:
        raise ValidationError(
            "data.parent", "is the unit being packed: a case is packed on another unit"
        )


def check_pallets(data: dict[str, Any], _lots: Any) -> None:
    pallets = data.get("pallets", ())
    if len(set(pallets)) != len(pallets):
        raise ValidationError("data.pallets", "lists an SSCC twice")


def check_shipment_lists(data: dict[str, Any], lots: tuple[str, ...] | None) -> None:
    check_lot_quantities(data, lots)
    check_pallets(data, lots)


def check_serials(data: dict[str, Any], lots: Any) -> None:
    """One lot per issue, and no serial twice in it (across events: the ledger)."""
    if lots is None or len(lots) != 1:
        raise ValidationError("batches", "must name exactly one lot: serials are issued per lot")
    seen: set[str] = set()
    for position, value in enumerate(data["serials"]):
        if value in seen:
            raise ValidationError(f"data.serials[{position}]", f"repeats serial {value!r}")
        seen.add(value)
