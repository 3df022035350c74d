"""FSMA 204 complete: every Critical Tracking Event of 21 CFR 1 subpart S recorded in a
ledger with its Key Data Elements (harvesting, cooling, initial packing, first land-based
receiving, shipping, receiving, transformation), reference documents (bill of lading,
invoice…), the column map as the one source of the headers and of docs/fsma204.md, the
regulator's 24-hour request sheet read back with openpyxl, and the schema and ledger rules
of the new fields and of `cool` (kind 26).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.world import GTIN, LOT, World, at

from provenance.cli.exchange import export_fsma204
from provenance.core import gs1
from provenance.core.errors import ValidationError
from provenance.core.kinds import KIND_CODES, validate_data
from provenance.exchange import fsma_columns
from provenance.exchange.epcis_vocabulary import LedgerEvent
from provenance.exchange.fsma204 import store_rows
from provenance.exchange.fsma_columns import (
    COLUMN_MAP,
    COOLING,
    CTES,
    FIRST_LAND_BASED_RECEIVING,
    HARVESTING,
    HEADER,
    INITIAL_PACKING,
    RECEIVING,
    SHIPPING,
    TRANSFORMATION,
    kde_columns,
)
from provenance.exchange.fsma_rows import REFERENCE_TYPE, Lookups, TraceabilityLot, cte_rows

ROOT = Path(__file__).resolve().parent.parent
COLUMN = {name: index for index, name in enumerate(HEADER)}
HARVEST = gs1.lot_uri(GTIN, "H-0921")
PACKED = gs1.lot_uri(GTIN, "P-0921")
TUNA = gs1.lot_uri(GTIN, "F-0921")
SALAD = gs1.lot_uri(GTIN, "S-0921")
FIELD = {"name": "Green Valley, field 4", "lat": -0.42, "lon": 36.95, "country": "KE"}
COOLER = {"name": "Hydro-cooler 2", "gln": "4012345000115", "country": "KE"}
SHED = {"name": "Packing shed", "country": "KE"}
HARBOUR = {"name": "Mombasa fish landing", "country": "KE", "lat": -4.06, "lon": 39.67}
PLANT = {"name": "Salad plant", "country": "KE"}
KGM = {"value": 100, "unit": "KGM"}


def cell(row: tuple[Any, ...], name: str) -> Any:
    return row[COLUMN[name]]


def docs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"type": kind, "number": number} for kind, number in pairs]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> World:
    """Each CTE once, every KDE the ledger can carry given."""
    w = World.create(tmp_path_factory.mktemp("ctes"))
    commission = {"gtin": GTIN, "product": "Kale", "quantity": KGM, "variety": "Lacinato"}
    w.ok("farm", "commission", [HARVEST], commission | {
        "lot": "H-0921", "cte": "harvesting", "origin": FIELD,
        "harvest": {"field": "Block 4"}, "documents": docs(("other", "FIELD-TAG-88")),
    }, time=at(1))  # fmt: skip
    w.ok("farm", "cool", [HARVEST], {
        "location": COOLER, "quantity": {"value": 98, "unit": "KGM"},
        "documents": docs(("work-order", "COOL-7")),
    }, time=at(2))  # fmt: skip
    w.ok("farm", "commission", [PACKED], commission | {
        "lot": "P-0921", "cte": "initial-packing", "origin": SHED,
        "harvest": {"date": "2026-09-21", "farm": FIELD, "field": "Block 4"},
        "cooling": {"date": "2026-09-21", "location": COOLER},
        "documents": docs(("work-order", "PACK-12")),
    }, time=at(3))  # fmt: skip
    w.ok("farm", "commission", [TUNA], {
        "gtin": GTIN, "lot": "F-0921", "product": "Yellowfin tuna", "quantity": KGM,
        "cte": "first-land-based-receiving", "origin": HARBOUR,
        "landing": {
            "vessel": {"name": "Bahari Star", "id": "IMO 9123456", "flag": "KE"},
            "harvest_from": "2026-09-14", "harvest_to": "2026-09-19", "area": "FAO 51",
        },
        "documents": docs(("other", "CATCH-CERT-5")),
    }, time=at(3.5))  # fmt: skip
    shipped = w.ok("farm", "ship", [PACKED], {
        "to": w.did("packer"), "location": SHED,
        "documents": docs(("bol", "BOL-4411"), ("invoice", "INV-2026-17")),
    }, time=at(4))  # fmt: skip
    w.ok("packer", "receive", [PACKED], {
        "shipment": shipped.event_id, "location": PLANT,
        "documents": docs(("bol", "BOL-4411")),
    }, time=at(5))  # fmt: skip
    w.ok("packer", "transform", [PACKED, SALAD], {
        "inputs": [{"batch": PACKED, "quantity": {"value": 40, "unit": "KGM"}}],
        "outputs": [{"batch": SALAD, "quantity": {"value": 200, "unit": "EA"},
                     "product": "Kale salad"}],
        "location": PLANT, "documents": docs(("work-order", "WO-3")),
    }, time=at(6))  # fmt: skip
    return w


@pytest.fixture
def cli(tmp_path):
    """`provenance export fsma204` on a World's ledger file, as a user runs it."""
    from click.testing import CliRunner

    from provenance.cli.context import Context

    def run(world: World, *args: str):
        context = Context(str(world.store.path), str(tmp_path / "keys"))
        return CliRunner().invoke(export_fsma204, list(args), obj=context)

    return run


