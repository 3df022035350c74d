"""The FDA FSMA 204 sortable spreadsheet's column map, written once: for each column its
header, its cell type, which Critical Tracking Events (21 CFR 1 subpart S) ask for it as a
Key Data Element, the sections that do, and how the ledger fills it.

Everything else follows from this table: the CSV and XLSX headers and cell types
(:mod:`provenance.exchange.fsma204`), the order of a row's cells (each row is built as
facts named by `KDEColumn.fill`, laid out in this order), the tests that every CTE row has
its KDE cells filled, and the column table of docs/fsma204.md (`markdown_table`; a test
keeps the two the same).

Headers use the rule's own words for its KDEs, the names the FDA's sortable-spreadsheet
template and the Produce Traceability Initiative's examples give them ("Traceability Lot
Code (TLC)", "Quantity", "Unit of Measure", "Reference Document Type", "Reference Document
Number", "TLC Source Location"…); one KDE to a column, so that every column sorts.
"""

from __future__ import annotations

from dataclasses import dataclass

from provenance.exchange.spreadsheet import Column

# The seven Critical Tracking Events of 21 CFR 1 subpart S, as a row names them.
HARVESTING = "Harvesting"  # § 1.1325(a)
COOLING = "Cooling"  # § 1.1325(b)
INITIAL_PACKING = "Initial Packing"  # § 1.1330
FIRST_LAND_BASED_RECEIVING = "First Land-Based Receiving"  # § 1.1335
SHIPPING = "Shipping"  # § 1.1340
RECEIVING = "Receiving"  # § 1.1345
TRANSFORMATION = "Transformation"  # § 1.1350
CTES = (
    HARVESTING,
    COOLING,
    INITIAL_PACKING,
    FIRST_LAND_BASED_RECEIVING,
    SHIPPING,
    RECEIVING,
    TRANSFORMATION,
)
EVERY_CTE = frozenset(CTES)
NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class KDEColumn:
    """One column: *name* (the header), *type* (text | date | time | number), *width*
    (characters, in XLSX), *fill* (the name of the fact a row puts in it), *ctes* (the
    CTEs whose Key Data Element it is: every such row of a fully recorded ledger has it
    filled; other rows may have it when known), *rule* (the sections asking for it) and
    *how* (where the value comes from)."""

    name: str
    type: str
    width: int
    fill: str
    ctes: frozenset[str]
    rule: str
    how: str

    @property
    def column(self) -> Column:
        return Column(self.name, self.type, self.width)


def _ctes(*names: str) -> frozenset[str]:
    return frozenset(names)


