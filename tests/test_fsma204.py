"""Tests for provenance.exchange.fsma204 and `provenance export fsma204`: the FDA FSMA 204 sortable
spreadsheet (one row per Critical Tracking Event and lot, one column per Key Data Element)
as CSV and XLSX.

A ledger goes through commissioning (a farm's initial packing, a processor's creation),
shipping and receiving with locations, a transformation, readings, a sale and a recall,
plus imported EPCIS events; the rows are checked KDE by KDE, and the XLSX is read back
with openpyxl (header, frozen pane, autofilter, typed cells). Run this file as a script to
time a large export: .venv/bin/python tests/test_fsma204.py --events 100000
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time
from typing import Any

import pytest
from support.export_ledgers import build_cte_ledger, time_fsma_export
from support.world import GTIN, LOT, T0, World, at

from provenance.cli import exchange as exchange_cli
from provenance.cli.exchange import export_fsma204
from provenance.core import gs1
from provenance.exchange.epcis_import import import_events, prepare
from provenance.exchange.epcis_vocabulary import EPCIS_CONTEXT, LedgerEvent
from provenance.exchange.fsma204 import store_lookups, store_rows, write_csv, write_xlsx
from provenance.exchange.fsma_columns import (
    COLUMN_MAP,
    COLUMNS,
    HEADER,
    INITIAL_PACKING,
    RECEIVING,
    SHIPPING,
    TRANSFORMATION,
)
from provenance.exchange.fsma_rows import (
    REFERENCE_TYPE,
    Lookups,
    TradingPartner,
    cte_rows,
    location_description,
)

LOT2 = gs1.lot_uri(GTIN, "B7")
MIX = gs1.lot_uri(GTIN, "MIX-1")
MADE = gs1.lot_uri(GTIN, "P1")
ELSEWHERE = gs1.lot_uri("09520123456788", "X1")  # a lot only imported events know
DOCK = {"name": "Farm dock 3", "gln": "4012345000115", "country": "KE"}
PLANT = {"name": "Packing plant", "lat": -1.2921, "lon": 36.8219, "country": "KE"}
COLUMN = {name: index for index, name in enumerate(HEADER)}


def cell(row: tuple[Any, ...], name: str) -> Any:
    return row[COLUMN[name]]


def partner_events() -> dict[str, Any]:
    """An EPCIS document from a partner: a shipment of LOT42 (with a purchase order), a
    transformation of LOT42 into a lot we do not have, and an inspection (no CTE)."""
    base = {"eventTimeZoneOffset": "+00:00"}
    return {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-09-25T00:00:00Z",
        "epcisBody": {
            "eventList": [
                base
                | {
                    "type": "ObjectEvent",
                    "eventTime": "2026-09-22T08:00:00Z",
                    "action": "OBSERVE",
                    "bizStep": "urn:epcglobal:cbv:bizstep:shipping",
                    "quantityList": [
                        {
                            "epcClass": "urn:epc:class:lgtin:9506000.013435.LOT42",
                            "quantity": 12.5,
                            "uom": "KGM",
                        }
                    ],
                    "readPoint": {"id": "urn:epc:id:sgln:4012345.00011.0"},
                    "sourceList": [
                        {"type": "owning_party", "source": "urn:epc:id:pgln:4012345.00022"},
                        {"type": "location", "source": "urn:epc:id:sgln:4012345.00011.0"},
                    ],
                    "destinationList": [
                        {"type": "location", "destination": "https://id.gs1.org/414/0614141000012"}
                    ],
                    "bizTransactionList": [
                        {"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:4012345000009:PO-77"}
                    ],
                },
                base
                | {
                    "type": "TransformationEvent",
                    "eventTime": "2026-09-22T09:00:00Z",
                    "inputQuantityList": [{"epcClass": LOT, "quantity": 5, "uom": "KGM"}],
                    "outputQuantityList": [{"epcClass": ELSEWHERE, "quantity": 20, "uom": "EA"}],
                    "bizLocation": {"id": "https://id.gs1.org/414/0614141000029"},
                },
                base
                | {
                    "type": "ObjectEvent",
                    "eventTime": "2026-09-22T10:00:00Z",
                    "action": "OBSERVE",
                    "bizStep": "inspecting",
                    "quantityList": [{"epcClass": LOT}],
                },
            ]
        },
    }


@pytest.fixture(scope="module")
def ledger() -> World:
    w = World.create()  # LOT42 (Kale) commissioned by the farm at 0 h, probe attached
    w.ok(
        "farm",
        "commission",
        [LOT2],
        {
            "gtin": GTIN,
            "lot": "B7",
            "product": "Spinach",
            "origin": {"name": "Green Valley", "lat": -0.42, "lon": 36.95, "country": "KE"},
            "quantity": {"value": 120.5, "unit": "KGM"},
        },
        time=at(0.2),
    )
    assert {r.status for r in w.ledger.append([w.reading(1, 4.0), w.reading(2, 4.5)])} == {
        "accepted"
    }
    shipped = w.ok("farm", "ship", [LOT], {"to": w.did("packer"), "location": DOCK}, time=at(4))
    w.ok("packer", "receive", [LOT], {"shipment": shipped.event_id, "location": PLANT}, time=at(6))
    w.ok(
        "packer",
        "transform",
        [LOT, MIX],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 10, "unit": "KGM"}}],
            "outputs": [
                {"batch": MIX, "quantity": {"value": 40, "unit": "EA"}, "product": "Salad mix"}
            ],
            "location": PLANT,
        },
        time=at(7),
    )
    w.ship_and_receive("packer", "store", [MIX], hours=8)
    w.ok("store", "dispense", [MIX], {"quantity": {"value": 2, "unit": "EA"}}, time=at(10))
    w.ok("regulator", "recall", [MIX], {"reason": "Listeria", "class": "I"}, time=at(11))
    w.ok(
        "packer",
        "commission",
        [MADE],
        {"gtin": GTIN, "lot": "P1", "product": "Pesto", "origin": {"name": "Packing plant"}},
        time=at(12),
    )
    # The packer held LOT, so it may record the partner's events about it.
    report = import_events(w.ledger, w.keys["packer"], prepare(partner_events()))
    assert report.ok
    w.import_ids = [o.ledger_id for o in report.outcomes]  # type: ignore[attr-defined]
    return w


@pytest.fixture(scope="module")
def rows(ledger) -> list[tuple[Any, ...]]:
    return list(store_rows(ledger.store))


def by(rows, cte: str, uri: str | None = None, role: str | None = None) -> list[tuple]:
    found = [r for r in rows if r[0] == cte]
    if uri is not None:
        gtin, lot = gs1.parse_lot_uri(uri)
        code = f"(01){gtin}(10){lot}"
        found = [r for r in found if cell(r, "Traceability Lot Code (TLC)") == code]
    if role is not None:
        found = [r for r in found if cell(r, "Transformation Input or Output") == role]
    return found


# --- rows


def test_columns_are_the_key_data_elements():
    assert len(HEADER) == len(set(HEADER)) == len(COLUMNS) == len(COLUMN_MAP) == 29
    for kde in (
        "Traceability Lot Code (TLC)",
        "Product Description",
        "Quantity",
        "Unit of Measure",
        "Location Description",
        "Event Date",
        "TLC Source Location",
        "TLC Source Reference",
        "Reference Document Type",
        "Reference Document Number",
        "Harvest Date",
        "Cooling Date",
        "Landing Date",
        "Harvest Vessel",
        "Field or Container Name",
    ):
        assert kde in HEADER
    assert {c.type for c in COLUMNS} == {"text", "date", "time", "number"}


def test_one_row_per_cte_and_lot(rows):
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[0]] = counts.get(row[0], 0) + 1
    # initial packing: LOT42, B7; shipping: LOT42, MIX, imported LOT42; receiving: LOT42, MIX;
    # transformation: native in + out, processor's commission, imported in + out
    assert counts == {INITIAL_PACKING: 2, SHIPPING: 3, RECEIVING: 2, TRANSFORMATION: 5}
    assert all(len(row) == len(HEADER) for row in rows)
    assert [row[1] for row in rows] == sorted(row[1] for row in rows)  # log order here


def test_initial_packing(ledger, rows):
    (row,) = by(rows, INITIAL_PACKING, LOT2)
    assert cell(row, "Event Date") == date(2026, 9, 21)
    assert isinstance(cell(row, "Event Time (UTC)"), time)
    assert cell(row, "Traceability Lot Code (TLC)") == f"(01){GTIN}(10)B7"
    assert (cell(row, "GTIN"), cell(row, "Lot Code")) == (GTIN, "B7")
    assert cell(row, "Product Description") == "Spinach"
    assert (cell(row, "Quantity"), cell(row, "Unit of Measure")) == (120.5, "KGM (kilogram)")
    where = "farm; Green Valley; KE; -0.42, 36.95"
    assert cell(row, "Location Description") == cell(row, "TLC Source Location") == where
    assert cell(row, "TLC Source Reference") == LOT2  # no GLN: the lot's Digital Link URI
    assert cell(row, "Reference Document Type") == REFERENCE_TYPE
    assert len(cell(row, "Reference Document Number")) == 64
    assert cell(row, "Recorded By") == "farm"


def test_shipping_and_receiving(ledger, rows):
    (ship,) = [r for r in by(rows, SHIPPING, LOT) if cell(r, "Recorded By") == "farm"]
    dock = "farm; Farm dock 3; KE; GLN 4012345000115"
    assert cell(ship, "Location Description") == dock
    assert cell(ship, "Ship-From Location (Immediate Previous Source)") == dock
    assert cell(ship, "Ship-To Location (Immediate Subsequent Recipient)") == "packer"
    assert cell(ship, "Product Description") == "Kale"
    assert cell(ship, "TLC Source Location") == "farm"  # LOT42 was commissioned without origin
    (receive,) = by(rows, RECEIVING, LOT)
    plant = "packer; Packing plant; KE; -1.2921, 36.8219"
    assert cell(receive, "Ship-From Location (Immediate Previous Source)") == dock
    assert cell(receive, "Ship-To Location (Immediate Subsequent Recipient)") == plant
    assert cell(receive, "Location Description") == plant
    assert cell(receive, "Shipment Reference") == cell(ship, "Reference Document Number")
    (mix,) = by(rows, SHIPPING, MIX)
    # whole lots move: the quantity is the lot's, as the transform that made it registered it
    assert (cell(mix, "Quantity"), cell(mix, "Unit of Measure")) == (40, "EA (each)")
    assert cell(mix, "TLC Source Location") == "packer; Packing plant; KE; -1.2921, 36.8219"


def test_transformation(rows):
    (used,) = by(rows, TRANSFORMATION, LOT, role="input")[:1]
    assert (cell(used, "Quantity"), cell(used, "Product Description")) == (10, "Kale")
    (made,) = by(rows, TRANSFORMATION, MIX, role="output")
    assert cell(made, "Product Description") == "Salad mix"
    assert cell(made, "Reference Document Number") == cell(used, "Reference Document Number")
    assert cell(made, "Location Description") == "packer; Packing plant; KE; -1.2921, 36.8219"
    (created,) = by(rows, TRANSFORMATION, MADE)  # a processor's commission makes a new food
    assert cell(created, "Transformation Input or Output") == "output"
    assert cell(created, "Product Description") == "Pesto"


def test_imported_epcis_events(ledger, rows):
    (ship,) = [r for r in by(rows, SHIPPING, LOT) if cell(r, "Recorded By") == "packer"]
    assert cell(ship, "Product Description") == "Kale"  # the ledger's lot
    assert (cell(ship, "Quantity"), cell(ship, "Unit of Measure")) == (12.5, "KGM (kilogram)")
    assert cell(ship, "Location Description") == "GLN 4012345000115"
    assert cell(ship, "Ship-From Location (Immediate Previous Source)") == (
        "GLN 4012345000115; GLN 4012345000221"  # the location first, then the party
    )
    assert cell(ship, "Ship-To Location (Immediate Subsequent Recipient)") == "GLN 0614141000012"
    assert cell(ship, "Reference Document Type") == f"{REFERENCE_TYPE} | Purchase order"
    number = cell(ship, "Reference Document Number")
    assert number == f"{ledger.import_ids[0]} | urn:epcglobal:cbv:bt:4012345000009:PO-77"
    made = [r for r in rows if cell(r, "Traceability Lot Code (TLC)") == "(01)09520123456788(10)X1"]
    (row,) = made
    assert cell(row, "Transformation Input or Output") == "output"
    assert cell(row, "Product Description") is None  # not a ledger lot: unknown
    assert cell(row, "TLC Source Location") == "GLN 0614141000029"


def test_product_and_time_filters(ledger):
    salad = list(store_rows(ledger.store, product="SALAD"))
    assert {(r[0], cell(r, "Product Description")) for r in salad} == {
        (TRANSFORMATION, "Kale"),  # the input stays beside its output
        (TRANSFORMATION, "Salad mix"),
        (SHIPPING, "Salad mix"),
        (RECEIVING, "Salad mix"),
    }
    kale = list(store_rows(ledger.store, product="kale"))
    assert {cell(r, "Product Description") for r in kale} == {"Kale", "Salad mix", None}
    hour = 3600 * 10**6
    window = list(store_rows(ledger.store, since_us=T0 + 4 * hour, until_us=T0 + 7 * hour))
    assert [r[0] for r in window] == [SHIPPING, RECEIVING]
    assert list(store_rows(ledger.store, product="nothing")) == []


def test_location_description():
    assert location_description(None, None) is None
    assert location_description(TradingPartner("Farm"), {"name": "Dock", "gln": "1"}) == (
        "Farm; Dock; GLN 1"
    )


def test_rows_need_no_store(ledger):
    lookups = Lookups(parties=lambda did: None, lots=lambda uri: None, shipments=lambda i: None)
    ship = ledger.sign("farm", "ship", [LOT2], {"to": ledger.did("dc")}, time=at(20))
    (row,) = cte_rows([LedgerEvent(ship, (LOT2,))], lookups)
    assert cell(row, "Recorded By") == ledger.did("farm")
    assert cell(row, "Ship-To Location (Immediate Subsequent Recipient)") == ledger.did("dc")
    assert cell(row, "Traceability Lot Code (TLC)") == f"(01){GTIN}(10)B7"
    assert cell(row, "TLC Source Reference") is None and cell(row, "Quantity") is None


# --- CSV and XLSX


def test_csv(rows):
    out = io.StringIO()
    assert write_csv(rows, out) == len(rows)
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(table[0]) == HEADER
    assert len(table) == len(rows) + 1
    first = dict(zip(HEADER, table[1], strict=True))
    assert first["Event Date"] == "2026-09-21" and len(first["Event Time (UTC)"]) == 8
    assert out.getvalue().endswith("\r\n")


def test_csv_cells_cannot_be_formulas():
    formula = '=HYPERLINK("http://x")'
    row = (formula, date(2026, 1, 1), None, "-0.5", "+1", "@SUM(A1)", *[None] * (len(HEADER) - 6))
    out = io.StringIO()
    write_csv([row], out)
    cells = next(csv.reader(io.StringIO(out.getvalue().splitlines()[1])))
    assert cells[0] == "'" + formula
    assert cells[3:6] == ["'-0.5", "'+1", "'@SUM(A1)"]
    assert cells[1] == "2026-01-01" and cells[2] == ""


def test_xlsx_reads_back_sortable(rows, tmp_path):
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    path = tmp_path / "fsma.xlsx"
    with path.open("wb") as out:
        assert write_xlsx(rows, out) == len(rows)
    book = load_workbook(path)
    sheet = book.active
    assert sheet.title == "FSMA 204"
    assert tuple(c.value for c in sheet[1]) == HEADER
    assert all(c.font.b for c in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:{get_column_letter(len(HEADER))}{len(rows) + 1}"
    assert sheet.max_row == len(rows) + 1
    values = list(sheet.iter_rows(min_row=2, values_only=True))
    for written, row in zip(values, rows, strict=True):
        assert written[COLUMN["Event Date"]] == datetime.combine(row[1], time())
        assert written[COLUMN["Event Time (UTC)"]] == row[2]
        assert written[COLUMN["Quantity"]] == row[COLUMN["Quantity"]]
        assert written[COLUMN["GTIN"]] == row[COLUMN["GTIN"]]  # text: the leading 0 stays
        assert written[COLUMN["Location Description"]] == row[COLUMN["Location Description"]]
    assert sheet.cell(2, COLUMN["Event Date"] + 1).number_format == "yyyy\\-mm\\-dd"


def test_xlsx_survives_awkward_text(tmp_path):
    from openpyxl import load_workbook

    odd = "<&>\"'"
    rich = "<r><t>x</t></r>"  # what some writers emit raw as rich text: must stay text
    middle = len(HEADER) - 7
    start = (" spaced ", date(2026, 1, 1), time(23, 59, 59), odd, "\x07bell", None)
    row = (*start, *["ü"] * middle, rich)
    path = tmp_path / "odd.xlsx"
    with path.open("wb") as out:
        write_xlsx([row], out)
    values = next(load_workbook(path).active.iter_rows(min_row=2, values_only=True))
    assert values[:6] == (" spaced ", datetime(2026, 1, 1), time(23, 59, 59), odd, "bell", None)
    assert values[6:] == ("ü",) * middle + (rich,)


# --- the command line: provenance export fsma204


def test_cli_csv_to_stdout(two_lot_cli):
    result = two_lot_cli("--product", "kale", command=export_fsma204)
    raw = result.stdout_bytes
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark, for spreadsheet programs
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert tuple(table[0]) == HEADER and len(table) == 2
    assert table[1][0] == INITIAL_PACKING and table[1][6] == "Kale"
    assert "1 rows" in result.stderr


def test_cli_xlsx(two_lot_cli, tmp_path, monkeypatch):
    from openpyxl import load_workbook

    out = tmp_path / "fsma.xlsx"
    result = two_lot_cli("--out", str(out), command=export_fsma204)  # the suffix picks XLSX
    assert "2 rows written to" in result.stderr
    assert load_workbook(out).active.max_row == 3
    piped = two_lot_cli("--format", "xlsx", "--from", "2000-01-01", command=export_fsma204)
    assert piped.stdout_bytes.startswith(b"PK")  # standard output is no terminal here
    monkeypatch.setattr(exchange_cli, "_stdout_is_terminal", lambda: True)
    refused = two_lot_cli("--format", "xlsx", code=2, command=export_fsma204)
    assert "XLSX is binary" in refused.output
    two_lot_cli("--to", "2000-01-01", "--from", "2001-01-01", code=2, command=export_fsma204)


# --- how long a large export takes (the figure for docs/performance.md)


def test_large_export_harness(tmp_path):
    world = build_cte_ledger(tmp_path, 300)
    figures = time_fsma_export(world)
    assert figures["rows"] == 300 + 1  # and LOT42, which every World has
    assert figures["csv_bytes"] > 300 * 200 and figures["xlsx_bytes"] > 0
    lookups = store_lookups(world.store)
    assert (
        lookups.lots(gs1.lot_uri(GTIN, "L7")).source_location == "farm; Field 4; KE; -0.42, 36.95"
    )
