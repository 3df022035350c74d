"""Counterfeit signals on serials: a serial never issued (on the scan page at once, and
as a flag), one scanned far more often than a pack is, and one scanned in two places too
far apart for the time between (impossible travel, from the CDN's coarse geolocation
headers). Pure conditions first, then the scan page and its JSON twin, the accounts
database (sightings, retention, the cap) and the rules service end to end."""

from __future__ import annotations

import pytest
from support.portal import FAST_HASH, make_app
from support.rules import service, vaccine_lot
from support.world import GTIN, HOUR, LOT, T0

from provenance.core import gs1
from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time
from provenance.domain.rule_facts import LotFacts, SerialScan, Sighting
from provenance.domain.rule_serials import (
    SerialImpossibleTravel,
    SerialNeverIssued,
    SerialOverScanned,
    distance_km,
)
from provenance.domain.rules import parse_rules
from provenance.ledger.decisions import lot_flags
from provenance.services.rules import accounts_scans
from provenance.services.serial_scans import accounts_sightings
from provenance.store.accounts import scans as scan_counts
from provenance.store.accounts.accounts import Accounts
from provenance.store.accounts.models import HashParams

MINUTE = 60_000_000
NAIROBI, BERLIN, MOMBASA = (-1.3, 36.8), (52.5, 13.4), (-4.0, 39.7)
PAGE = LOT.removeprefix(gs1.DEFAULT_BASE)


# --- the conditions, pure


def test_great_circle_distances_known_answers():
    assert distance_km(*NAIROBI, *NAIROBI) == 0
    assert 6_300 < distance_km(*NAIROBI, *BERLIN) < 6_400  # 6,35x km
    assert 430 < distance_km(*NAIROBI, *MOMBASA) < 450
    assert abs(distance_km(0, 0, 0, 180) - 20_015) < 1  # half the equator


def test_a_serial_never_issued_is_found_once_a_day_naming_a_bounded_list():
    never = SerialNeverIssued()
    scans = (
        *(SerialScan(f"X{i:02d}", T0, "KE") for i in range(12)),
        SerialScan("A1", T0, "KE"),
        SerialScan("X00", T0 + 30 * HOUR, "KE"),
    )
    (today, tomorrow) = never.findings(
        LotFacts(LOT, scans=scans, issued=frozenset({"A1"})), T0, None
    )
    assert today.key == f"never-issued:{format_time(T0)[:10]}" and today.evidence["count"] == 12
    assert len(today.evidence["serials"]) == 10 and "…" in today.reason
    assert tomorrow.evidence["serials"] == ["X00"]
    # a lot without serials issued says nothing; issued serials are fine
    assert never.findings(LotFacts(LOT, scans=scans, issued=None), T0, None) == []
    issued = frozenset(s.serial for s in scans)
    assert never.findings(LotFacts(LOT, scans=scans, issued=issued), T0, None) == []


def test_over_scanned_counts_every_place_within_the_window():
    rule = SerialOverScanned(window_us=24 * HOUR, max_scans=5)
    few = (SerialScan("A1", T0, "KE", 3), SerialScan("A1", T0 + HOUR, "unknown", 2))
    assert rule.findings(LotFacts(LOT, scans=few), T0, None) == []
    many = (*few, SerialScan("A1", T0 + 2 * HOUR, "DE", 1))
    (found,) = rule.findings(LotFacts(LOT, scans=many), T0, None)
    assert found.key == "serial:A1" and found.evidence["scans"] == 6
    spread = (*few, SerialScan("A1", T0 + 30 * HOUR, "DE", 1))  # outside the window
    assert rule.findings(LotFacts(LOT, scans=spread), T0, None) == []


def sighting(place: tuple[float, float], minute: int, serial: str = "A1") -> Sighting:
    return Sighting(serial, T0 + minute * MINUTE, *place)


