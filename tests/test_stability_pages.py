"""The stability budget where people see it (docs/coldchain.md, docs/portal.md): the
scan page's section and its discard headline, the JSON twin, the portal's lot
lists with FEFO hints, and the model with its parameters on the portal's lot page."""

from __future__ import annotations

import html
import json
import re

import pytest
from support.world import GTIN, LOT, at

from provenance.core import gs1
from provenance.web import create_app

PATH = LOT.removeprefix(gs1.DEFAULT_BASE)
OTHER = f"https://id.gs1.org/01/{GTIN}/10/LOT43"
# Chilled kale, say: 10 days at 0–5 °C, 6 h at 5–15 °C.
KALE = {
    "gtin": GTIN,
    "bands": [{"low_c": 0, "high_c": 5, "hours": 240}, {"low_c": 5, "high_c": 15, "hours": 6}],
    "arrhenius": {"activation_kj_mol": 83.144, "reference_c": 4, "hours": 240},
    "source": "our shelf-life study 2026-03",
}


def quarter_hours(world, start, end, temperature, lot=None):
    world.ledger.append(
        [world.reading(start + k / 4, temperature, lots=lot) for k in range(int((end - start) * 4))]
    )


def words(response) -> str:
    body = response.get_data(as_text=True)
    body = body.split("<main>", 1)[-1].split("</main>", 1)[0]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture
def client(file_world):
    return create_app(
        {
            "DATABASE": str(file_world.store.path),
            "CLOCK": lambda: file_world.now,
            "LOG_PUBLIC_KEY": file_world.log_public_key,
            "TESTING": True,
        }
    ).test_client()


def test_the_scan_page_says_how_much_budget_is_left_and_the_life_that_remains(file_world, client):
    file_world.ok("farm", "stability", None, KALE)
    quarter_hours(file_world, 1, 25, 3.0)  # 23.75 h counted at 0–5 °C of 240 h
    file_world.ok("farm", "detach", [LOT], {"device": file_world.did("probe")}, time=at(26))
    page = words(client.get(PATH))
    # Bands: 23.75/240 = 0.099; Arrhenius at 3 °C is slower than at 4 °C: less.
    assert "90% of the stability budget left" in page
    assert "Remaining shelf life: 9 d 15 min if kept at 0–5 °C" in page
    assert "Up to 10 d in all at 0–5 °C" in page and "activation energy 83.144" in page
    assert "Signed by farm" in page and "our shelf-life study" in page
    body = client.get(PATH, headers={"Accept": "application/json"}).get_json()
    assert body["stability"]["left_pct"] == 90 and body["stability"]["discard"] is False
    assert body["stability"]["storage"] == "0–5 °C"
    assert body["stability"]["profile"]["model"]["bands"][1] == {
        "low_c": 0 + 5.0,
        "high_c": 15.0,
        "hours": 6.0,
    }


def test_a_spent_budget_is_a_discard_headline(file_world, client):
    file_world.ok("farm", "stability", None, KALE)
    quarter_hours(file_world, 1, 5, 3.0)
    quarter_hours(file_world, 5, 12, 9.0)  # 7 h at 5–15 °C of 6 h allowed
    quarter_hours(file_world, 12, 14, 3.0)
    response = client.get(PATH)
    assert 'class="status status-discard"' in response.get_data(as_text=True)
    page = words(response)
    assert "DISCARD" in page and "Its stability budget is spent" in page
    assert "Spent: discard it." in page
    body = client.get(PATH, headers={"Accept": "application/json"}).get_json()
    assert body["state"] == "discard" and body["stability"]["discard"] is True
    assert "excursion" in body["also"]
    # The interval before the first warm reading counts warm too (from 4.75 h on);
    # 3.75 h at 0–5 °C had used 3.75/240 of the budget, so the rest, 0.984375 of
    # the 6 h at 5–15 °C, ran out 5.90625 h later, at 10.65625 h.
    assert body["stability"]["spent_at"] == at(10.65625)
    chinese = words(client.get(PATH + "?lang=zh"))
    assert "DISCARD" not in chinese


def test_outside_every_band_is_a_discard_naming_the_temperature(file_world, client):
    file_world.ok("farm", "stability", None, KALE)
    quarter_hours(file_world, 1, 3, 3.0)
    quarter_hours(file_world, 3, 3.25, 22.0)
    quarter_hours(file_world, 3.25, 5, 3.0)
    page = words(client.get(PATH))
    assert "It was at 22 °C, outside every temperature its maker's stability data allow" in page


def test_a_gap_is_said_and_the_budget_left_is_an_upper_bound(file_world, client):
    file_world.ok("farm", "stability", None, KALE)
    quarter_hours(file_world, 1, 5, 3.0)
    quarter_hours(file_world, 15, 20, 3.0)  # 10 h silent: chilled's gap limit is 1 h
    page = words(client.get(PATH))
    assert "At most 96% of the stability budget left" in page
    assert "No readings for 10 h" in page and "not counted" in page


def test_a_lot_whose_product_has_no_profile_shows_no_budget(file_world, client):
    quarter_hours(file_world, 1, 5, 3.0)
    page = words(client.get(PATH))
    assert "Stability budget" not in page
    assert client.get(PATH, headers={"Accept": "application/json"}).get_json()["stability"] is None


