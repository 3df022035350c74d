"""The regulator's day (issue #16, item 5): the recall preview before signing
(no default class, the cascade's lots with holders, quantities and open
shipments, from the cascade the recall records), the overview of open
excursions, holds and flags, "Ship to" limited to parties a shipment can go
to, and the recall report's place from the last place actually recorded."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.portal import Portal, make_app
from support.world import GTIN, LOT, at

from provenance.core import gs1
from provenance.web.portal.reports import Place, last_place, recall_preview

BAG = gs1.lot_uri(GTIN, "BAG1")
LOT2 = gs1.lot_uri(GTIN, "LOT43")


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def chain(file_world, tmp_path) -> Portal:
    """LOT42 went farm -> packer (the receipt names no place) and became 400 EA
    of BAG1 at the Packhouse; BAG1 is on its way to the store."""
    world = file_world
    shipped = world.ok(
        "farm", "ship", [LOT], {"to": world.did("packer"), "location": {"name": "Farm gate"}}
    )
    world.ok("packer", "receive", [LOT], {"shipment": shipped.event_id}, time=at(2))
    world.ok(
        "packer",
        "transform",
        [LOT, BAG],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 100, "unit": "KGM"}}],
            "outputs": [
                {"batch": BAG, "quantity": {"value": 400, "unit": "EA"}, "product": "Kale bag"}
            ],
            "location": {"name": "Packhouse"},
        },
        time=at(4),
    )
    dock = {"to": world.did("store"), "location": {"name": "Packhouse dock"}}
    world.ok("packer", "ship", [BAG], dock, time=at(5))
    portal = Portal(world, make_app(world, tmp_path), tmp_path)
    portal.user("reg1", "regulator")
    portal.user("farm1", "farm")
    portal.user("pack1", "packer")
    return portal


def preview(portal: Portal, **form: str):
    body = {"lots": LOT, "reason": "Listeria found", **form}
    return portal.post("reg1", "/portal/regulator/recall/preview", body)


def reach_of(page: str) -> str:
    found = re.search(r'name="reach" value="([0-9a-f]+)"', page)
    assert found, "the preview carries what it showed"
    return found.group(1)


def recall_rows(world) -> int:
    return world.store.conn.execute("SELECT count(*) FROM recalls").fetchone()[0]


# --- 1. the recall preview


def test_recall_forms_have_no_default_class(chain):
    client = chain.client("reg1")
    for url in ("/portal/regulator/", f"/portal/lots/{chain.lot_id(LOT)}"):
        page = text(client.get(url))
        form = page[page.index('id="recall-form"') :]
        form = form[: form.index("</form>")]
        assert form.count('type="radio" name="class"') == 3, url
        assert "checked" not in form and "<select" not in form, url
        assert "recall/preview" in page and "Preview the recall" in form, url


def test_preview_without_a_class_is_an_inline_message_and_signs_nothing(chain):
    world = chain.world
    size = world.store.log_size()
    response = preview(chain)
    page = text(response)
    assert response.status_code == 400
    assert "Choose the recall class: I, II or III." in page
    assert 'name="reason" required maxlength="2000" value="Listeria found"' in page  # kept
    assert "BAG1" in page  # the reach is shown all the same
    # signing without a class is refused the same way, inline, and signs nothing
    refused = chain.post(
        "reg1",
        "/portal/regulator/recall",
        {"lots": LOT, "reason": "Listeria found", "confirm": "yes"},
    )
    assert refused.status_code == 400 and "Choose the recall class" in text(refused)
    assert world.store.log_size() == size and recall_rows(world) == 0
    assert not world.store.lot_by_uri(LOT).recalled


def test_preview_shows_the_cascade_holders_quantities_and_shipments(chain):
    world = chain.world
    size = world.store.log_size()
    response = preview(chain, **{"class": "II"})
    page = text(response)
    assert response.status_code == 200, page
    assert world.store.log_size() == size, "a preview signs nothing"
    table = page[page.index('id="reach"') :]
    rows = table[: table.index("</table>")].split("<tr>")[2:]
    named, bag = rows
    assert "LOT42" in named and "named" in named and "packer" in named
    assert "BAG1" in bag and "made from LOT42" in bag
    assert "packer (processor)" in bag and "400 packs" in bag and "store" in bag  # in transit
    assert "The recall reaches 2 lots" in page and "1 in transit now" in page
    assert 'value="II" required checked' in page  # the chosen class is kept
    entry = chain.accounts.audit_entries(action="recall-preview")[0]
    assert entry.params == {"lots": [LOT], "reaches": 2, "class": "II"}


def test_preview_and_recall_reach_the_same_lots(chain):
    """One cascade: what the preview lists is what the recall records."""
    world = chain.world
    shown = recall_preview(world.store, [LOT])
    assert shown.named == (LOT,) and shown.unknown == ()
    page = text(preview(chain, **{"class": "I"}))
    form = {"lots": LOT, "reason": "Listeria found", "class": "I", "confirm": "yes"}
    response = chain.post("reg1", "/portal/regulator/recall", {**form, "reach": reach_of(page)})
    assert response.status_code == 303, text(response)
    (index,) = {row[0] for row in world.store.conn.execute("SELECT event FROM recalls")}
    recorded = {world.store.subject(lot) for lot, _ in world.store.recall_effects(index)}
    assert recorded == {a.uri for a in shown.affected} == {LOT, BAG}
    assert world.store.lot_by_uri(BAG).recalled


def test_a_lot_made_after_the_preview_stops_the_signature(chain):
    world = chain.world
    page = text(preview(chain, **{"class": "I"}))
    bag2 = gs1.lot_uri(GTIN, "BAG2")
    made = {
        "inputs": [{"batch": LOT, "quantity": {"value": 10, "unit": "KGM"}}],
        "outputs": [{"batch": bag2, "quantity": {"value": 40, "unit": "EA"}, "product": "Bag"}],
    }
    world.ok("packer", "transform", [LOT, bag2], made, time=at(6))
    form = {"lots": LOT, "reason": "Listeria found", "class": "I", "confirm": "yes"}
    response = chain.post("reg1", "/portal/regulator/recall", {**form, "reach": reach_of(page)})
    assert response.status_code == 400
    again = text(response)
    assert "changed since you looked" in again and "BAG2" in again
    assert recall_rows(world) == 0
    response = chain.post("reg1", "/portal/regulator/recall", {**form, "reach": reach_of(again)})
    assert response.status_code == 303 and world.store.lot_by_uri(bag2).recalled


def test_preview_names_unknown_lots_and_refuses_other_roles(chain):
    unknown = gs1.lot_uri(GTIN, "NOPE")
    response = preview(chain, lots=f"{LOT}\n{unknown}", **{"class": "I"})
    assert response.status_code == 400 and f"No lot {unknown} in this ledger." in text(response)
    bad = preview(chain, lots="not a lot", **{"class": "I"})
    assert bad.status_code == 400 and "Not a lot&#39;s URI: not a lot" in text(bad)
    form = {"lots": LOT, "reason": "x", "class": "I"}
    assert chain.post("farm1", "/portal/regulator/recall/preview", form).status_code == 403


# --- 2. the overview


def test_overview_lists_open_excursions_holds_and_flags_newest_first(chain):
    world = chain.world
    world.keys["rules"] = Ed25519PrivateKey.generate()
    enrol = {"subject": world.did("rules"), "type": "rules", "name": "rules"}
    world.ok("registrar", "enrol", None, enrol)
    evidence = {"excursions": [{"start": at(1), "end": at(3), "duration_s": 7200}]}
    cold = {"rule": "cold", "reason": "2 h at 11 °C", "evidence": evidence}
    hold = world.ok("rules", "hold", [LOT], cold)
    flag = {"signal": "counterfeit", "rule": "far", "reason": "KE and DE", "key": "serial:S1"}
    world.ok("rules", "flag", [BAG], flag)
    warm = {"signal": "coldchain", "rule": "warm", "reason": "too warm", "key": "probe:1"}
    world.ok("rules", "flag", [LOT], warm)
    client = chain.client("reg1")
    page = text(client.get("/portal/regulator/overview"))
    table = page[page.index('id="overview"') :]
    rows = table[: table.index("</table>")].split("<tr>")[2:]
    assert [re.search(r">(LOT42|BAG1)<", row).group(1) for row in rows] == [
        "LOT42",
        "BAG1",
        "LOT42",
    ]
    assert "Excursion: flagged" in rows[0] and "Flag: counterfeit" in rows[1]
    assert "Excursion: on hold" in rows[2] and "2 h at 11 °C" in rows[2]
    assert f'href="/portal/lots/{chain.lot_id(BAG)}"' in rows[1]
    assert "(3)" in page
    # a released hold is no longer open
    form = {"lots": LOT, "hold": hold.event_id, "reason": "retested"}
    assert chain.post("reg1", "/portal/regulator/holds/release", form).status_code == 303
    page = text(client.get("/portal/regulator/overview"))
    assert "2 h at 11 °C" not in page and "(2)" in page
    assert chain.client("farm1").get("/portal/regulator/overview").status_code == 403
    assert chain.accounts.audit_entries(action="overview")


def test_overview_is_paginated(chain, monkeypatch):
    from provenance.web.portal import regulator

    world = chain.world
    world.keys["rules"] = Ed25519PrivateKey.generate()
    world.ok(
        "registrar",
        "enrol",
        None,
        {"subject": world.did("rules"), "type": "rules", "name": "rules"},
    )
    for n in range(5):
        flag = {"signal": "logger-silent", "rule": "quiet", "reason": f"silent {n}", "key": f"k{n}"}
        world.ok("rules", "flag", [LOT], flag)
    monkeypatch.setattr(regulator, "OVERVIEW_PAGE", 2)
    client = chain.client("reg1")
    first = text(client.get("/portal/regulator/overview"))
    assert "silent 4" in first and "silent 3" in first and "silent 2" not in first
    assert "page 1 of 3" in first
    last = text(client.get("/portal/regulator/overview?page=3"))
    assert "silent 0" in last and "silent 1" not in last
    assert client.get("/portal/regulator/overview?page=x").status_code == 400


# --- 3. "Ship to"


def options(page: str) -> list[str]:
    select = page[page.index('<select name="to"') :]
    select = select[: select.index("</select>")]
    return re.findall(r'<option value="did:key:[^"]+"(?: selected)?>([^<]+)</option>', select)


def test_ship_to_offers_only_parties_a_shipment_can_go_to(chain):
    world = chain.world
    client = chain.client("farm1")
    lot2 = {"gtin": GTIN, "lot": "LOT43", "product": "Kale", "category": "food"}
    world.ok("farm", "commission", [LOT2], lot2, time=at(1))
    page = text(client.get(f"/portal/lots/{chain.lot_id(LOT2)}"))
    offered = options(page)
    assert offered == [
        "carrier (carrier)",
        "dc (distributor)",
        "packer (processor)",
        "store (retailer)",
    ]  # no regulator, inspector, the farm itself, nor a clinic for a food lot
    # a vaccine lot may go to a clinic; its maker is offered a lot it made back
    vaccine = gs1.lot_uri(GTIN, "VAX1")
    made = {"gtin": GTIN, "lot": "VAX1", "product": "Vaccine", "category": "vaccine"}
    world.ok("farm", "commission", [vaccine], made, time=at(1))
    world.ship_and_receive("farm", "dc", [vaccine], 2)
    chain.user("dc1", "dc")
    offered = options(text(chain.client("dc1").get(f"/portal/lots/{chain.lot_id(vaccine)}")))
    assert offered[0] == "farm (producer)" and "clinic (clinic)" in offered
    assert "dc (distributor)" not in offered and "regulator (regulator)" not in offered


def test_ship_to_search_filters_on_the_server(chain):
    world = chain.world
    world.ok("farm", "commission", [LOT2], {"gtin": GTIN, "lot": "LOT43", "product": "K"})
    client = chain.client("farm1")
    url = f"/portal/lots/{chain.lot_id(LOT2)}"
    found = text(client.get(url + "?to_q=DIST"))
    assert options(found) == ["dc (distributor)"] and " selected>dc (distributor)" in found
    assert options(text(client.get(url + "?to_q=sto"))) == ["store (retailer)"]
    page = text(client.get(url + "?to_q=regulator"))
    assert options(page) == [] and "No party you can ship to matches" in page
    assert 'name="to_q" value="regulator"' in page  # the search is kept
    # the form ships to what it offered
    store = world.did("store")
    form = {"to": store}
    assert chain.post("farm1", f"/portal/lots/{chain.lot_id(LOT2)}/ship", form).status_code == 303


# --- 4. the report's place


def test_last_place_prefers_the_holders_own_record():
    rows = [
        (9, "receive", 2, "2026-09-22T09:00:00.000Z", None),
        (8, "ship", 1, "2026-09-22T08:00:00.000Z", '{"name": "Packhouse dock"}'),
        (5, "transform", 1, "2026-09-22T05:00:00.000Z", '{"name": "Packhouse"}'),
    ]
    store_place = ("2026-09-21T06:00:00.000Z", '{"name": "Store 7"}')
    assert last_place(rows, 2, store_place) == Place(
        {"name": "Store 7"}, "2026-09-21T06:00:00.000Z", "holder"
    )
    assert last_place(rows, 2, None) == Place(
        {"name": "Packhouse dock"}, "2026-09-22T08:00:00.000Z", "earlier"
    )
    received_at = [(10, "receive", 2, "2026-09-22T10:00:00.000Z", '{"name": "Back room"}'), *rows]
    assert last_place(received_at, 2, store_place).basis == "lot"
    assert last_place(rows[1:], 1, None) == Place(
        {"name": "Packhouse dock"}, "2026-09-22T08:00:00.000Z", "lot"
    )  # in transit: the sender still holds it
    assert last_place([], 2, None) is None


def test_recall_report_where_is_the_last_place_actually_recorded(chain):
    world = chain.world
    # the store once recorded where it is, receiving another lot
    world.ok("farm", "commission", [LOT2], {"gtin": GTIN, "lot": "LOT43", "product": "K"})
    shipped = world.ok("farm", "ship", [LOT2], {"to": world.did("store")}, time=at(5))
    where = {"shipment": shipped.event_id, "location": {"name": "Store 7"}}
    world.ok("store", "receive", [LOT2], where, time=at(6))
    # BAG1's shipment named the packhouse dock, its receipt names no place
    bag_ship = world.store.event_at(world.store.open_shipment_for(chain.lot_id(BAG))).envelope
    world.ok("store", "receive", [BAG], {"shipment": bag_ship.event_id}, time=at(7))
    recall = {"lots": LOT, "reason": "Listeria found", "class": "I", "confirm": "yes"}
    assert chain.post("reg1", "/portal/regulator/recall", recall).status_code == 303
    client = chain.client("reg1")
    report = text(client.get(f"/portal/regulator/recalls/{chain.lot_id(LOT)}"))
    rows = report[report.index("<tbody>") : report.index("</tbody>")].split("<tr>")
    bag = next(row for row in rows if "BAG1" in row)
    assert "last recorded at Store 7 on 21 Sep 2026, 20:13 (UTC)" in bag
    assert "its receipt named none" in bag
    lot = next(row for row in rows if "LOT42" in row)
    assert "last recorded at Packhouse on" in lot  # the packer's own transform named it
    data = chain.api("GET", f"/api/v1/recalls/report?uri={LOT}", chain.token("regulator")).json
    by_lot = {a["lot"]: a for a in data["affected"]}
    assert by_lot[BAG]["location"] == {"name": "Store 7"}
    assert by_lot[BAG]["location_recorded"]["basis"] == "holder"
    lots_csv = text(client.get(f"/portal/regulator/recalls/{chain.lot_id(LOT)}/lots.csv"))
    assert "Store 7" in lots_csv and "Packhouse dock" not in lots_csv
    # the lot's page and the trace say the same, not the sender's shipping place
    lot_page = text(client.get(f"/portal/lots/{chain.lot_id(BAG)}"))
    last = lot_page[lot_page.index("Last place") :][:400]
    assert "last recorded at Store 7" in last and "Packhouse dock" not in last
    traced = text(client.get(f"/portal/regulator/trace?uri={LOT}&direction=forward"))
    bag_row = next(row for row in traced.split("<tr>") if "BAG1" in row)
    assert "last recorded at Store 7" in bag_row and "Packhouse dock" not in bag_row


def test_a_recall_form_names_a_bounded_number_of_lots(chain):
    many = "\n".join(gs1.lot_uri(GTIN, f"X{n}") for n in range(201))
    response = preview(chain, lots=many, **{"class": "I"})
    assert response.status_code == 400
    assert "Name at most 200 lots in one recall" in text(response)
    form = {"lots": many, "reason": "x", "class": "I", "confirm": "yes"}
    refused = chain.post("reg1", "/portal/regulator/recall", form)
    assert refused.status_code == 400 and recall_rows(chain.world) == 0