@pytest.fixture(scope="module")
def rows(ledger) -> list[tuple[Any, ...]]:
    return [r for r in store_rows(ledger.store) if cell(r, "Lot Code") != "LOT42"]


def only(rows, cte: str) -> tuple[Any, ...]:
    (row,) = [r for r in rows if r[0] == cte]
    return row


def test_every_cte_is_recorded_once(rows):
    assert sorted(r[0] for r in rows) == sorted(
        [*CTES, TRANSFORMATION]  # a transform: one input row and one output row
    )


def test_every_cte_row_has_its_kde_columns_filled(rows):
    for row in rows:
        missing = [kde.name for kde in kde_columns(row[0]) if cell(row, kde.name) in (None, "")]
        assert not missing, (row[0], missing)
    for cte in CTES:  # and the map asks for more than the basics of each
        assert len(kde_columns(cte)) >= 11, cte


def test_harvesting(rows):
    row = only(rows, HARVESTING)
    farm = "farm; Green Valley, field 4; KE; -0.42, 36.95"
    assert cell(row, "Location Description") == cell(row, "Harvest Location (Farm or Area)") == farm
    assert cell(row, "Harvest Date") == cell(row, "Event Date") == date(2026, 9, 21)
    assert (cell(row, "Field or Container Name"), cell(row, "Variety")) == ("Block 4", "Lacinato")
    assert (cell(row, "Quantity"), cell(row, "Unit of Measure")) == (100, "KGM (kilogram)")
    assert cell(row, "Reference Document Type") == f"{REFERENCE_TYPE} | Other"
    assert cell(row, "Reference Document Number").endswith(" | FIELD-TAG-88")


def test_cooling(rows):
    row = only(rows, COOLING)
    cooler = "farm; Hydro-cooler 2; KE; GLN 4012345000115"
    assert cell(row, "Cooling Location") == cell(row, "Location Description") == cooler
    assert cell(row, "Location Identifier (GLN)") == "4012345000115"
    assert cell(row, "Cooling Date") == date(2026, 9, 21)
    assert cell(row, "Quantity") == 98  # the cooling's own quantity, not the lot's
    assert cell(row, "Variety") == "Lacinato"  # the lot's, from its commission
    assert cell(row, "Reference Document Type") == f"{REFERENCE_TYPE} | Work order"


