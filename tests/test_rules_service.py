"""The rules service against ledger files: holds and flags appended once, even
across restarts and without a cursor; the timer; serial scans counted by the
portal and read from the accounts database; alert notices (collected, and
retained on a real broker); and `provenance rules …` end to end with --once."""

from __future__ import annotations

import json
import threading

import click
from click.testing import CliRunner
from support.broker import Collector, Retained
from support.portal import FAST_HASH, make_app
from support.rules import (
    ALERTS,
    EXAMPLE,
    EXAMPLE_FILE,
    VAX,
    WAIT,
    readings,
    service,
    vaccine_lot,
    vaccine_world,
)
from support.world import GTIN, HOUR, LOT, T0, at

from provenance.cli.main import main
from provenance.core import gs1
from provenance.core.timefmt import format_time, now_micros
from provenance.domain.rule_decisions import NOTICE_FORMAT, alert_topic
from provenance.domain.rules import parse_rules
from provenance.infra.broker_url import BrokerURL
from provenance.ledger.append import Ledger
from provenance.ledger.audit import verify_ledger
from provenance.ledger.decisions import active_holds, lot_flags, lot_holds, recent_flags
from provenance.services.notifier import Cursor, RetainedPublisher
from provenance.services.rules import RulesService, accounts_scans
from provenance.store.accounts.accounts import Accounts
from provenance.store.accounts.models import HashParams
from provenance.store.db import Store


def kinds_appended(results) -> list[str]:
    return [r.event_id for result in results for r in result.appended]


def test_the_service_holds_the_lot_once_even_across_restarts(tmp_path):
    world = vaccine_world(tmp_path / "ledger")
    publish = Collector()
    first = service(world, tmp_path, publish=publish)
    results = first.run_once()
    assert len(kinds_appended(results)) == 1 and first.appended == 1
    (hold,) = lot_holds(world.store, VAX)
    assert hold.rule == "vaccine-excursion" and hold.active and hold.signer.role == "rules"
    assert "one excursion lasted 3 h 15 min" in hold.reason
    for event_id in hold.evidence["events"]:  # the readings the hold names are in the ledger
        assert world.store.find_event(bytes.fromhex(event_id)).envelope.kind == "reading"
    assert [h.event_id for h in active_holds(world.store)] == [hold.event_id]
    # the hold was announced in the round after it was appended, retained current state
    (notices,) = publish.rounds
    notice = notices[alert_topic(VAX)]
    assert notice["format"] == NOTICE_FORMAT and notice["held"] is True
    assert notice["holds"][0]["event_id"] == hold.event_id
    refused = world.append("farm", "ship", [VAX], {"to": world.did("carrier")})
    assert refused.reason == "held" and hold.event_id in refused.message
    # a restart with the cursor, and one without it, add nothing
    assert kinds_appended(service(world, tmp_path).run_once()) == []
    (tmp_path / "cursor").unlink()
    again = service(world, tmp_path, publish=Collector())
    assert kinds_appended(again.run_once()) == [] and again.published == 1  # announced again
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, [str(p) for p in report.problems]


def test_a_silent_logger_is_flagged_once_on_the_timer(tmp_path):
    world = vaccine_world(tmp_path / "ledger")
    rules = parse_rules(
        '[[rules]]\nname = "silent"\nactions = ["flag"]\n'
        '[rules.condition]\ntype = "logger-silent"\nmax_silence = "1h"\n'
    )
    running = service(world, tmp_path, rules=rules)
    assert kinds_appended(running.run_once()) == []  # the last reading was 15 min ago
    world.now = T0 + 10 * HOUR  # silent for 2 h 15 min
    assert len(kinds_appended([running.round(timer=False)])) == 0  # nothing new, no timer
    assert len(kinds_appended([running.round(timer=True)])) == 1
    assert kinds_appended([running.round(timer=True)]) == []  # not twice
    world.now = T0 + 11 * HOUR
    assert kinds_appended(service(world, tmp_path, rules=rules).run_once()) == []  # restart
    readings(world, VAX, (10.75, 11, 5.0))  # it comes back: the same silence, not flagged again
    assert kinds_appended(running.run_once()) == []
    (flag,) = lot_flags(world.store, VAX)
    assert flag.signal == "logger-silent" and flag.key.endswith(f"@{at(7.75)}")
    assert flag.evidence["silent_until"] is None and flag.signer.name == "rules"
    assert [f.event_id for f in recent_flags(world.store)] == [flag.event_id]
    world.ok("farm", "ship", [VAX], {"to": world.did("carrier")}, time=at(11))  # flags stop nothing


