"""Stability budget and remaining shelf life (docs/coldchain.md, "Stability budget"):
known answers worked by hand for band budgets, Arrhenius and WHO's VVM categories;
gaps stated and not counted; the signed `stability` profile and who may sign it."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.world import GTIN, World

from provenance.core.errors import ValidationError
from provenance.core.kinds import validate_data
from provenance.domain.stability import (
    VVM_CATEGORIES,
    Arrhenius,
    Band,
    StabilityModel,
    assess,
    model_from_data,
    vvm_lifetime_us,
)
from provenance.ledger.audit import verify_ledger
from provenance.ledger.reasons import UNAUTHORISED
from provenance.ledger.stability import profile_in_force

HOUR = 3_600_000_000
DAY = 24 * HOUR
T0 = 1_790_000_000_000_000

# "Up to 30 days at 2–8 °C after thaw, 12 h at 8–25 °C" (the shape manufacturers publish).
THAWED = StabilityModel(bands=(Band(2, 8, 720), Band(8, 25, 12)))


def steady(temperature: float, hours: float, every_h: float = 1.0, start_h: float = 0.0):
    """Readings every *every_h* at one temperature for *hours* (both ends read)."""
    steps = round(hours / every_h)
    return [(T0 + round((start_h + n * every_h) * HOUR), temperature) for n in range(steps + 1)]


def record(*blocks: tuple[float, int], every_h: float = 0.2):
    """Consecutive readings: each block is (°C, how many readings)."""
    out, n = [], 0
    for temperature, count in blocks:
        for _ in range(count):
            out.append((T0 + round(n * every_h * HOUR), temperature))
            n += 1
    return out


# --- band budgets


def test_band_budgets_add_up_by_the_share_of_each_band_62_per_cent_left():
    # Every 12 min: 5 °C at 0.0 … 20.0 h (101 readings), 20 °C at 20.2 … 23.8 h (19),
    # 5 °C at 24.0 … 37.6 h (69). An interval counts at its warmer reading, so
    # 20.0–24.0 h is at 20 °C: 4 h of 12 h allowed at 8–25 °C = 1/3; the other
    # 33.6 h at 2–8 °C are 33.6/720 = 0.04667. Used 0.38: 62 % left, and
    # 0.62 × 720 h = 446.4 h of shelf life left at 2–8 °C.
    readings = record((5, 101), (20, 19), (5, 69))
    budget = assess(readings, THAWED, HOUR)
    (part,) = budget.parts
    assert part.band_time_us == (round(33.6 * HOUR), 4 * HOUR)
    assert budget.used == pytest.approx(0.38)
    assert budget.left_pct == 62
    assert not budget.spent
    assert part.storage == "2–8 °C"
    assert budget.remaining_us == pytest.approx(446.4 * HOUR, abs=1)
    assert budget.use_by_us == budget.last_us + budget.remaining_us
    assert budget.gaps == () and budget.spent_at_us is None


def test_a_band_spent_is_a_discard_at_the_moment_it_ran_out():
    # 13 h at 20 °C, read hourly: the 12 h allowed at 8–25 °C run out 12 h in
    # (the 2–8 °C share is 0 so far).
    budget = assess(steady(20, 13), THAWED, HOUR)
    assert budget.used == pytest.approx(13 / 12)
    assert budget.spent and budget.left_pct == 0 and budget.remaining_us == 0
    assert budget.spent_at_us == T0 + 12 * HOUR


def test_time_outside_every_band_spends_the_budget_at_once():
    # One reading at 30 °C among 5 °C ones: nothing in the data covers 30 °C.
    readings = steady(5, 10)
    readings[5] = (readings[5][0], 30.0)
    budget = assess(readings, THAWED, HOUR)
    assert budget.spent
    assert budget.outside == ((T0 + 5 * HOUR, 30.0),)
    assert budget.parts[0].outside_us == 2 * HOUR  # the intervals either side of it
    # From the reading before it: it may have been that warm since then.
    assert budget.spent_at_us == T0 + 4 * HOUR


def test_a_shared_edge_counts_in_the_band_that_allows_longer():
    # 8 °C is in "2–8 °C" (720 h) and in "8–25 °C" (12 h): the manufacturer's 2–8 includes it.
    budget = assess(steady(8, 72), THAWED, HOUR)
    assert budget.used == pytest.approx(72 / 720)
    assert budget.left_pct == 90


def test_a_hole_between_bands_is_outside_every_band():
    # Frozen (−25…−15 °C) or thawed (2–8 °C): 0 °C is in neither.
    model = StabilityModel(bands=(Band(-25, -15, 4320), Band(2, 8, 720)))
    readings = [*steady(-20, 4), (T0 + 5 * HOUR, 0.0), *steady(5, 4, start_h=6)]
    budget = assess(readings, model, 2 * HOUR)
    assert budget.spent and budget.outside == ((T0 + 5 * HOUR, 0.0),)
    assert not assess(steady(-20, 4) + steady(5, 4, start_h=6), model, 2 * HOUR).outside


def test_readings_count_rounded_up_to_a_hundredth_of_a_degree():
    # 7.995 °C counts as 8.00 (still 2–8 °C); 8.001 °C as 8.01 (8–25 °C).
    assert assess(steady(7.995, 12), THAWED, HOUR).used == pytest.approx(12 / 720)
    assert assess(steady(8.001, 6), THAWED, HOUR).used == pytest.approx(6 / 12)


def test_twenty_thousand_readings_are_judged_within_a_page_budget():
    import time

    readings = [(T0 + n * 60_000_000, 5 + (n % 37) / 16) for n in range(20_000)]
    model = StabilityModel(bands=THAWED.bands, arrhenius=Arrhenius(83.144, 5, 720), vvm="VVM7")
    started = time.perf_counter()
    budget = assess(readings, model, HOUR)
    assert time.perf_counter() - started < 0.5  # about 0.05 s idle; loaded CI is slower
    assert budget.readings == 20_000 and not budget.spent


# --- Arrhenius


def test_arrhenius_known_answers_with_the_usp_activation_energy():
    # Ea = 83.144 kJ/mol, so Ea/R = 10 000 K; 1000 h at 5 °C (278.15 K).
    # At 25 °C (298.15 K): 1000 h × exp(10 000 × (1/298.15 − 1/278.15))
    #   = 1000 h × exp(−2.41166) = 89.66 h.
    # At 15 °C (288.15 K): 1000 h × exp(−1.24767) = 287.2 h.
    kinetics = Arrhenius(83.144, 5, 1000)
    assert kinetics.lifetime_us(5) == pytest.approx(1000 * HOUR)
    assert kinetics.lifetime_us(25) == pytest.approx(89.66 * HOUR, rel=1e-3)
    assert kinetics.lifetime_us(15) == pytest.approx(287.2 * HOUR, rel=1e-3)
    # 10 h at 25 °C then 100 h at 5 °C, read hourly.
    readings = steady(25, 10) + steady(5, 100, start_h=10)[1:]
    budget = assess(readings, StabilityModel(arrhenius=kinetics), HOUR)
    # The interval 10–11 h counts at 25 °C (its warmer reading): 11 h at 25 °C and
    # 99 h at 5 °C use 11/89.66 + 99/1000 = 0.1227 + 0.0990 = 0.2217: 77 % left.
    assert budget.used == pytest.approx(11 / 89.66 + 99 / 1000, rel=1e-3)
    assert budget.left_pct == 77
    assert budget.parts[0].storage == "5 °C"
    assert budget.remaining_us == pytest.approx((1 - budget.used) * 1000 * HOUR, abs=1)


def test_arrhenius_matches_the_mean_kinetic_temperature_of_a_steady_record():
    # A steady record's MKT is its temperature, and the budget it used is its
    # duration over the lifetime at that temperature.
    kinetics = Arrhenius(83.144, 5, 1000)
    budget = assess(steady(12, 48), StabilityModel(arrhenius=kinetics), HOUR)
    assert budget.used == pytest.approx(48 * HOUR / kinetics.lifetime_us(12))


# --- WHO VVM categories: the end point at each of the category's own temperatures


@pytest.mark.parametrize(
    ("category", "temperature", "days"),
    [
        ("VVM30", 37, 30),
        ("VVM30", 25, 193),
        ("VVM30", 5, 4 * 365),
        ("VVM14", 37, 14),
        ("VVM14", 25, 90),
        ("VVM14", 5, 3 * 365),
        ("VVM7", 37, 7),
        ("VVM7", 25, 45),
        ("VVM7", 5, 2 * 365),
        ("VVM2", 37, 2),
        ("VVM2", 5, 225),
    ],
)
def test_a_vvm_reaches_its_end_point_when_who_says(category, temperature, days):
    anchors = VVM_CATEGORIES[category]
    assert vvm_lifetime_us(anchors, temperature) == pytest.approx(days * DAY)
    model = StabilityModel(vvm=category)
    every = 6.0 if days > 100 else 1.0
    budget = assess(steady(temperature, days * 24, every), model, round(every * HOUR))
    assert budget.used == pytest.approx(1.0)
    half = assess(steady(temperature, days * 12, every), model, round(every * HOUR))
    assert half.left_pct == 50 and not half.spent


def test_vvm_between_and_beyond_its_anchors_runs_as_arrhenius_would():
    anchors = VVM_CATEGORIES["VVM7"]
    # Between 25 and 37 °C: log-linear in 1/T, so 31 °C lies between 7 and 45 days,
    # and warmer than 37 °C is faster still along the same line.
    assert 7 * DAY < vvm_lifetime_us(anchors, 31) < 45 * DAY
    assert vvm_lifetime_us(anchors, 40) < 7 * DAY
    assert vvm_lifetime_us(anchors, 2) > 2 * 365 * DAY
    lifetimes = [vvm_lifetime_us(anchors, t) for t in range(-10, 50)]
    assert lifetimes == sorted(lifetimes, reverse=True)


def test_a_combined_model_is_judged_by_its_most_spent_part():
    model = StabilityModel(bands=(Band(2, 8, 720),), vvm="VVM2")
    budget = assess(steady(5, 24 * 45), model, HOUR)
    # Bands: 1080/720 = 1.5 (spent); VVM2 at 5 °C: 45/225 = 0.2.
    assert [round(part.used, 3) for part in budget.parts] == [1.5, 0.2]
    assert budget.spent and budget.limiting.name == "bands"


# --- gaps are stated, not assumed cold


def test_a_gap_is_listed_and_not_counted():
    readings = steady(5, 10) + steady(5, 10, start_h=15)
    budget = assess(readings, THAWED, HOUR)
    assert budget.gaps == ((T0 + 10 * HOUR, T0 + 15 * HOUR),)
    assert budget.unmonitored_us == 5 * HOUR
    assert budget.counted_us == 20 * HOUR
    assert budget.used == pytest.approx(20 / 720)


def test_no_readings_say_nothing_and_spend_nothing():
    budget = assess([], THAWED, HOUR)
    assert budget.readings == 0 and budget.remaining_us is None and budget.use_by_us is None
    assert not budget.spent


# --- the model and its validation


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"gtin": GTIN}, "data"),
        ({"gtin": "9506000134352", "vvm": "VVM7"}, "data.gtin"),
        ({"gtin": GTIN, "vvm": "VVM99"}, "data.vvm"),
        ({"gtin": GTIN, "bands": [{"low_c": 8, "high_c": 2, "hours": 1}]}, "data.bands[0]"),
        (
            {
                "gtin": GTIN,
                "bands": [
                    {"low_c": 2, "high_c": 8, "hours": 720},
                    {"low_c": 6, "high_c": 25, "hours": 12},
                ],
            },
            "data.bands",
        ),
        ({"gtin": GTIN, "bands": [{"low_c": 2, "high_c": 8, "hours": 0}]}, "data.bands[0].hours"),
        (
            {"gtin": GTIN, "arrhenius": {"activation_kj_mol": 0, "reference_c": 5, "hours": 9}},
            "data.arrhenius.activation_kj_mol",
        ),
        ({"gtin": GTIN, "vvm": "VVM7", "shelf": 3}, "data.shelf"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_field(data, field):
    with pytest.raises(ValidationError) as caught:
        validate_data("stability", data, None)
    assert caught.value.field == field


def test_the_domain_model_refuses_what_it_cannot_judge_by():
    with pytest.raises(ValidationError):
        StabilityModel()
    with pytest.raises(ValidationError):
        StabilityModel(bands=(Band(2, 8, 720), Band(5, 25, 12)))
    with pytest.raises(ValidationError):
        assess(steady(5, 2), THAWED, 0)
    model = model_from_data(
        {
            "gtin": GTIN,
            "bands": [{"low_c": 2, "high_c": 8, "hours": 720}],
            "arrhenius": {"activation_kj_mol": 83.144, "reference_c": 5, "hours": 720},
            "vvm": "VVM14",
            "source": "SmPC 6.3",
        }
    )
    assert model.bands == (Band(2, 8, 720),) and model.vvm == "VVM14"
    assert math.isclose(model.arrhenius.hours, 720)


# --- the signed profile in the ledger


PROFILE = {"gtin": GTIN, "bands": [{"low_c": 2, "high_c": 8, "hours": 720}], "source": "SmPC"}


def test_the_producer_under_the_gtins_prefix_signs_the_profile_and_the_newest_is_in_force():
    world = World.create()
    first = world.ok("farm", "stability", None, PROFILE)
    assert profile_in_force(world.store, GTIN).event_id == first.event_id
    second = world.ok("farm", "stability", None, {"gtin": GTIN, "vvm": "VVM7"}, time=None)
    found = profile_in_force(world.store, GTIN)
    assert found.event_id == second.event_id and found.versions == 2
    assert found.model.vvm == "VVM7" and found.signer_name == "farm"
    assert profile_in_force(world.store, "09520123456788") is None
    assert verify_ledger(world.store, world.log_public_key).ok


@pytest.mark.parametrize("who", ["dc", "carrier", "clinic", "regulator", "inspector"])
def test_no_one_but_a_commissioning_party_may_sign_a_profile(who):
    world = World.create()
    refused = world.append(who, "stability", None, PROFILE)
    assert refused.status == "rejected" and refused.reason == UNAUTHORISED
    assert profile_in_force(world.store, GTIN) is None


def test_a_producer_without_the_gtins_company_prefix_may_not_sign_its_profile():
    world = World.create()
    world.enrol_party("rival", "producer", prefixes=["4000001"])
    refused = world.append("rival", "stability", None, PROFILE)
    assert refused.status == "rejected" and refused.reason == UNAUTHORISED
    assert "may not state the stability of" in refused.message
    world.enrol_party("nobody", "producer", prefixes=[])
    assert world.append("nobody", "stability", None, PROFILE).reason == UNAUTHORISED
    assert profile_in_force(world.store, GTIN) is None


# --- the command line


def test_the_cli_signs_a_profile_and_shows_the_one_in_force(two_lot_cli):
    run = two_lot_cli
    signed = run(
        "product", "stability", "--gtin", GTIN, "--as", "Farm",
        "--band", "2..8=30d", "--band", "8..25=12h", "--band", "-25..-15=180d",
        "--activation-energy", "83.144", "--reference", "5", "--reference-life", "720",
        "--vvm", "VVM7", "--source", "SmPC 6.3", "--json",
    )  # fmt: skip
    data = json.loads(signed.output)["data"]
    assert data["bands"] == [
        {"low_c": 2, "high_c": 8, "hours": 720.0},
        {"low_c": 8, "high_c": 25, "hours": 12.0},
        {"low_c": -25, "high_c": -15, "hours": 4320.0},
    ]
    assert data["arrhenius"] == {"activation_kj_mol": 83.144, "reference_c": 5.0, "hours": 720.0}
    shown = json.loads(run("product", "show", "--gtin", GTIN).output)
    assert shown["signer"]["name"] == "Farm" and shown["model"]["vvm"] == "VVM7"
    assert shown["event"] == json.loads(signed.output)["event"]


@pytest.mark.parametrize(
    ("args", "said", "code"),
    [
        (["--band", "2-8=30d"], "is not a band: write LOW..HIGH=DURATION", 2),
        (["--band", "2..8=30 weeks"], "is not a duration: write it as 30d, 12h or 90min", 2),
        (["--band", "8..2=30d"], "low_c must be below high_c", 1),
        (["--band", "2..8=30d", "--band", "5..25=12h"], "overlap: bands may share an edge", 1),
        (["--activation-energy", "83.144"], "Arrhenius needs all three", 2),
        ([], "say how long it keeps", 2),
        (["--vvm", "VVM99"], "Invalid value for '--vvm'", 2),
    ],
)
def test_the_cli_says_what_is_wrong_with_a_profile(two_lot_cli, args, said, code):
    result = two_lot_cli("product", "stability", "--gtin", GTIN, "--as", "Farm", *args, code=code)
    assert said in result.output and "Error:" in result.output
    assert "Traceback" not in result.output


def test_the_cli_refuses_a_profile_for_someone_elses_gtin_and_shows_none(two_lot_cli):
    run = two_lot_cli
    result = run(
        "product", "stability", "--gtin", "09520123456788", "--as", "Farm", "--vvm", "VVM7",
        code=1,
    )  # fmt: skip
    assert "Error: unauthorised: Farm may not state the stability of" in result.output
    missing = run("product", "show", "--gtin", "09520123456788", code=1)
    assert "Error: no stability profile for 09520123456788" in missing.output
    bad = run("product", "show", "--gtin", "123", code=1)
    assert "Error:" in bad.output and "Traceback" not in bad.output


# --- properties


def _records(low: float = -5):
    return st.lists(
        st.tuples(st.integers(0, 200), st.floats(low, 40, allow_nan=False)),
        min_size=2,
        max_size=60,
    )


_MODEL = StabilityModel(bands=THAWED.bands, arrhenius=Arrhenius(83.144, 5, 720), vvm="VVM14")


@settings(max_examples=150, deadline=None)
@given(_records(), st.randoms(use_true_random=False))
def test_the_order_readings_arrive_in_does_not_matter(record, shuffler):
    readings = [(T0 + minutes * 15 * 60_000_000, temp) for minutes, temp in record]
    shuffled = readings[:]
    shuffler.shuffle(shuffled)
    assert assess(shuffled, _MODEL, HOUR) == assess(readings, _MODEL, HOUR)


# From the coldest band up (2 °C here), warmer never helps. (Below it, warming
# into the band does: too cold is outside the bands too.)
@settings(max_examples=150, deadline=None)
@given(_records(low=2), st.integers(0, 59), st.floats(0.01, 10))
def test_a_warmer_reading_never_leaves_more_budget(record, position, warmer):
    readings = [(T0 + minutes * 15 * 60_000_000, temp) for minutes, temp in record]
    before = assess(readings, _MODEL, HOUR)
    index = position % len(readings)
    readings[index] = (readings[index][0], readings[index][1] + warmer)
    after = assess(readings, _MODEL, HOUR)
    for old, new in zip(before.parts, after.parts, strict=True):
        assert new.used >= old.used - 1e-12
    assert after.left_pct <= before.left_pct
    assert after.spent or not before.spent