def test_initial_packing(rows):
    row = only(rows, INITIAL_PACKING)
    assert cell(row, "Harvest Location (Farm or Area)") == "Green Valley, field 4; KE; -0.42, 36.95"
    assert cell(row, "Cooling Location") == "Hydro-cooler 2; KE; GLN 4012345000115"
    assert cell(row, "Harvest Date") == cell(row, "Cooling Date") == date(2026, 9, 21)
    assert cell(row, "Location Description") == "farm; Packing shed; KE"
    assert cell(row, "TLC Source Location") == "farm; Packing shed; KE"


def test_first_land_based_receiving(rows):
    row = only(rows, FIRST_LAND_BASED_RECEIVING)
    assert cell(row, "Harvest Vessel") == "Bahari Star; IMO 9123456; flag KE"
    assert cell(row, "Landing Date") == date(2026, 9, 21)
    assert (cell(row, "Harvest Date"), cell(row, "Harvest End Date")) == (
        date(2026, 9, 14),
        date(2026, 9, 19),
    )
    assert cell(row, "Harvest Location (Farm or Area)") == "FAO 51"
    assert cell(row, "Product Description") == "Yellowfin tuna"


def test_shipping_and_receiving_carry_their_documents(rows):
    ship, receive = only(rows, SHIPPING), only(rows, RECEIVING)
    assert cell(ship, "Reference Document Type") == (f"{REFERENCE_TYPE} | Bill of lading | Invoice")
    event_id, bol, invoice = cell(ship, "Reference Document Number").split(" | ")
    assert (len(event_id), bol, invoice) == (64, "BOL-4411", "INV-2026-17")
    assert cell(receive, "Reference Document Number").endswith(" | BOL-4411")
    assert cell(receive, "Shipment Reference") == event_id
    assert cell(receive, "Ship-From Location (Immediate Previous Source)") == (
        "farm; Packing shed; KE"
    )


def test_transformation_carries_its_work_order(rows):
    made = [r for r in rows if r[0] == TRANSFORMATION]
    assert {cell(r, "Transformation Input or Output") for r in made} == {"input", "output"}
    assert all(cell(r, "Reference Document Number").endswith(" | WO-3") for r in made)


def test_quantities_of_a_partial_shipment_fill_the_row():
    """`ship.data.quantities` (the quantities work's shape) gives each lot's row its
    quantity; a lot not listed moves whole (its registered quantity)."""
    lots = {
        PACKED: TraceabilityLot(GTIN, "P-0921", "Kale", 100, "KGM"),
        LOT: TraceabilityLot(GTIN, "LOT42", "Kale", 50, "KGM"),
    }
    lookups = Lookups(parties=lambda d: None, lots=lots.get, shipments=lambda i: None)
    data = {
        "to": "did:key:z6MkReceiver",
        "quantities": [{"batch": PACKED, "quantity": {"value": 30, "unit": "KGM"}}],
        "location": {"name": "Shed", "address": {"street": "1 Farm Rd", "city": "Nakuru",
                                                 "postal_code": "20100", "country": "KE"}},
    }  # fmt: skip
    envelope = SimpleNamespace(
        kind="ship",
        data=data,
        lots=(PACKED, LOT),
        signer="did:key:z6MkSender",
        time="2026-09-21T10:00:00Z",
        event_id="ab" * 32,
    )
    split, whole = cte_rows([LedgerEvent(envelope, (PACKED, LOT))], lookups)
    assert cell(split, "Quantity") == 30 and cell(whole, "Quantity") == 50
    assert cell(split, "Location Description") == "Shed; 1 Farm Rd, Nakuru, 20100; KE"


# --- the column map is the one source


def test_headers_are_exactly_the_column_maps():
    assert tuple(kde.name for kde in COLUMN_MAP) == HEADER
    assert len(set(kde.fill for kde in COLUMN_MAP)) == len(COLUMN_MAP)
    assert {kde.type for kde in COLUMN_MAP} <= {"text", "date", "time", "number"}
    assert all(kde.ctes <= set(CTES) for kde in COLUMN_MAP)