def test_after_a_regulators_release_the_rule_looks_only_at_new_readings(tmp_path):
    world = vaccine_world(tmp_path / "ledger")
    publish = Collector()
    running = service(world, tmp_path, publish=publish)
    running.run_once()
    (hold,) = lot_holds(world.store, VAX)
    world.ok("regulator", "release", [VAX], {"reason": "stable per manufacturer"}, time=at(8))
    assert kinds_appended(running.run_once()) == []
    assert publish.rounds[-1][alert_topic(VAX)]["held"] is False  # a release is announced
    (released,) = lot_holds(world.store, VAX, include_released=True)
    assert released.release.reason == "stable per manufacturer"
    assert released.release.signer.name == "regulator" and lot_holds(world.store, VAX) == []
    world.ok("farm", "ship", [VAX], {"to": world.did("carrier")}, time=at(8))
    world.now = T0 + 12 * HOUR
    readings(world, VAX, (8, 9, 5.0), (9, 11, 13.0), (11, 12, 5.0))  # a new excursion
    assert len(kinds_appended(running.run_once())) == 1
    (again,) = lot_holds(world.store, VAX)
    assert again.event_id != hold.event_id


class Announced(Collector):
    """A collector that signals when a notice says the lot is held."""

    def __init__(self):
        super().__init__()
        self.held = threading.Event()

    def __call__(self, notices):
        super().__call__(notices)
        if any(notice.get("held") for notice in self.rounds[-1].values()):
            self.held.set()
        return True


def test_the_service_follows_the_ledger(tmp_path):
    world = vaccine_lot(tmp_path / "ledger")
    readings(world, VAX, (0.5, 2, 5.0))
    world.now = T0 + 2 * HOUR
    announced = Announced()
    store = Store(world.store.path)  # the service's own connection, as in production
    running = RulesService(
        Ledger(store, world.log_key, clock=lambda: world.now),
        world.keys["rules"],
        EXAMPLE,
        Cursor(tmp_path / "cursor"),
        publish=announced,
        clock=lambda: world.now,
    )
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop, 0.02, 3600), daemon=True)
    thread.start()
    try:
        world.now = T0 + 6 * HOUR
        readings(world, VAX, (2, 5, 12.0), (5, 6, 5.0))
        assert announced.held.wait(WAIT), "the hold was not announced"
    finally:
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    (hold,) = lot_holds(world.store, VAX)
    assert hold.rule == "vaccine-excursion"
    store.close()


