"""The cold chain over the whole life of a lot (`provenance.domain.coldchain_life`): known
answers for the pure function, and the scan page, its JSON twin, the portal and the rules
engine agreeing on one lot whose legs are each within tolerance but not together; an
unmonitored lot and an unmonitored leg; what a product inherits from its ingredients."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.ingredients import CHARD, SALAD, make_salad
from support.portal import Portal, make_app
from support.rules import service
from support.world import GTIN, HOUR, LOT, T0, at

from provenance.core import gs1
from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time
from provenance.domain.coldchain import MINUTE, profile
from provenance.domain.coldchain_life import UNMONITORED, LegCover, Record, judge_life
from provenance.domain.coldchain_status import EXCEEDED, EXCURSION, GAP, OK, assess
from provenance.ledger import lot_model as scan
from provenance.ledger.lot_view import Scanner

CHILLED = profile("chilled")  # 0–5 °C, 2 h per excursion, 4 h in all


def minutes(*spans: tuple[int, int, float], every: int = 6) -> list[tuple[int, float]]:
    """Readings every *every* minutes: each span is (from minute, to minute, °C), to excluded."""
    return [
        (T0 + m * MINUTE, temperature)
        for start, end, temperature in spans
        for m in range(start, end, every)
    ]


# Two loggers, one leg each. Every excursion is bounded by the in-range readings around it
# (docs/coldchain.md): the farm probe is out 114 + 114 min, the truck 114 + 120 min.
FARM_SPANS = ((60, 120, 3.0), (120, 228, 8.0), (228, 300, 3.0), (300, 408, 8.0), (408, 600, 3.0))
TRUCK_SPANS = (
    (660, 720, 3.0),
    (720, 828, 9.0),
    (828, 900, 3.0),
    (900, 1014, 9.5),
    (1014, 1200, 3.0),
)
FARM = minutes(*FARM_SPANS)
TRUCK = minutes(*TRUCK_SPANS)
TOTAL = (114 + 114 + 114 + 120) * MINUTE  # 7 h 42 min, against 4 h tolerated


def legs(shop_readings: int = 0) -> list[LegCover]:
    return [
        LegCover("Farm", T0, T0 + 600 * MINUTE, len(FARM)),
        LegCover("Farm", T0 + 600 * MINUTE, T0 + 660 * MINUTE, 0, receiver="Truck Co"),
        LegCover("Truck Co", T0 + 660 * MINUTE, T0 + 1200 * MINUTE, len(TRUCK)),
        LegCover("Shop", T0 + 1200 * MINUTE, None, shop_readings),
    ]


# --- the pure function: known answers


def test_legs_each_within_tolerance_exceed_it_together():
    # each leg alone is "within tolerance", as the page said leg by leg before
    assert assess(FARM, CHILLED).state == "excursion"
    assert assess(TRUCK, CHILLED).state == "excursion"
    life = judge_life([Record("probe", FARM), Record("truck", TRUCK)], CHILLED, legs=legs())
    assert life.state == EXCEEDED
    assert life.time_out_of_range_us == TOTAL
    assert life.longest is not None and life.longest.duration_us == 120 * MINUTE
    assert life.peak is not None and life.peak.peak_c == 9.5
    assert life.min_c == 3.0 and life.max_c == 9.5
    assert len(life.excursions) == 4
    assert life.breaches == ("7 h 42 min out of range in all over 4 excursions (tolerated: 4 h)",)
    assert [leg.name for leg in life.unmonitored_legs] == [
        "in transit from Farm to Truck Co",
        "with Shop",
    ]
    assert "no temperature logger in transit from Farm to Truck Co" in life.reasons
    assert [(record.name, status.state) for record, status in life.records] == [
        ("probe", "excursion"),
        ("truck", "excursion"),
    ]


def test_one_logger_over_all_legs_is_judged_as_assess_judges_its_record():
    both = FARM + TRUCK
    life = judge_life([Record("probe", both)], CHILLED)
    status = assess(both, CHILLED)
    assert status.state == life.state == EXCEEDED
    assert life.time_out_of_range_us == status.time_out_of_range_us == TOTAL
    assert life.excursions == status.excursions
    assert life.mkt_c == pytest.approx(status.mkt_c)


def test_two_loggers_that_saw_the_same_hour_count_it_once():
    hot = minutes((0, 60, 3.0), (60, 120, 8.0), (120, 240, 3.0))
    other = [(t + 3 * MINUTE, v) for t, v in hot]  # a second probe, 3 min later
    life = judge_life([Record("a", hot), Record("b", other)], CHILLED)
    # a: 54–120 min, b: 57–123 min; together 54–123 min, not 132 min
    assert life.time_out_of_range_us == 69 * MINUTE
    assert len(life.excursions) == 1 and life.state == EXCURSION


def test_an_excursion_carried_on_by_the_next_logger_is_one_excursion():
    # the farm probe ends warm (open), the truck starts warm where it stopped
    farm = minutes((0, 60, 3.0), (60, 90, 7.0))
    truck = minutes((84, 150, 7.0), (150, 240, 3.0))
    life = judge_life([Record("farm", farm), Record("truck", truck)], CHILLED)
    assert [(e.start_us - T0) // MINUTE for e in life.excursions] == [54]
    assert life.longest is not None and life.longest.duration_us == (150 - 54) * MINUTE
    assert life.state == EXCURSION  # 1 h 36 min: within 2 h


def test_an_unmonitored_lot_is_never_fine():
    life = judge_life([], CHILLED, legs=[LegCover("Farm", T0, None, 0)])
    assert life.state == UNMONITORED and not life.fine and not life.monitored
    assert life.reasons == (
        "no temperature logger recorded it on any leg: it should be kept at 0–5 °C, "
        "and whether it was is not known",
    )
    assert [leg.name for leg in life.unmonitored_legs] == ["with Farm"]
    assert judge_life([Record("probe", [])], CHILLED).state == UNMONITORED


def test_a_leg_without_a_logger_is_named_and_not_fine():
    cold = minutes((0, 600, 3.0))
    watched = [LegCover("Farm", T0, T0 + 600 * MINUTE, len(cold))]
    assert judge_life([Record("probe", cold)], CHILLED, legs=watched).state == OK
    life = judge_life(
        [Record("probe", cold)],
        CHILLED,
        legs=[*watched, LegCover("Shop", T0 + 600 * MINUTE, None, 0)],
    )
    assert life.state == GAP
    assert life.reasons == ("no temperature logger with Shop",)


def test_a_silence_another_logger_covered_is_not_a_gap():
    a = minutes((0, 120, 3.0), (300, 480, 3.0))  # silent 2 h
    b = minutes((90, 330, 4.0))
    assert judge_life([Record("a", a)], CHILLED).gaps == ((T0 + 114 * MINUTE, T0 + 300 * MINUTE),)
    life = judge_life([Record("a", a), Record("b", b)], CHILLED)
    assert life.gaps == () and life.state == OK
    part = minutes((90, 200, 4.0))
    life = judge_life([Record("a", a), Record("b", part)], CHILLED)
    assert life.gaps == ((T0 + 198 * MINUTE, T0 + 300 * MINUTE),) and life.state == GAP


def test_hard_limits_and_mkt_over_the_whole_life():
    vaccine = profile("vaccine")
    ok = minutes((0, 600, 5.0))
    frozen = minutes((0, 60, 5.0), (60, 66, -1.0), (66, 120, 5.0))
    life = judge_life([Record("a", ok), Record("b", frozen)], vaccine)
    assert life.state == EXCEEDED and "-1 °C is below the -0.5 °C limit" in life.breaches
    warm = minutes((0, 1440, 8.0), (1440, 1500, 14.0), every=15)
    life = judge_life([Record("a", warm)], vaccine)
    assert life.window_mkt is not None and life.window_mkt.mkt_c > 8.0
    assert any(b.startswith("mean kinetic temperature") for b in life.breaches)


def test_a_live_record_runs_on_to_now():
    cold = minutes((0, 120, 3.0))
    now = T0 + 300 * MINUTE
    assert judge_life([Record("a", cold)], CHILLED, now_us=now).state == OK
    life = judge_life([Record("a", cold, live=True)], CHILLED, now_us=now)
    assert life.state == GAP and life.gaps == ((T0 + 114 * MINUTE, now),)


def test_bad_input_is_a_validation_error():
    with pytest.raises(ValidationError, match="profile"):
        judge_life([], "chilled")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="time_us"):
        judge_life([Record("a", [(1.5, 3.0)])], CHILLED)  # type: ignore[list-item]


# --- page, JSON twin, portal and rules engine: one lot, one verdict


def reading(world, logger: str, time_us: int, temperature: float):
    return world.sign(
        logger, "reading", None, {"temperature_c": temperature}, time=format_time(time_us)
    )


def split_over_two_loggers(world) -> None:
    """LOT42 (chilled): the farm's probe reads 1 h–10 h, the probe comes off, the lot is
    shipped at 10 h and received at 11 h by the carrier, whose truck logger reads 11 h–20 h;
    each logger's record is within tolerance, together they are 7 h 42 min out of 0–5 °C."""
    world.ledger.append([reading(world, "probe", t, v) for t, v in FARM])
    world.ok("farm", "detach", [LOT], {"device": world.did("probe")}, time=at(9.95))
    world.ship_and_receive("farm", "carrier", [LOT], 10)
    world.enrol_device("truck", owner="carrier")
    world.ok("carrier", "attach", [LOT], {"device": world.did("truck")}, time=at(11))
    world.ledger.append([reading(world, "truck", t, v) for t, v in TRUCK])
    world.ok("carrier", "detach", [LOT], {"device": world.did("truck")}, time=at(20))
    world.now = T0 + 21 * HOUR


