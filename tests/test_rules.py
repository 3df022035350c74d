"""Rules, pure and in the ledger: the rule file and its errors, each condition
with known answers (held or not, flagged once), and the ledger's side of it:
who may sign holds, releases and flags, the `held` refusal, releases, and
`verify` (whole ledger, one lot, tampering) with holds and flags in the log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.world import GTIN, HOUR, LOT, T0, World, at

from provenance.core import gs1
from provenance.core.errors import ValidationError
from provenance.domain.rule_conditions import parse_duration
from provenance.domain.rule_decisions import alert_topic, build_notice
from provenance.domain.rule_facts import Logger, LotFacts, Reading, SerialScan
from provenance.domain.rules import FLAG, HOLD, evaluate, parse_rules
from provenance.ledger.audit import verify_ledger, verify_lot
from provenance.store.db import Store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = parse_rules((ROOT / "rules.example.toml").read_bytes(), "rules.example.toml")
VAX = gs1.lot_uri(GTIN, "VAX1")
MIN = HOUR // 60
PROBE = "did:key:z6MkprobeXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


def rules(text: str):
    return parse_rules(text, "test.toml")


def record(*spans: tuple[float, float, float], every: float = 0.25) -> tuple[Reading, ...]:
    """Readings every 15 min: each span is (from hour, to hour, °C), to excluded."""
    out = []
    for start, end, temperature in spans:
        hour = start
        while hour < end - 1e-9:
            out.append(Reading(T0 + int(hour * HOUR), temperature, len(out) + 100))
            hour += every
    return tuple(out)


def vaccine(readings=(), *, attached_h=0.0, detached_h=None, last_us=None, **facts) -> LotFacts:
    logger = Logger(
        PROBE,
        "probe",
        T0 + int(attached_h * HOUR),
        None if detached_h is None else T0 + int(detached_h * HOUR),
        tuple(readings),
        last_us,
    )
    return LotFacts(VAX, "Vaccine", "vaccine", None, (logger,), **facts)


def now_at(hours: float) -> int:
    return T0 + int(hours * HOUR)


# --- the rule file


def test_the_example_file_is_valid_and_documented():
    assert [rule.name for rule in EXAMPLE] == [
        "vaccine-excursion",
        "food-coldchain",
        "logger-silent",
        "serial-far-apart",
        "serial-never-issued",
        "serial-over-scanned",
        "serial-impossible-travel",
    ]
    assert EXAMPLE.rule("vaccine-excursion").actions == (HOLD, "notify")
    assert EXAMPLE.event_kinds == {"reading", "detach"} and EXAMPLE.has_timer
    text = (ROOT / "docs" / "rules.md").read_text()
    for rule in EXAMPLE:
        assert f"`{rule.condition.type}`" in text


@pytest.mark.parametrize(
    ("duration", "micros"),
    [
        ("90s", 90_000_000),
        ("30min", 30 * MIN),
        ("2h", 2 * HOUR),
        ("1h30min", 90 * MIN),
        ("1d", 24 * HOUR),
        ("1.5h", 90 * MIN),
    ],
)
def test_durations(duration, micros):
    assert parse_duration(duration, "x") == micros


@pytest.mark.parametrize("bad", ["", "2", "2 hours", "h", "0s", 3, "-1h", "1h 2x"])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValidationError, match="x: must be"):
        parse_duration(bad, "x")


RULE = """
[[rules]]
name = "r1"
actions = {actions}
[rules.condition]
{condition}
"""


def one(condition: str, actions: str = '["hold"]') -> str:
    return RULE.format(condition=condition, actions=actions)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules = [", "test.toml: is not valid TOML"),
        ("", "test.toml: rules: must list at least one rule"),
        (
            "colour = 1\n" + one('type = "logger-silent"\nmax_silence = "1h"'),
            "test.toml: colour: is not a known top-level key",
        ),
        (
            "version = 2\n" + one('type = "logger-silent"\nmax_silence = "1h"'),
            "test.toml: version: must be 1",
        ),
        (
            one('type = "moon-phase"'),
            "rules[0] (r1).condition.type: unknown condition 'moon-phase'; known: "
            "coldchain-tolerance, logger-silent, serial-scanned-far-apart",
        ),
        (one('type = "logger-silent"'), "rules[0] (r1).condition.max_silence: is required"),
        (
            one('type = "logger-silent"\nmax_silence = "soon"'),
            "rules[0] (r1).condition.max_silence: must be a duration",
        ),
        (
            one('type = "logger-silent"\nmax_silence = "1h"\nlimit = 3'),
            "rules[0] (r1).condition.limit: is not a parameter of logger-silent (allowed: type, "
            "max_silence, category, profile)",
        ),
        (
            one('type = "coldchain-tolerance"\ncategory = "toys"'),
            "rules[0] (r1).condition.category: must be food or vaccine",
        ),
        (
            one('type = "coldchain-tolerance"\nprofile = "lukewarm"'),
            "rules[0] (r1).condition.profile: unknown profile 'lukewarm'",
        ),
        (
            one('type = "serial-scanned-far-apart"\nwindow = "30min"'),
            "rules[0] (r1).condition.window: must be at least 1h",
        ),
        (
            one('type = "serial-scanned-far-apart"\nwindow = "1d"\nmin_places = 1'),
            "rules[0] (r1).condition.min_places: must be a whole number 2-50",
        ),
        (
            one('type = "coldchain-tolerance"', '["hold", "quarantine"]'),
            "rules[0] (r1).actions[1]: unknown action 'quarantine'; known: hold, flag, notify",
        ),
        (
            one('type = "coldchain-tolerance"', '["notify"]'),
            "rules[0] (r1).actions: must include hold or flag",
        ),
        (one('type = "coldchain-tolerance"', "[]"), "rules[0] (r1).actions: is required"),
        (
            one('type = "coldchain-tolerance"', '["hold", "hold"]'),
            "rules[0] (r1).actions: lists an action twice",
        ),
        ('[[rules]]\nname = "Bad Name"\nactions = ["hold"]', "rules[0].name: is required"),
        ('[[rules]]\nname = "r1"\nactions = ["hold"]', "rules[0] (r1).condition: is required"),
        (
            '[[rules]]\nname = "r1"\nactions = ["hold"]\nwhen = 1\n[rules.condition]\n'
            'type = "logger-silent"',
            "rules[0] (r1).when: is not a rule key",
        ),
        (
            one('type = "coldchain-tolerance"') + one('type = "coldchain-tolerance"'),
            "rules[1].name: 'r1' is used by another rule",
        ),
    ],
)
def test_invalid_rule_files_are_refused_with_a_clear_error(text, message):
    with pytest.raises(ValidationError) as caught:
        rules(text)
    assert message in str(caught.value)


# --- coldchain-tolerance


def test_a_vaccine_lot_with_a_3h_excursion_at_12_degrees_is_held():
    facts = vaccine(record((0, 2, 5.0), (2, 5, 12.0), (5, 8, 5.0)))
    (action,) = evaluate(EXAMPLE, facts, now_at(8), kinds={"reading"})
    assert action.kind == HOLD and action.rule == "vaccine-excursion" and action.notify
    assert action.lot == VAX
    assert (
        "one excursion lasted 3 h 15 min" in action.reason and "(tolerated: 1 h)" in action.reason
    )
    evidence = action.evidence
    assert evidence["profile"] == "vaccine" and evidence["band"] == "2–8 °C"
    assert evidence["tolerated"]["max_excursion_s"] == 3600
    (excursion,) = evidence["excursions"]
    assert excursion["peak_c"] == 12.0 and excursion["duration_s"] == 3.25 * 3600
    assert excursion["direction"] == "high"
    # the first and last out-of-range readings (the peak is the first): events the hold names
    assert action.events == (108, 119)
    data = action.data({108: "a" * 64, 119: "b" * 64})
    assert data["rule"] == "vaccine-excursion" and data["evidence"]["events"] == [
        "a" * 64,
        "b" * 64,
    ]


def test_an_excursion_within_tolerance_is_not_held():
    facts = vaccine(record((0, 2, 5.0), (2, 2.25, 9.0), (2.25, 8, 5.0)))  # 30 min at 9 °C
    assert evaluate(EXAMPLE, facts, now_at(8), kinds={"reading"}) == []


def test_without_an_override_the_profiles_own_tolerance_decides():
    plain = rules(one('type = "coldchain-tolerance"\nprofile = "vaccine"'))
    # 10 h tolerated, and the MKT of the worst day stays below 8 °C
    three_hours = vaccine(record((0, 20, 5.0), (20, 23, 12.0), (23, 44, 5.0)))
    assert evaluate(plain, three_hours, now_at(44), kinds={"reading"}) == []
    eleven = vaccine(record((0, 20, 5.0), (20, 31, 9.0), (31, 50, 5.0)))
    (action,) = evaluate(plain, eleven, now_at(50), kinds={"reading"})
    assert "one excursion lasted 11 h 15 min" in action.reason
    assert "tolerated: 10 h" in action.reason
    frozen = vaccine(record((0, 1, 5.0), (1, 1.25, -2.0), (1.25, 3, 5.0)))  # below -0.5 °C
    (action,) = evaluate(plain, frozen, now_at(3), kinds={"reading"})
    assert "below the -0.5 °C limit" in action.reason


def test_a_rule_holds_a_lot_once_and_after_a_release_looks_only_at_what_came_after():
    hot = record((0, 2, 5.0), (2, 5, 12.0), (5, 8, 5.0))
    held = vaccine(hot, holding_rules=frozenset({"vaccine-excursion"}))
    assert evaluate(EXAMPLE, held, now_at(8), kinds={"reading"}) == []
    released = vaccine(hot, released={"vaccine-excursion": now_at(6)})
    assert evaluate(EXAMPLE, released, now_at(8), kinds={"reading"}) == []
    again = record((0, 2, 5.0), (2, 5, 12.0), (5, 8, 5.0), (8, 10, 14.0), (10, 11, 5.0))
    (action,) = evaluate(
        EXAMPLE,
        vaccine(again, released={"vaccine-excursion": now_at(6)}),
        now_at(11),
        kinds={"reading"},
    )
    assert action.evidence["excursions"][0]["start"].startswith(at(7.75)[:16])


def test_coldchain_rules_wake_on_readings_only_and_filter_by_category():
    facts = vaccine(record((0, 2, 5.0), (2, 5, 12.0), (5, 8, 5.0)))
    assert evaluate(EXAMPLE, facts, now_at(8), kinds={"inspect"}) == []
    food = LotFacts(VAX, "Kale", "food", "chilled", facts.loggers)  # chilled: 2 h tolerated
    (action,) = evaluate(EXAMPLE, food, now_at(8), kinds={"reading"})
    assert action.rule == "food-coldchain"
    assert (
        evaluate(
            EXAMPLE, LotFacts(VAX, "Toy", None, None, facts.loggers), now_at(8), kinds={"reading"}
        )
        == []
    )  # no profile: nothing to judge against


# --- logger-silent


def test_a_logger_silent_2h_with_a_1h_limit_is_flagged_once():
    readings = record((0, 3, 5.0))  # the last reading at 2:45
    timer = vaccine(last_us=readings[-1].time_us)  # the timer knows only the latest reading
    (flag,) = evaluate(EXAMPLE, timer, now_at(4.75), timer=True)
    assert flag.kind == FLAG and flag.signal == "logger-silent" and flag.rule == "logger-silent"
    assert flag.key == f"{PROBE}@{at(2.75)}"
    assert "has sent no reading since" in flag.reason and "(limit 1 h)" in flag.reason
    assert flag.evidence["silent_until"] is None and flag.evidence["limit_s"] == 3600
    flagged = vaccine(
        last_us=readings[-1].time_us, flagged=frozenset({("logger-silent", flag.key)})
    )
    assert evaluate(EXAMPLE, flagged, now_at(5.5), timer=True) == []  # not twice
    # The logger comes back: its record shows the same silence, which is not flagged again…
    back = (*readings, *record((4.75, 5, 5.0)))
    seen = vaccine(back, flagged=frozenset({("logger-silent", flag.key)}))
    assert evaluate(EXAMPLE, seen, now_at(5), kinds={"reading"}) == []
    # …and a service that missed it sees it as a gap between readings, with the same key.
    (late,) = evaluate(EXAMPLE, vaccine(back), now_at(5), kinds={"reading"})
    assert late.key == flag.key and late.evidence["silent_until"] == at(4.75)
    assert late.events == (readings[-1].index,)


def test_a_logger_within_its_limit_or_detached_is_not_silent():
    readings = record((0, 3, 5.0))
    assert evaluate(EXAMPLE, vaccine(last_us=readings[-1].time_us), now_at(3.5), timer=True) == []
    detached = vaccine(readings, detached_h=3)
    assert evaluate(EXAMPLE, detached, now_at(10), kinds={"detach"}) == []
    never = vaccine(attached_h=1)  # attached, never read
    (flag,) = evaluate(EXAMPLE, never, now_at(2.5), timer=True)
    assert flag.key == f"{PROBE}@{at(1)}"


# --- serial-scanned-far-apart


def scans(*items: tuple[str, str, float]) -> tuple[SerialScan, ...]:
    return tuple(SerialScan(serial, T0 + int(hour * HOUR), place) for serial, place, hour in items)


HOURLY = rules(one('type = "serial-scanned-far-apart"\nwindow = "1h"', '["flag", "notify"]'))


def test_the_same_serial_in_ke_and_de_within_an_hour_is_flagged():
    facts = LotFacts(VAX, scans=scans(("S1", "KE", 10), ("S1", "DE", 10), ("S2", "KE", 10)))
    (flag,) = evaluate(HOURLY, facts, now_at(11), timer=True)
    assert flag.signal == "counterfeit" and flag.key == "serial:S1" and flag.notify
    assert flag.evidence["places"] == ["DE", "KE"] and flag.evidence["serial"] == "S1"
    assert "serial S1 was scanned in DE, KE" in flag.reason
    done = LotFacts(VAX, scans=facts.scans, flagged=frozenset({("r1", "serial:S1")}))
    assert evaluate(HOURLY, done, now_at(11), timer=True) == []


@pytest.mark.parametrize(
    "items",
    [
        (("S1", "KE", 10), ("S1", "KE", 10.5)),  # KE twice
        (("S1", "KE", 10), ("S1", "DE", 13)),  # too far apart in time
        (("S1", "KE", 10), ("S1", "unknown", 10)),  # unknown places never count
        (("S1", "KE", 10), ("S1", "T1", 10), ("S1", "XX", 10)),  # Tor, "unknown" codes
        (("S1", "KE", 10), ("S2", "DE", 10)),  # different serials
    ],
)
def test_scans_that_are_not_a_counterfeit_signal(items):
    assert evaluate(HOURLY, LotFacts(VAX, scans=scans(*items)), now_at(14), timer=True) == []


def test_serial_rules_run_on_the_timer_and_count_places_in_a_window():
    three = rules(
        one('type = "serial-scanned-far-apart"\nwindow = "2h"\nmin_places = 3', '["flag"]')
    )
    spread = LotFacts(VAX, scans=scans(("S", "KE", 1), ("S", "DE", 2), ("S", "FR", 4)))
    assert evaluate(three, spread, now_at(5), timer=True) == []  # never 3 within 2 h
    close = LotFacts(VAX, scans=scans(("S", "KE", 1), ("S", "DE", 2), ("S", "FR", 3)))
    assert evaluate(three, close, now_at(5), kinds={"reading"}) == []  # not woken by events
    (flag,) = evaluate(three, close, now_at(5), timer=True)
    assert flag.evidence["places"] == ["DE", "FR", "KE"]


def test_alert_notice_and_topic():
    odd = f"https://id.gs1.org/01/{GTIN}/10/A%2FB"
    assert alert_topic(odd) == f"provenance/v1/alerts/{GTIN}/A%2FB"
    notice = build_notice(VAX, "Vaccine", [], [], origin="o", log_size=3)
    assert notice["held"] is False and notice["lot_code"] == "VAX1" and notice["log"]["size"] == 3


# --- the ledger's side


def enrol_rules(world: World, name: str = "rules") -> None:
    world.keys[name] = Ed25519PrivateKey.generate()
    world.ok(
        "registrar", "enrol", None, {"subject": world.did(name), "type": "rules", "name": name}
    )


HOLD_DATA = {"rule": "vaccine-excursion", "reason": "3 h at 12 °C", "evidence": {"peak_c": 12}}


@pytest.fixture
def held(world):
    enrol_rules(world)
    hold = world.ok("rules", "hold", [LOT], HOLD_DATA)
    return world, hold


def test_only_the_rules_identity_may_hold_or_flag(world):
    enrol_rules(world)
    assert world.store.identity_by_did(world.did("rules")).type == "rules"
    for who in ("farm", "regulator", "registrar"):
        refused = world.append(who, "hold", [LOT], HOLD_DATA)
        assert refused.reason == "unauthorised", who
    flag = {"signal": "counterfeit", "rule": "r", "reason": "x", "key": "serial:1"}
    assert world.append("regulator", "flag", [LOT], flag).reason == "unauthorised"
    assert world.append("rules", "ship", [LOT], {"to": world.did("carrier")}).reason == (
        "unauthorised"
    )
    assert world.append("rules", "hold", [gs1.lot_uri(GTIN, "NOPE")], HOLD_DATA).reason == (
        "unknown-lot"
    )


def test_a_held_lot_cannot_be_shipped_transformed_or_dispensed(held):
    world, hold = held
    lot = world.store.lot_by_uri(LOT)
    assert lot.held and not lot.recalled
    refused = world.append("farm", "ship", [LOT], {"to": world.did("carrier")})
    assert refused.reason == "held"
    assert "on hold by rule vaccine-excursion (rules" in refused.message
    assert hold.event_id in refused.message and "3 h at 12 °C" in refused.message
    out = gs1.lot_uri(GTIN, "OUT1")
    transform = {
        "inputs": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
        "outputs": [{"batch": out, "quantity": {"value": 1, "unit": "KGM"}, "product": "Chips"}],
    }
    assert world.append("farm", "transform", [LOT, out], transform).reason == "held"
    assert (
        world.append("farm", "dispense", [LOT], {"quantity": {"value": 1, "unit": "KGM"}}).reason
        == "held"
    )
    # what does not move the product stays allowed
    world.ok("farm", "inspect", [LOT], {"result": "pass"})
    assert world.ledger.append([world.reading(2, 5.0)])[0].status == "accepted"


def test_a_lot_held_in_transit_is_still_received(world):
    enrol_rules(world)
    shipped = world.ok("farm", "ship", [LOT], {"to": world.did("carrier")}, time=at(2))
    world.ok("rules", "hold", [LOT], HOLD_DATA)
    world.ok("carrier", "receive", [LOT], {"shipment": shipped.event_id}, time=at(3))
    assert world.append("carrier", "ship", [LOT], {"to": world.did("dc")}).reason == "held"


def test_one_hold_per_rule_and_release_by_a_regulator(held):
    world, hold = held
    assert world.append("rules", "hold", [LOT], HOLD_DATA).reason == "conflict"
    other = world.ok("rules", "hold", [LOT], {**HOLD_DATA, "rule": "logger-silent"})
    assert world.append("farm", "release", [LOT], {"reason": "fine"}).reason == "unauthorised"
    assert (
        world.append("regulator", "release", [LOT], {"reason": "x", "hold": "ab" * 32}).reason
        == "conflict"
    )
    world.ok("regulator", "release", [LOT], {"reason": "stable", "hold": hold.event_id})
    assert world.store.lot_by_uri(LOT).held  # the other hold remains
    refused = world.append("farm", "ship", [LOT], {"to": world.did("carrier")})
    assert refused.reason == "held" and other.event_id in refused.message
    world.ok("rules", "release", [LOT], {"reason": "logger back"})  # every hold left
    assert not world.store.lot_by_uri(LOT).held
    assert world.append("regulator", "release", [LOT], {"reason": "x"}).reason == "conflict"
    world.ok("farm", "ship", [LOT], {"to": world.did("carrier")})
    # the rule may hold the lot again once released
    world.ok("rules", "hold", [LOT], HOLD_DATA)


def test_flags_are_kept_once_per_lot_rule_and_key(world):
    enrol_rules(world)
    flag = {"signal": "logger-silent", "rule": "silent", "reason": "quiet", "key": "probe@1"}
    world.ok("rules", "flag", [LOT], flag)
    assert world.append("rules", "flag", [LOT], flag).reason == "conflict"
    world.ok("rules", "flag", [LOT], {**flag, "key": "probe@2"})
    world.ok("rules", "flag", [LOT], {**flag, "rule": "other"})
    assert [row[1:] for row in world.store.flag_rows(world.store.lot_by_uri(LOT).id)] == [
        ("silent", "logger-silent", "probe@1"),
        ("silent", "logger-silent", "probe@2"),
        ("other", "logger-silent", "probe@1"),
    ]
    world.ok("farm", "ship", [LOT], {"to": world.did("carrier")})  # a flag stops nothing


def test_a_hold_does_not_cascade(world):
    enrol_rules(world)
    out = gs1.lot_uri(GTIN, "OUT1")
    world.ok(
        "farm",
        "transform",
        [LOT, out],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
            "outputs": [
                {"batch": out, "quantity": {"value": 1, "unit": "KGM"}, "product": "Chips"}
            ],
        },
    )
    world.ok("rules", "hold", [LOT], HOLD_DATA)
    assert not world.store.lot_by_uri(out).held
    world.ok("farm", "ship", [out], {"to": world.did("carrier")})


def test_holds_and_flags_verify_and_tampering_is_caught(file_world):
    world = file_world
    enrol_rules(world)
    hold = world.ok("rules", "hold", [LOT], HOLD_DATA)
    world.ok(
        "rules",
        "flag",
        [LOT],
        {"signal": "counterfeit", "rule": "serial", "reason": "KE, DE", "key": "serial:9"},
    )
    world.ok("regulator", "release", [LOT], {"reason": "stable", "hold": hold.event_id})
    world.ok("rules", "hold", [LOT], {**HOLD_DATA, "rule": "again"})
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, [str(p) for p in report.problems]
    bundle = verify_lot(world.store, LOT, world.log_public_key)  # the rules key is in the bundle
    assert [e.kind for e in bundle.events][-4:] == ["hold", "flag", "release", "hold"]
    for sql, complaint in (
        ("UPDATE lots SET held = 0", "lots table"),
        ("UPDATE holds SET release_event = NULL", "holds table"),
        ("DELETE FROM flags", "flags table lacks"),
    ):
        copy = world.store.path.with_name("copy.db")
        target = sqlite3.connect(copy)
        world.store.conn.backup(target)
        target.execute(sql)
        target.commit()
        target.close()
        tampered = Store(copy)
        found = verify_ledger(tampered, world.log_public_key, workers=1)
        tampered.close()
        assert any(complaint in str(p) for p in found.problems), (sql, found.problems)
        copy.unlink()


def test_the_migration_backfills_holds_and_flags(shared_world):
    world = shared_world
    enrol_rules(world)
    hold = world.ok("rules", "hold", [LOT], HOLD_DATA)
    world.ok("rules", "hold", [LOT], {**HOLD_DATA, "rule": "b"})
    world.ok(
        "rules", "flag", [LOT], {"signal": "counterfeit", "rule": "s", "reason": "x", "key": "k"}
    )
    world.ok("regulator", "release", [LOT], {"reason": "ok", "hold": hold.event_id})
    store = world.store
    lot_id = store.lot_by_uri(LOT).id
    before = (store.hold_rows(lot_id), store.flag_rows(lot_id), store.lot_by_uri(LOT).held)
    conn = store.conn
    conn.execute("DROP TABLE holds")
    conn.execute("DROP TABLE flags")
    conn.execute("DROP INDEX attachments_open")
    conn.execute("ALTER TABLE lots DROP COLUMN held")
    conn.execute("DELETE FROM _migrations WHERE name = '0004_holds_and_flags'")
    store.migrate()
    after = (store.hold_rows(lot_id), store.flag_rows(lot_id), store.lot_by_uri(LOT).held)
    assert after == before and after[2] is True and len(after[0]) == 2


def test_a_release_finds_its_hold_in_the_same_batch_as_the_backfill_does(shared_world):
    """Within one append the hold is not in `events` yet: the release's check
    and its effect (Store.derive) find it in the batch; the backfill, replaying
    the log through the same table, finds it logged and ends up alike."""
    world = shared_world
    enrol_rules(world)
    hold = world.sign("rules", "hold", [LOT], HOLD_DATA)
    other = world.sign("rules", "hold", [LOT], {**HOLD_DATA, "rule": "b"})
    release = world.sign("regulator", "release", [LOT], {"reason": "ok", "hold": hold.event_id})
    results = world.ledger.append([hold, other, release])
    assert [r.status for r in results] == ["accepted"] * 3, results
    store = world.store
    lot_id = store.lot_by_uri(LOT).id
    rows = store.hold_rows(lot_id)
    ended = {event: released for event, _rule, released in rows}
    assert ended == {results[0].index: results[2].index, results[1].index: None}
    assert store.lot_by_uri(LOT).held is True  # the other hold remains
    release_all = world.sign("regulator", "release", [LOT], {"reason": "all clear"})
    again = world.sign("rules", "hold", [LOT], HOLD_DATA)
    assert [r.status for r in world.ledger.append([release_all, again])] == ["accepted"] * 2
    before = (store.hold_rows(lot_id), store.lot_by_uri(LOT).held)
    assert before[1] is True and len(before[0]) == 3
    conn = store.conn
    conn.execute("DROP TABLE holds")
    conn.execute("DROP TABLE flags")
    conn.execute("DROP INDEX attachments_open")
    conn.execute("ALTER TABLE lots DROP COLUMN held")
    conn.execute("DELETE FROM _migrations WHERE name = '0004_holds_and_flags'")
    store.migrate()
    assert (store.hold_rows(lot_id), store.lot_by_uri(LOT).held) == before
