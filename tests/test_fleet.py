"""The fleet simulator: journeys through the real gateway code, the broker and
the ingest service end up as a complete, verifying ledger."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from provenance.cli.main import main
from provenance.core.errors import ProvenanceError
from provenance.core.identity import public_key_from_did
from provenance.core.signing import did_of
from provenance.infra.keystore import KeyStore
from provenance.ingest.service import IngestService
from provenance.ledger.audit import verify_ledger
from provenance.store.db import Store
from simulator.fleet import SCENARIOS, Fleet, plan


@pytest.fixture
def ledger_dir(tmp_path):
    env = {"PROVENANCE_DB": str(tmp_path / "p.db"), "PROVENANCE_KEYS": str(tmp_path / "k")}
    result = CliRunner().invoke(main, ["init"], env=env)
    assert result.exit_code == 0, result.output
    return tmp_path, env


def run_ingest(tmp_path, broker):
    log_key = KeyStore(tmp_path / "k").load("log")
    return IngestService(db_path=tmp_path / "p.db", log_key=log_key, broker=broker.url).start()


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["produce", "vaccine"])
def test_simulated_journeys_land_complete_and_verified(ledger_dir, broker, scenario):
    tmp_path, env = ledger_dir
    service = run_ingest(tmp_path, broker)
    try:
        assert service.ready.wait(20), "ingest did not connect"
        result = CliRunner().invoke(
            main,
            [
                "simulate",
                "--broker",
                broker.url,
                "--scenario",
                scenario,
                "--gateways",
                "6",
                "--devices",
                "12",
                "--rate",
                "150",
                "--duration",
                "6",
                "--accelerate",
                "20000",
                "--excursions",
                "1",
                "--offline",
                "1",
                "--seed",
                "7",
                "--state",
                str(tmp_path / "fleet"),
            ],
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert "done:" in result.output and "queued 0" in result.output.split("done:")[1]
        lots = [
            line.removeprefix("lot ")
            for line in result.output.splitlines()
            if line.startswith("lot ")
        ]
        assert len(lots) == 2  # 6 gateways over 5 sites: two at the first site
        assert service.wait_for(lambda stats: stats.in_flight == 0, 30)
    finally:
        service.stop()
    store = Store(tmp_path / "p.db")
    stats = store.stats()
    stages = len(SCENARIOS[scenario].stages)
    assert stats["events"]["commission"] == len(lots)
    assert stats["events"]["ship"] == stats["events"]["receive"] == len(lots) * (stages - 1)
    assert stats["events"]["reading"] > 200
    assert stats["rejects"] == {}, stats["rejects"]
    # Every journey reached the last holder, with its gateway attached.
    last_party = SCENARIOS[scenario].stages[-1].party
    for lot in lots:
        assert store.identity_by_id(store.lot_by_uri(lot).custodian).name == last_party
    # Out-of-band readings were injected (excursions=1) and the whole record verifies.
    temperatures = [
        e.envelope.data["temperature_c"] for e in store.events() if e.envelope.kind == "reading"
    ]
    assert max(temperatures) > max(s.band[1] for s in SCENARIOS[scenario].stages)
    log_key = did_of(KeyStore(tmp_path / "k").load("log"))
    assert verify_ledger(store, public_key_from_did(log_key)).ok


def test_plan_spreads_gateways_and_sensors():
    keys: dict[str, object] = {}

    def key(name):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return keys.setdefault(name, Ed25519PrivateKey.generate())

    made = plan(
        SCENARIOS["vaccine"], gateways=7, devices=15, party_key=key, gateway_key=key, run_id="T1"
    )
    assert len(made.gateways) == 7
    assert sorted(g.stage for g in made.gateways) == [0, 0, 1, 1, 2, 3, 4]
    assert sum(len(g.sensors) for g in made.gateways) == 15
    assert made.lots == ("T1-1", "T1-2")  # one journey per first-stage gateway
    assert len({g.gateway_id for g in made.gateways}) == 7
    few = plan(
        SCENARIOS["produce"], gateways=1, devices=1, party_key=key, gateway_key=key, run_id="T2"
    )
    assert len(few.gateways) == 5  # at least one per site


def test_fleet_refuses_nonsense(tmp_path):
    made = plan(
        SCENARIOS["produce"],
        gateways=5,
        devices=5,
        party_key=lambda n: _key(),
        gateway_key=lambda n: _key(),
        run_id="T3",
    )
    with pytest.raises(ProvenanceError, match="probability"):
        Fleet(made, "mqtt://127.0.0.1:1", tmp_path, rate=1, duration=1, offline=2)
    with pytest.raises(ProvenanceError, match="positive"):
        Fleet(made, "mqtt://127.0.0.1:1", tmp_path, rate=0, duration=1)


def test_simulate_needs_an_initialised_ledger(tmp_path):
    env = {"PROVENANCE_DB": str(tmp_path / "p.db"), "PROVENANCE_KEYS": str(tmp_path / "k")}
    result = CliRunner().invoke(main, ["simulate", "--broker", "mqtt://127.0.0.1:1"], env=env)
    assert result.exit_code == 1
    assert "provenance init" in result.output
    bad = CliRunner().invoke(main, ["simulate", "--broker", "http://x"], env=env)
    assert bad.exit_code != 0


def _key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def test_progress_is_reported(ledger_dir, broker):
    tmp_path, env = ledger_dir
    ctx_runner = CliRunner()
    service = run_ingest(tmp_path, broker)
    try:
        assert service.ready.wait(20)
        stop = threading.Event()
        from provenance.cli.context import Context
        from provenance.cli.simulate import enrol_plan

        ctx = Context(env["PROVENANCE_DB"], env["PROVENANCE_KEYS"])
        made = enrol_plan(ctx, SCENARIOS["produce"], 5, 5, "P1")
        fleet = Fleet(
            made,
            broker.url,
            tmp_path / "fleet",
            rate=50,
            duration=2,
            accelerate=50000,
            excursions=0,
            offline=0,
            seed=1,
        )
        lines = []
        final = fleet.run(
            stop, progress=lambda status: lines.append(status.line()), progress_every_s=0.5
        )
        assert len(lines) >= 2 and final.queued == 0 and final.readings > 20
        assert final.delivered >= final.readings + final.dock_events
    finally:
        service.stop()
    del ctx_runner
    assert json.loads(CliRunner().invoke(main, ["stats", "--json"], env=env).output)["lots"] == 1