COLUMN_MAP: tuple[KDEColumn, ...] = (
    KDEColumn("Critical Tracking Event (CTE)", "text", 26, "cte", EVERY_CTE, "1.1325–1.1350",
              "which CTE the row records (docs/fsma204.md, \"Which events are CTEs\")"),
    KDEColumn("Event Date", "date", 12, "date", EVERY_CTE,
              "1.1325(a)(1)(v), (b)(5); 1.1330(a)(12); 1.1335(a)(4); 1.1340(a)(6); "
              "1.1345(a)(6); 1.1350(a)(2)(iv)",
              "the event's `time` as a UTC date: the day harvested, cooled, packed, landed, "
              "shipped, received or transformed"),
    KDEColumn("Event Time (UTC)", "time", 10, "time", EVERY_CTE, "—",
              "the event's `time`, to the second"),
    KDEColumn("Traceability Lot Code (TLC)", "text", 34, "tlc", EVERY_CTE, "1.1320",
              "`(01){GTIN-14}(10){lot}`, the GS1 element string of the lot (harvesting and "
              "cooling need none by the rule; the ledger's lot has one)"),
    KDEColumn("GTIN", "text", 16, "gtin", EVERY_CTE, "part of the TLC",
              "the lot's GTIN-14 (text, so the leading zero stays)"),
    KDEColumn("Lot Code", "text", 14, "lot", EVERY_CTE, "part of the TLC",
              "the lot's batch/lot number"),
    KDEColumn("Product Description", "text", 28, "product", EVERY_CTE,
              "1.1310 (commodity at harvesting and cooling); every CTE",
              "the lot's product as registered; a transform output's `product`"),
    KDEColumn("Variety", "text", 16, "variety",
              _ctes(HARVESTING, COOLING, INITIAL_PACKING),
              "1.1325(a)(1)(ii), (b)(2); 1.1330(a)(1)",
              "the commission's `variety` (\"if applicable\" in the rule)"),
    KDEColumn("Quantity", "number", 10, "quantity", EVERY_CTE, "every CTE",
              "the event's own quantity (commission, transform, cool, the per-lot "
              "`quantities` of ship and receive), else the lot's registered quantity"),
    KDEColumn("Unit of Measure", "text", 16, "unit", EVERY_CTE, "every CTE",
              "the UN/CEFACT Rec 20 code and its name, e.g. `KGM (kilogram)`"),
    KDEColumn("Transformation Input or Output", "text", 12, "role", _ctes(TRANSFORMATION),
              "1.1350(a)(1), (a)(2)",
              "`input` (food used) / `output` (new food) on Transformation rows"),
    KDEColumn("Location Description", "text", 40, "location", EVERY_CTE,
              "1.1325(a)(1)(iv), (b)(4); 1.1330(a)(11); 1.1335(a)(3); 1.1340(a)(5); "
              "1.1345(a)(5); 1.1350(a)(2)(ii)",
              "where the CTE took place: the party recording it and the event's `location` "
              "(a commission's `origin`): name, address, country, GLN, coordinates"),
    KDEColumn("Location Identifier (GLN)", "text", 15, "gln", NONE, "1.1310 (location "
              "identifier)", "the GLN of that place, when the event gives one"),
    KDEColumn("Ship-From Location (Immediate Previous Source)", "text", 40, "ship_from",
              _ctes(SHIPPING, RECEIVING), "1.1340(a)(5); 1.1345(a)(4)",
              "Shipping: as Location Description. Receiving: the shipper and the ship "
              "event's `location`"),
    KDEColumn("Ship-To Location (Immediate Subsequent Recipient)", "text", 40, "ship_to",
              _ctes(SHIPPING, RECEIVING), "1.1340(a)(4); 1.1345(a)(5)",
              "Shipping: the `to` party. Receiving: as Location Description"),
    KDEColumn("Harvest Date", "date", 12, "harvest_date",
              _ctes(HARVESTING, INITIAL_PACKING, FIRST_LAND_BASED_RECEIVING),
              "1.1325(a)(1)(v); 1.1330(a)(7); 1.1335(a)(5)",
              "Harvesting: `harvest.date`, else the event's date. Initial Packing: "
              "`harvest.date`. First land-based receiving: the trip's `landing.harvest_from`"),
    KDEColumn("Harvest End Date", "date", 12, "harvest_end",
              _ctes(FIRST_LAND_BASED_RECEIVING), "1.1335(a)(5) (harvest date range)",
              "`landing.harvest_to`, the trip's last day of fishing"),
    KDEColumn("Harvest Location (Farm or Area)", "text", 40, "harvest_location",
              _ctes(HARVESTING, INITIAL_PACKING, FIRST_LAND_BASED_RECEIVING),
              "1.1325(a)(1)(iv); 1.1330(a)(4); 1.1335(a)(5)",
              "Harvesting: as Location Description (the farm). Initial Packing: "
              "`harvest.farm`. First land-based receiving: `landing.area` (an NMFS ocean "
              "geographic code or coordinates)"),
    KDEColumn("Field or Container Name", "text", 20, "field",
              _ctes(HARVESTING, INITIAL_PACKING), "1.1325(a)(1)(vi); 1.1330(a)(5)",
              "`harvest.field`: the field or container the food was harvested from"),
    KDEColumn("Cooling Date", "date", 12, "cooling_date", _ctes(COOLING, INITIAL_PACKING),
              "1.1325(b)(5); 1.1330(a)(9)",
              "Cooling: the event's date. Initial Packing: `cooling.date`"),
    KDEColumn("Cooling Location", "text", 40, "cooling_location",
              _ctes(COOLING, INITIAL_PACKING), "1.1325(b)(4); 1.1330(a)(8)",
              "Cooling: as Location Description. Initial Packing: `cooling.location`"),
    KDEColumn("Landing Date", "date", 12, "landing_date", _ctes(FIRST_LAND_BASED_RECEIVING),
              "1.1335(a)(4)", "the event's date: the day the food was landed"),
    KDEColumn("Harvest Vessel", "text", 30, "vessel", _ctes(FIRST_LAND_BASED_RECEIVING),
              "1.1335(a)(5) (the trip's vessel)",
              "`landing.vessel`: its name, identifier and flag"),
    KDEColumn("TLC Source Location", "text", 40, "source_location",
              _ctes(INITIAL_PACKING, FIRST_LAND_BASED_RECEIVING, SHIPPING, RECEIVING),
              "1.1340(a)(7); 1.1345(a)(7)",
              "where the lot's TLC was assigned: the party and the `origin` of its "
              "commission, or the `location` of the transform that made it"),
    KDEColumn("TLC Source Reference", "text", 40, "source_reference",
              _ctes(INITIAL_PACKING, FIRST_LAND_BASED_RECEIVING, SHIPPING, RECEIVING),
              "1.1340(a)(7); 1.1345(a)(7)",
              "`GLN {gln}` when that place has a GLN, else the lot's GS1 Digital Link URI"),
    KDEColumn("Reference Document Type", "text", 24, "document_types", EVERY_CTE,
              "every CTE (1.1310)",
              "`Provenance ledger record`, then each of the event's `documents` (`Bill of "
              "lading`, `Invoice`, …) or an imported event's business transactions, joined "
              "with ` | `"),
    KDEColumn("Reference Document Number", "text", 30, "document_numbers", EVERY_CTE,
              "every CTE (1.1310)",
              "the ledger event id, then each document's number, in the same order"),
    KDEColumn("Recorded By", "text", 24, "recorded_by", NONE, "—",
              "the name of the party that signed the event"),
    KDEColumn("Shipment Reference", "text", 30, "shipment", NONE, "—",
              "Receiving: the ledger event id of the ship event it closes"),
)  # fmt: skip

COLUMNS: tuple[Column, ...] = tuple(kde.column for kde in COLUMN_MAP)
HEADER: tuple[str, ...] = tuple(kde.name for kde in COLUMN_MAP)
FILLS: tuple[str, ...] = tuple(kde.fill for kde in COLUMN_MAP)


def kde_columns(cte: str) -> tuple[KDEColumn, ...]:
    """The columns that are Key Data Elements of *cte*."""
    return tuple(kde for kde in COLUMN_MAP if cte in kde.ctes)


def markdown_table() -> str:
    """The column map as the Markdown table docs/fsma204.md shows."""
    lines = [
        "| # | column | type | KDE of | 21 CFR 1 § | how the ledger fills it |",
        "|---|---|---|---|---|---|",
    ]
    for number, kde in enumerate(COLUMN_MAP, start=1):
        ctes = (
            "every CTE"
            if kde.ctes == EVERY_CTE
            else ", ".join(cte for cte in CTES if cte in kde.ctes) or "—"
        )
        lines.append(
            f"| {number} | {kde.name} | {kde.type} | {ctes} | {kde.rule} | "
            + kde.how.replace("|", "\\|")
            + " |"
        )
    return "\n".join(lines) + "\n"