def words(response) -> str:
    body = response.get_data(as_text=True)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def test_page_portal_and_rules_agree_on_the_whole_life(file_world, tmp_path):
    world = file_world
    split_over_two_loggers(world)
    app = make_app(world, tmp_path)
    portal = Portal(world, app, tmp_path)
    portal.user("reg1", "regulator")
    path = LOT.removeprefix(gs1.DEFAULT_BASE)

    # the scan page: the headline judges the whole life, the legs keep their own detail
    page = app.test_client().get(path)
    assert page.status_code == 200
    status = words(page).split("Read aloud")[0]
    assert "Cold-chain excursion" in status
    assert "Outside 0–5 °C for 7 h 42 min in all over its journey." in status
    assert "Beyond what this product tolerates." in status
    assert "No temperature logger in transit from farm to carrier." in status
    twin = app.test_client().get(path, headers={"Accept": "application/json"}).get_json()
    assert twin["state"] == "excursion"
    life = twin["cold_chain"]
    assert life["state"] == "tolerance-exceeded"
    assert life["time_out_of_range_s"] == TOTAL // 1_000_000
    assert life["longest_excursion"]["duration_s"] == 7200 and life["peak_c"] == 9.5
    assert life["loggers"] == ["probe", "truck"]
    assert [leg["in_transit_to"] for leg in life["unmonitored_legs"]] == ["carrier"]
    assert [leg["cold_chain"]["state"] for leg in twin["legs"] if "cold_chain" in leg] == [
        "excursion",
        "excursion",
    ]

    # the portal: the same verdict, in the same words
    lot_id = portal.lot_id(LOT)
    seen = words(portal.client("reg1").get(f"/portal/lots/{lot_id}"))
    assert "temperature problem" in seen
    assert "Outside 0–5 °C for 7 h 42 min in all over its journey." in seen
    assert "Beyond what this product tolerates." in seen

    # the rules engine: holds it, for the same reason
    world.keys["rules"] = Ed25519PrivateKey.generate()
    rules = {"subject": world.did("rules"), "type": "rules", "name": "rules"}
    world.ok("registrar", "enrol", None, rules)
    result = service(world, tmp_path).round(timer=False)
    events = [world.store.event_at(a.index).envelope for a in result.appended]
    (hold,) = [e for e in events if e.kind == "hold"]
    assert hold.data["rule"] == "food-coldchain"
    assert "7 h 42 min out of range in all" in hold.data["reason"]
    assert "loggers probe, truck together exceed the chilled tolerance" in hold.data["reason"]
    evidence = hold.data["evidence"]
    assert evidence["time_out_of_range_s"] == TOTAL // 1_000_000
    assert [lg["logger_name"] for lg in evidence["loggers"]] == ["probe", "truck"]
    # …and the page now shows the hold, still with the whole life below it
    after = Scanner(clock=lambda: world.now).view(world.store, LOT)
    assert after.state == scan.HELD and after.life is not None
    assert after.life.state == EXCEEDED and scan.EXCURSION in after.warnings