@pytest.mark.parametrize(
    ("first", "then", "minutes", "flagged"),
    [
        (NAIROBI, BERLIN, 8 * 60, False),  # 6,35x km in 8 h 1 min: 790 km/h
        (NAIROBI, BERLIN, 6 * 60, True),  # 1,060 km/h
        (NAIROBI, BERLIN, 9 * 60, False),  # 705 km/h: a flight
        (NAIROBI, MOMBASA, 10, True),  # 440 km in 11 min
        (NAIROBI, (-1.4, 36.9), 0, False),  # under the 300 km floor: geolocation noise
    ],
)
def test_impossible_travel_is_a_speed_above_the_limit(first, then, minutes, flagged):
    rule = SerialImpossibleTravel()
    facts = LotFacts(LOT, sightings=(sighting(first, 0), sighting(then, minutes)))
    found = rule.findings(facts, T0, None)
    assert bool(found) == flagged
    if found:
        assert found[0].key == "travel:A1"
        assert found[0].evidence["km"] == round(distance_km(*first, *then))


def test_only_neighbouring_scans_need_comparing_and_other_serials_are_apart():
    rule = SerialImpossibleTravel()
    facts = LotFacts(
        LOT,
        sightings=(
            sighting(NAIROBI, 0),
            sighting(BERLIN, 30, "B2"),  # another pack
            sighting(NAIROBI, 60),
            sighting(BERLIN, 120),  # 6,350 km in 61 min
        ),
    )
    (found,) = rule.findings(facts, T0, None)
    assert found.evidence["from"]["minute"] == format_time(T0 + HOUR)[:16]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('type = "serial-over-scanned"', "window: is required"),
        ('type = "serial-over-scanned"\nwindow = "30min"', "at least 1h"),
        ('type = "serial-over-scanned"\nwindow = "1d"\nmax_scans = 1', "2-1000000"),
        ('type = "serial-impossible-travel"\nmax_speed_kmh = 10', "100-20000"),
        ('type = "serial-impossible-travel"\nmin_distance_km = true', "whole number"),
        ('type = "serial-never-issued"\nwindow = "1d"', "not a parameter"),
    ],
)
def test_bad_serial_rules_say_which_parameter(text, fragment):
    with pytest.raises(ValidationError, match=fragment):
        parse_rules(f'[[rules]]\nname = "r"\nactions = ["flag"]\n[rules.condition]\n{text}\n')


# --- the scan page


@pytest.fixture
def serialised(file_world, tmp_path):
    file_world.ok("farm", "serials", [LOT], {"serials": ["A1", "A2"]})
    return file_world, make_app(file_world, tmp_path, SCAN_COUNTRY_HEADER="CF-IPCountry")


def test_the_page_says_who_issued_a_serial_and_warns_of_one_never_issued(serialised):
    _world, app = serialised
    client = app.test_client()
    issued = client.get(PAGE + "/21/A1").get_data(as_text=True)
    assert 'id="serial-issued"' in issued and "issued by" in issued and "farm" in issued
    assert 'id="serial-warning"' not in issued
    fake = client.get(PAGE + "/21/Z9").get_data(as_text=True)
    assert 'id="serial-warning"' in fake and 'role="alert"' in fake
    assert "Warning: serial Z9 was never issued for this lot by its maker." in fake
    assert "may be counterfeit" in fake
    zh = client.get(PAGE + "/21/Z9", headers={"Accept-Language": "zh"}).get_data(as_text=True)
    assert '本批次的生产商从未发放序列号 <span lang="en">Z9</span>' in zh and "假冒" in zh
    assert '序列号 <span lang="en">A1</span> 由 <span lang="en">farm</span>' in client.get(
        PAGE + "/21/A1", headers={"Accept-Language": "zh"}
    ).get_data(as_text=True)
    plain = client.get(PAGE).get_data(as_text=True)
    assert "serial-warning" not in plain and "serial-issued" not in plain
    assert "2 serial numbers issued by farm" in plain  # the journey names the issue