def test_docs_show_the_column_map():
    text = (ROOT / "docs" / "fsma204.md").read_text(encoding="utf-8")
    assert fsma_columns.markdown_table() in text, (
        "docs/fsma204.md's column table is not the column map's: paste "
        "provenance.exchange.fsma_columns.markdown_table() into it"
    )


def test_the_regulators_24_hour_request_opens(ledger, tmp_path, cli):
    """What the FDA asks for within 24 hours: the product and dates it names, as an
    electronic sortable spreadsheet; openpyxl reads it back, every CTE row typed."""
    from openpyxl import load_workbook

    out = tmp_path / "fda-request.xlsx"
    result = cli(ledger, "--product", "kale", "--from", "2026-09-21",
                 "--to", "2026-09-21", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    book = load_workbook(out, read_only=True)
    table = list(book.active.iter_rows(values_only=True))
    book.close()
    assert table[0] == HEADER
    ctes = {row[0] for row in table[1:]}
    assert {HARVESTING, COOLING, INITIAL_PACKING, SHIPPING, RECEIVING, TRANSFORMATION} <= ctes
    for row in table[1:]:
        assert row[COLUMN["Event Date"]].date() == date(2026, 9, 21)


@pytest.mark.parametrize(
    "args",
    [
        ("--from", "yesterday"),
        ("--to", "2026-13-40"),
        ("--format", "pdf"),
        ("--to", "2026-01-01", "--from", "2026-02-01"),
    ],
)
def test_bad_input_to_the_cli_gets_an_error(ledger, cli, args):
    result = cli(ledger, *args)
    assert result.exit_code != 0
    assert "Error:" in result.output and "Traceback" not in result.output


# --- the schema and the ledger


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("ship", {"to": "x", "documents": [{"type": "fax", "number": "1"}]}, "documents[0].type"),
        ("receive", {"documents": [{"type": "bol"}]}, "documents[0].number"),
        ("transform", {"documents": []}, "documents"),
        ("commission", {"cte": "fishing"}, "data.cte"),
        ("commission", {"cte": "first-land-based-receiving"}, "data.landing"),
        ("commission", {"landing": {"vessel": {"name": "V"}}}, "data.landing"),
        (
            "commission",
            {
                "cte": "first-land-based-receiving",
                "landing": {
                    "vessel": {"name": "V"},
                    "harvest_from": "2026-09-20",
                    "harvest_to": "2026-09-19",
                },
            },
            "data.landing.harvest_to",
        ),
        ("cool", {"quantity": {"value": 1}}, "data.quantity.unit"),
    ],
)
def test_bad_fsma_fields_are_refused_by_name(kind, data, field):
    base = {
        "ship": {"to": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"},
        "receive": {"shipment": "ab" * 32},
        "transform": {
            "inputs": [{"batch": LOT, "quantity": KGM}],
            "outputs": [{"batch": SALAD, "quantity": KGM}],
        },
        "commission": {"gtin": GTIN, "lot": "P-0921", "product": "Kale"},
        "cool": {},
    }[kind]
    lots = {"transform": (LOT, SALAD), "commission": (PACKED,)}.get(kind, (LOT,))
    merged = base | {k: v for k, v in data.items() if k != "to"}
    with pytest.raises(ValidationError) as caught:
        validate_data(kind, merged, lots)
    assert field in str(caught.value)


def test_cooling_is_kind_26_and_only_the_custodian_records_it(ledger):
    assert KIND_CODES["cool"] == 26
    refused = ledger.append("packer", "cool", [HARVEST], {}, time=at(7))
    assert refused.status == "rejected" and "only the custodian" in refused.message
    before = ledger.append("farm", "cool", [HARVEST], {}, time=at(0.5))  # before its harvest
    assert before.status == "rejected"