def test_an_unmonitored_lot_says_what_is_known_and_what_is_not(file_world, tmp_path):
    app = make_app(file_world, tmp_path)
    path = LOT.removeprefix(gs1.DEFAULT_BASE)
    text = words(app.test_client().get(path))
    assert "All good" not in text and "stayed within its safe temperature" not in text
    assert "Temperature not recorded" in text
    assert "It must be kept at 0–5 °C; whether it was is not known." in text
    twin = app.test_client().get(path, headers={"Accept": "application/json"}).get_json()
    assert twin["state"] == "unmonitored" and twin["cold_chain"]["state"] == "unmonitored"
    zh = words(app.test_client().get(path + "?lang=zh"))
    assert "温度未记录" in zh


def test_an_unmonitored_leg_is_named_on_the_page(file_world, tmp_path):
    world = file_world
    world.ledger.append([world.reading(1 + k / 4, 3.0) for k in range(36)])
    world.ok("farm", "detach", [LOT], {"device": world.did("probe")}, time=at(10))
    world.ship_and_receive("farm", "carrier", [LOT], 10)
    world.now = T0 + 12 * HOUR
    view = Scanner(clock=lambda: world.now).view(world.store, LOT)
    assert view.state == scan.GAP
    assert view.reasons == (
        "no temperature logger in transit from farm to carrier",
        "no temperature logger with carrier",
    )
    text = words(make_app(world, tmp_path).test_client().get(LOT.removeprefix(gs1.DEFAULT_BASE)))
    assert "Part of its journey had no temperature logger" in text
    assert "Its temperature was recorded on 1 of its 3 legs, by probe." in text
    assert "No temperature logger with carrier." in text
    assert "All good" not in text