def test_the_json_twin_says_the_same(serialised):
    _world, app = serialised
    client = app.test_client()
    json_headers = {"Accept": "application/json"}
    body = client.get(PAGE + "/21/A2", headers=json_headers).get_json()["serial"]
    assert body["serial"] == "A2" and body["issued"] is True
    assert body["issued_by"]["name"] == "farm" and len(body["event_id"]) == 64
    fake = client.get(PAGE + "/21/Z9", headers=json_headers).get_json()["serial"]
    assert fake == {"serial": "Z9", "issued": False, "warning": "never-issued"}
    assert "serial" not in client.get(PAGE, headers=json_headers).get_json()


def test_a_lot_without_serials_says_nothing_either_way(file_world, tmp_path):
    client = make_app(file_world, tmp_path).test_client()
    html = client.get(PAGE + "/21/Z9").get_data(as_text=True)
    assert "serial-warning" not in html and "serial-issued" not in html
    body = client.get(PAGE + "/21/Z9", headers={"Accept": "application/json"}).get_json()
    assert body["serial"] == {"serial": "Z9", "issued": None}


def test_a_serial_issued_after_a_scan_changes_the_page_at_once(serialised):
    world, app = serialised
    client = app.test_client()
    first = client.get(PAGE + "/21/B1")
    assert "serial-warning" in first.get_data(as_text=True)
    world.ok("farm", "serials", [LOT], {"serials": ["B1"]})
    again = client.get(PAGE + "/21/B1", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200 and "serial-issued" in again.get_data(as_text=True)


# --- sightings: coarse positions from the CDN's headers


GEO = {"CF-IPLatitude": "-1.28333", "CF-IPLongitude": "36.81667", "CF-IPCountry": "KE"}


def test_a_scan_keeps_a_coarse_position_only_from_the_configured_headers(file_world, tmp_path):
    app = make_app(
        file_world,
        tmp_path,
        SCAN_COUNTRY_HEADER="CF-IPCountry",
        SCAN_GEO_HEADERS="CF-IPLatitude,CF-IPLongitude",
    )
    client = app.test_client()
    client.get(PAGE + "/21/A1", headers=GEO)
    client.get(PAGE + "/21/A1", headers=GEO)
    client.get(PAGE + "/21/A1", headers={"CF-IPLatitude": "nan", "CF-IPLongitude": "1"})
    client.get(PAGE + "/21/A1", headers={"CF-IPLatitude": "91", "CF-IPLongitude": "1"})
    client.get(PAGE + "/21/A1", headers={"CF-IPLatitude": "1"})
    client.get(PAGE, headers=GEO)  # no serial: no sighting
    accounts = app.extensions["provenance.portal"].accounts
    minute = format_time(file_world.now)[:16]
    assert accounts.sightings_since(0) == [(LOT, "A1", minute, -1.3, 36.8, 2)]
    (tmp_path / "other").mkdir()
    unset = make_app(file_world, tmp_path / "other").test_client()
    unset.get(PAGE + "/21/A1", headers=GEO)
    other = unset.application.extensions["provenance.portal"].accounts
    assert other.sightings_since(0) == []


def test_serial_scans_are_kept_a_bounded_time_and_number(tmp_path, monkeypatch):
    accounts = Accounts(tmp_path / "accounts", hash_params=HashParams(**FAST_HASH))
    old = T0 - 100 * 24 * HOUR
    accounts.record_serial_scan(LOT, "A1", old, "KE")
    accounts.record_sighting(LOT, "A1", old, NAIROBI)
    accounts.record_serial_scan(LOT, "A1", T0, "KE")  # a new hour: the old rows go
    assert [row[1:3] for row in accounts.serial_scans_since(0)] == [("A1", format_time(T0)[:13])]
    assert accounts.sightings_since(0) == []
    monkeypatch.setattr(scan_counts, "MAX_SERIAL_ROWS", 2)
    fresh = Accounts(tmp_path / "accounts", hash_params=HashParams(**FAST_HASH))
    assert fresh.record_sighting(LOT, "A1", T0, NAIROBI)
    assert fresh.record_sighting(LOT, "A2", T0, NAIROBI)
    fresh._purged_at = None  # the next hourly count
    assert not fresh.record_sighting(LOT, "A3", T0 + HOUR, NAIROBI)
    with pytest.raises(ValidationError, match="full"):
        fresh.record_serial_scan(LOT, "A4", T0 + HOUR, "KE")
        fresh._purged_at = None
        fresh.record_serial_scan(LOT, "A5", T0 + 2 * HOUR, "KE")


# --- the rules service, end to end


RULES = """
[[rules]]
name = "never-issued"
actions = ["flag"]
[rules.condition]
type = "serial-never-issued"

[[rules]]
name = "over-scanned"
actions = ["flag"]
[rules.condition]
type = "serial-over-scanned"
window = "1d"
max_scans = 3

[[rules]]
name = "travel"
actions = ["flag"]
[rules.condition]
type = "serial-impossible-travel"
"""


def test_the_service_flags_each_signal_once(tmp_path):
    world = vaccine_lot(tmp_path / "ledger")  # with a rules identity
    world.now = T0 + 10 * HOUR
    world.ok("farm", "serials", [LOT], {"serials": ["A1", "A2", "A3"]})
    accounts = Accounts(tmp_path / "accounts", hash_params=HashParams(**FAST_HASH))
    now = world.now
    accounts.record_serial_scan(LOT, "Z9", now, "KE")  # never issued
    for _ in range(4):
        accounts.record_serial_scan(LOT, "A1", now, "KE")  # over-scanned
    accounts.record_serial_scan(LOT, "A2", now, "KE")
    accounts.record_sighting(LOT, "A2", now - 20 * MINUTE, NAIROBI)
    accounts.record_sighting(LOT, "A2", now, MOMBASA)  # 440 km in 21 min
    accounts.record_serial_scan(LOT, "A3", now, "KE")  # a pack scanned once: fine
    running = service(
        world,
        tmp_path,
        rules=parse_rules(RULES),
        scans=accounts_scans(tmp_path / "accounts"),
        sightings=accounts_sightings(tmp_path / "accounts"),
    )
    running.run_once()
    flags = {f.rule: f for f in lot_flags(world.store, LOT)}
    assert set(flags) == {"never-issued", "over-scanned", "travel"}
    assert all(f.signal == "counterfeit" for f in flags.values())
    assert flags["never-issued"].evidence["serials"] == ["Z9"]
    assert flags["over-scanned"].key == "serial:A1" and flags["over-scanned"].evidence["scans"] == 4
    assert flags["travel"].key == "travel:A2" and flags["travel"].evidence["km"] > 400
    accounts.record_serial_scan(LOT, "Z9", now, "KE")
    running.run_once()
    assert len(lot_flags(world.store, LOT)) == 3  # each once
    # the regulator's and the consumer's pages word them
    (tmp_path / "web").mkdir()
    app = make_app(world, tmp_path / "web")
    html = app.test_client().get(PAGE).get_data(as_text=True)
    assert "serials never issued for this lot were scanned on" in html
    assert "serial A1 scanned 4 times" in html and "km apart within 21 minutes" in html


def test_gtin_constant_is_the_worlds():
    assert GTIN in LOT


def test_the_producer_portal_shows_serials_issued_and_the_lots_signals(portal):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    world = portal.world
    world.ok("farm", "serials", [LOT], {"serials": ["A1", "A2", "A3"]})
    world.keys["rules"] = Ed25519PrivateKey.generate()
    world.ok(
        "registrar",
        "enrol",
        None,
        {"subject": world.did("rules"), "type": "rules", "name": "rules"},
    )
    evidence = {
        "code": "serial-over-scanned",
        "serial": "A1",
        "scans": 40,
        "max_scans": 20,
        "window_s": 86400,
        "from_hour": "2026-09-21T10",
    }
    flag = {"signal": "counterfeit", "rule": "over", "reason": "x", "key": "serial:A1"}
    world.ok("rules", "flag", [LOT], {**flag, "evidence": evidence})
    lot_id = world.store.lot_by_uri(LOT).id
    html = portal.client("farm1").get(f"/portal/lots/{lot_id}").get_data(as_text=True)
    assert 'id="serials">3 issued' in html
    assert 'id="flags"' in html and "Flag: counterfeit" in html
    assert "serial A1 scanned 40 times" in html