def test_serial_scans_far_apart_are_a_counterfeit_signal(tmp_path):
    world = vaccine_world(tmp_path / "ledger")
    accounts = Accounts(tmp_path / "accounts", hash_params=HashParams(**FAST_HASH))
    now = world.now
    accounts.record_serial_scan(LOT, "S1", now - HOUR // 2, "KE")
    accounts.record_serial_scan(LOT, "S1", now, "DE")
    accounts.record_serial_scan(LOT, "S2", now, "KE")
    accounts.record_serial_scan(LOT, "S2", now, "KE")
    accounts.record_serial_scan(gs1.lot_uri(GTIN, "NOPE"), "S1", now, "US")  # not our lot
    rules = parse_rules(
        '[[rules]]\nname = "copies"\nactions = ["flag"]\n[rules.condition]\n'
        'type = "serial-scanned-far-apart"\nwindow = "1h"\n'
    )
    running = service(world, tmp_path, rules=rules, scans=accounts_scans(tmp_path / "accounts"))
    assert len(kinds_appended(running.run_once())) == 1
    (flag,) = lot_flags(world.store, LOT)
    assert flag.signal == "counterfeit" and flag.key == "serial:S1"
    assert set(flag.evidence["places"]) == {"KE", "DE"}
    accounts.record_serial_scan(LOT, "S1", now, "FR")
    assert kinds_appended(running.run_once()) == []  # that serial is flagged already
    # Scans long past are not read again (the scan cursor), nor flagged twice.
    assert Cursor(tmp_path / "cursor.scans").load() == now - now % HOUR


def test_the_portal_counts_serial_scans(file_world, tmp_path):
    app = make_app(file_world, tmp_path, SCAN_COUNTRY_HEADER="CF-IPCountry")
    client = app.test_client()
    page = LOT.removeprefix(gs1.DEFAULT_BASE)
    assert client.get(page + "/21/SER1", headers={"CF-IPCountry": "KE"}).status_code == 200
    client.get(page + "/21/SER1", headers={"CF-IPCountry": "KE"})
    client.get(page + "/21/SER2")
    client.get(page, headers={"CF-IPCountry": "DE"})  # no serial: counted for the lot only
    client.get(page + "/21/SER1", headers={"Accept": "application/json"})  # a program
    accounts = app.extensions["provenance.portal"].accounts
    hour = format_time(file_world.now)[:13]
    assert accounts.serial_scans_since(0) == [
        (LOT, "SER1", hour, "KE", 2),
        (LOT, "SER2", hour, "unknown", 1),
    ]
    assert sum(n for _, _, n in accounts.scans([LOT], 0)) == 4


# --- the command line, end to end


def provenance() -> click.Group:
    """The main group; `rules` is one of its service commands."""
    return main


def test_rules_end_to_end_with_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    cli = provenance()

    def run(*args: str, stdin: str | None = None, code: int = 0) -> str:
        result = runner.invoke(cli, list(args), input=stdin)
        assert result.exit_code == code, (args, result.output, result.exception)
        return result.output

    def hours_ago(hours: float) -> str:
        return format_time(start - int(hours * HOUR))

    start = now_micros()
    run("init")
    run("party", "add", "Farm", "--role", "producer", "--prefix", "9506000")
    agency = run("key", "new", "--out", "agency.pem").strip()  # on the agency's own machine
    run("party", "add", "Medicines Agency", "--role", "regulator", "--public-key", agency)
    probe = run("device", "add", "probe", "--owner", "Farm").strip()
    uri = run(
        "lot",
        "register",
        "--gtin",
        GTIN,
        "--lot",
        "VAX9",
        "--product",
        "Vaccine",
        "--as",
        "Farm",
        "--category",
        "vaccine",
        "--produced",
        hours_ago(10),  # registered now, made earlier: its logger's times are earlier
    ).strip()
    attach = {"kind": "attach", "batches": [uri], "data": {"device": probe}, "time": hours_ago(9)}
    run("event", "append", "--as", "Farm", stdin=json.dumps(attach))
    lines = []
    for quarter in range(33):  # every 15 min from 8 h ago; 12 °C from 6 h to 3 h ago
        ago = 8 - quarter / 4
        temperature = 12.0 if 3 < ago <= 6 else 5.0
        lines.append(
            json.dumps(
                {
                    "kind": "reading",
                    "batches": [uri],
                    "data": {"temperature_c": temperature},
                    "time": hours_ago(ago),
                }
            )
        )
    run("event", "append", "--as", "probe", stdin="\n".join(lines))
    rules_did = run("rules", "init").strip()
    assert run("rules", "init").strip() == rules_did  # idempotent
    checked = run("rules", "check", "--config", str(EXAMPLE_FILE))
    assert "7 rules OK" in checked and "vaccine-excursion: vaccine lots" in checked
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rules]]\nname = "x"\nactions = ["shout"]\n'
        '[rules.condition]\ntype = "logger-silent"\nmax_silence = "1h"\n'
    )
    refused = run("rules", "check", "--config", str(bad), code=1)
    assert "actions[0]: unknown action 'shout'" in refused
    output = run("rules", "run", "--config", str(EXAMPLE_FILE), "--once")
    assert "appended 1 actions (0 refused)" in output and "published 0 notices" in output
    listed = json.loads(run("rules", "list", "--json"))
    (hold,) = listed["holds"]
    assert (
        hold["lot"] == uri
        and hold["rule"] == "vaccine-excursion"
        and hold["by"]["did"] == rules_did
    )
    assert "holds in force: 1" in run("rules", "list")
    ship = {"kind": "ship", "batches": [uri], "data": {"to": agency}}
    refusal = run("event", "append", "--as", "Farm", stdin=json.dumps(ship), code=1)
    assert "rejected: held:" in refusal
    assert "appended 0 actions" in run("rules", "run", "--config", str(EXAMPLE_FILE), "--once")
    assert run("verify").startswith("OK")
    run("rules", "release", uri, "--reason", "stability data", "--as", "Farm", code=1)
    run(
        "rules",
        "release",
        uri,
        "--reason",
        "stability data",
        "--as",
        "Medicines Agency",
        "--key",
        "agency.pem",
    )
    assert json.loads(run("rules", "list", "--json"))["holds"] == []
    assert "appended 0 actions" in run("rules", "run", "--config", str(EXAMPLE_FILE), "--once")
    assert run("verify").startswith("OK")


def test_run_needs_the_rules_key_and_a_valid_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    cli = provenance()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    missing = runner.invoke(cli, ["rules", "run", "--config", str(EXAMPLE_FILE), "--once"])
    assert missing.exit_code == 1 and "provenance rules init" in missing.output
    absent = runner.invoke(cli, ["rules", "check", "--config", "nope.toml"])
    assert absent.exit_code == 1 and "cannot read nope.toml" in absent.output


# --- alert notices on a real broker


def test_alert_notices_are_retained_on_the_broker(tmp_path, broker):
    world = vaccine_world(tmp_path / "ledger")
    publisher = RetainedPublisher(BrokerURL.parse(broker.url), "test-rules").start()
    try:
        running = service(world, tmp_path, publish=publisher)
        running.run_once()
        assert running.published == 1
        late = Retained(broker, "late", ALERTS)  # subscribes after the notice went out
        try:
            assert late.wait_for(lambda got: got.get(alert_topic(VAX), {}).get("held") is True)
        finally:
            late.close()
        world.ok("regulator", "release", [VAX], {"reason": "cleared"}, time=at(8))
        running.run_once()
        later = Retained(broker, "later", ALERTS)
        try:
            assert later.wait_for(lambda got: got.get(alert_topic(VAX), {}).get("held") is False)
        finally:
            later.close()
    finally:
        publisher.stop()


def test_unacknowledged_notices_keep_the_cursor(tmp_path):
    world = vaccine_world(tmp_path / "ledger")
    running = service(world, tmp_path, publish=Collector(ok=False))
    results = running.run_once()
    assert not results[-1].acknowledged and running.appended == 1
    assert Cursor(tmp_path / "cursor").load() < world.store.log_size()
    publish = Collector()
    assert kinds_appended(service(world, tmp_path, publish=publish).run_once()) == []
    assert publish.rounds[0][alert_topic(VAX)]["held"] is True