# --- ingredients: what a product made from other lots inherits


def test_a_product_inherits_an_ingredients_excursion_with_the_path(world):
    make_salad(world)
    view = Scanner(clock=lambda: world.now).view(world.store, SALAD)
    assert view.life is None  # the salad itself has no profile…
    assert view.state == scan.EXCURSION  # …but its kale was too warm
    (item,) = view.inherited
    assert item.path == ("Kale",) and item.uris == (LOT,)
    assert item.life is not None and item.life.time_out_of_range_us == 3 * HOUR + 15 * MINUTE
    assert view.reasons[0].startswith("the Kale in it: ")
    assert [i.uri for i in view.ingredients] == [LOT, CHARD]
    assert view.ingredients[0].view.legs[0].readings == 36


def test_a_product_inherits_a_hold_and_a_recall_from_an_ingredient(world):
    make_salad(world)
    world.keys["rules"] = Ed25519PrivateKey.generate()
    rules = {"subject": world.did("rules"), "type": "rules", "name": "rules"}
    world.ok("registrar", "enrol", None, rules)
    hold = {"rule": "food-coldchain", "reason": "3 h 15 min at 9 °C"}
    world.ok("rules", "hold", [LOT], hold, time=at(12.5))
    scanner = Scanner(clock=lambda: world.now)
    view = scanner.view(world.store, SALAD)
    assert view.state == scan.HELD and view.holds == ()  # the salad itself is not held
    assert view.reasons == ("the Kale in it: 3 h 15 min at 9 °C",)
    assert [i.state for i in view.inherited] == [scan.HELD, scan.EXCURSION]
    world.ok("regulator", "recall", [CHARD], {"reason": "Glass", "class": "II"}, time=at(12.6))
    view = scanner.view(world.store, SALAD)
    assert view.state == scan.RECALLED
    assert [r.source for r in view.active_recalls] == [CHARD]
    assert ("Chard",) in [i.path for i in view.inherited if i.state == scan.RECALLED]