def test_a_new_profile_changes_the_page_at_once(file_world, client):
    quarter_hours(file_world, 1, 5, 3.0)
    assert "Stability budget" not in words(client.get(PATH))
    file_world.ok("farm", "stability", None, KALE)
    assert "Stability budget" in words(client.get(PATH))


# --- the portal


ROW_RANK = r"(LOT4[23]) (?:(?!LOT4[23]).)*?use #(\d)"  # a row's lot and its FEFO number


def second_lot(world, code="LOT43"):
    uri = f"https://id.gs1.org/01/{GTIN}/10/{code}"
    data = {"gtin": GTIN, "lot": code, "product": "Kale", "category": "food", "profile": "chilled"}
    world.ok("farm", "commission", [uri], data, time=at(0))
    return uri


def test_the_producers_lot_list_numbers_lots_first_expired_first_out(portal):
    world = portal.world
    world.ok("farm", "stability", None, KALE)
    other = second_lot(world)
    quarter_hours(world, 1, 5, 3.0)  # LOT42: cold
    world.ok("farm", "attach", [other], {"device": world.did("probe")}, time=at(5.5))
    world.ok("farm", "detach", [LOT], {"device": world.did("probe")}, time=at(5.25))
    quarter_hours(world, 6, 9, 9.0, lot=[other])  # LOT43: 3 h at 5–15 °C, half its 6 h
    page = words(portal.client("farm1").get("/portal/"))
    assert "Life left (FEFO)" in page and "First expired, first out" in page
    rows = {code: page.index(code) for code in ("LOT42", "LOT43")}
    assert rows["LOT42"] > rows["LOT43"]  # newest first, the usual order
    hinted = re.findall(ROW_RANK, page)
    assert ("LOT43", "1") in hinted and ("LOT42", "2") in hinted
    ordered = words(portal.client("farm1").get("/portal/?order=fefo"))
    assert ordered.index("LOT43") < ordered.index("LOT42")
    lots = portal.api("GET", "/api/v1/lots", portal.token("farm", scope="read")).get_json()
    found = {row["lot_code"]: row for row in lots["lots"]}
    assert found["LOT43"]["stability"]["left_pct"] < found["LOT42"]["stability"]["left_pct"]
    assert found["LOT43"]["use_by"] < found["LOT42"]["use_by"]


def test_a_recalled_lot_gets_no_fefo_number(portal):
    world = portal.world
    world.ok("farm", "stability", None, KALE)
    other = second_lot(world)
    quarter_hours(world, 1, 5, 3.0)
    world.ok("regulator", "recall", [LOT], {"reason": "Listeria", "class": "I"}, time=at(6))
    page = words(portal.client("farm1").get("/portal/"))
    hinted = dict(re.findall(ROW_RANK, page))
    assert "LOT42" not in hinted  # recalled: not to be used at all
    assert other.endswith("LOT43")


def test_a_spent_lot_in_the_portal_list_says_discard_in_the_readers_language(portal):
    world = portal.world
    world.ok("farm", "stability", None, KALE)
    quarter_hours(world, 1, 3, 3.0)
    quarter_hours(world, 3, 3.25, 22.0)
    page = words(portal.client("farm1").get("/portal/"))
    assert "discard: stability budget spent" in page
    assert "At 22 °C on" in page and "outside every band of its stability data" in page
    chinese = words(portal.client("farm1").get("/portal/?lang=zh"))
    assert "丢弃：稳定性预算已用尽" in chinese and "超出其稳定性数据的所有温度区间" in chinese


def test_the_portal_lot_page_shows_the_model_and_its_parameters_to_a_regulator(portal):
    world = portal.world
    world.ok("farm", "stability", None, {**KALE, "vvm": "VVM14"})
    quarter_hours(world, 1, 5, 3.0)
    lot_id = portal.lot_id(LOT)
    page = words(portal.client("reg1").get(f"/portal/lots/{lot_id}"))
    assert "Time per temperature band" in page and "240 h at 0–5 °C" in page
    assert "6 h at 5–15 °C" in page
    assert "Arrhenius" in page and "240 h at 4 °C; activation energy 83.144 kJ/mol" in page
    assert "VVM14: 14 d at 37 °C, 90 d at 25 °C, 1095 d at 5 °C" in page
    assert "Profile signed by farm" in page and "our shelf-life study 2026-03" in page
    search = words(portal.client("reg1").get(f"/portal/regulator/search?gtin={GTIN}"))
    assert "Life left (FEFO)" in search and "use #1" in search


def test_an_edited_profile_in_the_database_is_not_judged_by_and_the_page_says_so(
    file_world, client
):
    # An insider lengthens the 6 h at 5–15 °C to 600 h in the database: the
    # signature no longer matches, so the page trusts no profile and says why.
    file_world.ok("farm", "stability", None, KALE)
    quarter_hours(file_world, 1, 5, 3.0)
    quarter_hours(file_world, 5, 12, 9.0)
    lenient = {**KALE, "bands": [KALE["bands"][0], {**KALE["bands"][1], "hours": 600}]}
    file_world.store.conn.execute(
        "UPDATE events SET data = ? WHERE kind = 21",
        (json.dumps(lenient, separators=(",", ":")),),
    )
    body = client.get(PATH, headers={"Accept": "application/json"}).get_json()
    assert body["state"] == "unverified" and body["stability"] is None
    assert any("stability profile does not verify" in reason for reason in body["reasons"])
    page = words(client.get(PATH))
    assert "Record does not verify" in page and "DISCARD" not in page