def test_inherited_through_two_levels_carries_the_whole_path(world):
    make_salad(world)
    bowl = gs1.lot_uri(GTIN, "BOWL1")
    quantity = {"value": 1, "unit": "KGM"}
    world.ok(
        "farm",
        "transform",
        [SALAD, bowl],
        {
            "inputs": [{"batch": SALAD, "quantity": quantity}],
            "outputs": [{"batch": bowl, "quantity": quantity, "product": "Bowl"}],
        },
        time=at(12.5),
    )
    view = Scanner(clock=lambda: world.now).view(world.store, bowl)
    assert view.state == scan.EXCURSION
    assert [(i.path, i.uris) for i in view.inherited] == [(("Salad", "Kale"), (SALAD, LOT))]
    (salad,) = view.ingredients
    assert [i.uri for i in salad.view.ingredients] == [LOT, CHARD]
    # one level more is beyond MAX_INGREDIENT_DEPTH: counted, not shown
    box = gs1.lot_uri(GTIN, "BOX1")
    world.ok(
        "farm",
        "transform",
        [bowl, box],
        {
            "inputs": [{"batch": bowl, "quantity": quantity}],
            "outputs": [{"batch": box, "quantity": quantity, "product": "Box"}],
        },
        time=at(12.6),
    )
    view = Scanner(clock=lambda: world.now).view(world.store, box)
    (bowl_item,) = view.ingredients
    (salad,) = bowl_item.view.ingredients
    assert salad.view.ingredients == () and salad.view.ingredients_not_shown == 2


def test_the_made_from_page_and_its_twin_show_the_ingredients(file_world, tmp_path):
    make_salad(file_world)
    app = make_app(file_world, tmp_path)
    path = SALAD.removeprefix(gs1.DEFAULT_BASE)
    page = app.test_client().get(path)
    body = page.get_data(as_text=True)
    text = words(page)
    assert "The Kale in this product was too warm for 3 h 15 min." in text.split("Read aloud")[0]
    assert "What it was made from" in text and "Hill Farm" in text
    assert 'id="ing0-leg0"' in body  # the kale's leg chart
    assert text.count("Produced by farm") >= 2  # the kale's and the chard's journeys
    twin = app.test_client().get(path, headers={"Accept": "application/json"}).get_json()
    assert [i["product"] for i in twin["ingredients"]] == ["Kale", "Chard"]
    assert twin["ingredients"][0]["cold_chain"]["time_out_of_range_s"] == 3 * 3600 + 900
    assert twin["inherited"] == [
        {
            "state": "excursion",
            "path": ["Kale"],
            "lots": [LOT],
            "reasons": list(twin["ingredients"][0]["cold_chain"]["reasons"]),
        }
    ]
    zh = words(app.test_client().get(path + "?lang=zh"))
    assert "这个产品中的Kale" in zh


def test_the_rules_engine_holds_on_the_whole_life_of_two_loggers():
    from provenance.domain.rule_facts import Logger, LotFacts
    from provenance.domain.rule_facts import Reading as Read
    from provenance.domain.rules import HOLD, evaluate, parse_rules

    rules = parse_rules(
        b'[[rules]]\nname = "food"\nactions = ["hold"]\n'
        b'[rules.condition]\ntype = "coldchain-tolerance"\ncategory = "food"\n',
        "test.toml",
    )

    def logger(did, name, readings, start):
        record = tuple(Read(t, v, start + k) for k, (t, v) in enumerate(readings))
        return Logger(did, name, readings[0][0], readings[-1][0] + MINUTE, record)

    farm = logger("did:key:zFarm", "probe", FARM, 100)
    truck = logger("did:key:zTruck", "truck", TRUCK, 500)
    now = T0 + 1300 * MINUTE
    alone = [LotFacts(LOT, "Kale", "food", "chilled", (one,)) for one in (farm, truck)]
    assert [evaluate(rules, facts, now, kinds={"reading"}) for facts in alone] == [[], []]
    both = LotFacts(LOT, "Kale", "food", "chilled", (farm, truck))
    (action,) = evaluate(rules, both, now, kinds={"reading"})
    assert action.kind == HOLD
    assert "records of loggers probe, truck together exceed" in action.reason
    assert action.evidence["time_out_of_range_s"] == TOTAL // 1_000_000
    assert action.evidence["longest_excursion_s"] == 7200
    # the events the hold names: the longest excursion's (the truck's second) first and
    # last out-of-range readings, the peak being the first
    assert action.events == (500 + 40, 500 + 58)
    flags = parse_rules(
        b'[[rules]]\nname = "food"\nactions = ["flag"]\n'
        b'[rules.condition]\ntype = "coldchain-tolerance"\n',
        "test.toml",
    )
    (flag,) = evaluate(flags, both, now, kinds={"reading"})
    assert flag.key == f"life@{format_time(T0 + 114 * MINUTE)}"  # once per whole life
