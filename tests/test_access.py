"""Issue 9's access findings, closed as classes:

1. Who may sign `inspect`/`epcis` about a lot: its custodians past and present,
   inspectors and regulators; having signed something about a lot grants no
   access to it in the portal or the API (its pages, its private documents).
2. Who may commission under a GTIN: only a party enrolled or granted the GS1
   company prefix it lies under (docs/protocol.md §3).
"""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from support.ingest import SETTLE, publisher, start_ingest, wire  # noqa: F401 (fixtures)
from support.portal import make_app
from support.world import GTIN, LOT, PREFIXES, World, at

from provenance.cli.main import main
from provenance.core import gs1, topics
from provenance.core.kinds import KIND_CODES, under_prefix
from provenance.ledger.audit import verify_ledger, verify_lot
from provenance.ledger.reasons import NOT_CUSTODIAN, UNAUTHORISED
from provenance.store.migrations import ACCESS_RULES_FROM

EPCIS_EVENT = {"type": "ObjectEvent", "eventTime": "2026-09-22T08:00:00Z", "action": "OBSERVE"}
ABOUT = {
    "inspect": {"result": "fail", "notes": "I was never here"},
    "epcis": {"event": EPCIS_EVENT},
}
# GTINs of a brand that is not the World's: only a party granted 9520123 commissions them.
OTHER_GTIN = "09520123456788"
OTHER_LOT = gs1.lot_uri(OTHER_GTIN, "RIVAL1")


def commission(world: World, who: str, uri: str, **extra) -> object:
    gtin, code = gs1.parse_lot_uri(uri)
    data = {"gtin": gtin, "lot": code, "product": "Kale", **extra}
    return world.append(who, "commission", [uri], data, time=at(0.1))


# --- 1. signing about a lot ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["inspect", "epcis"])
@pytest.mark.parametrize("who", ["packer", "carrier", "dc", "store", "clinic"])
def test_a_party_that_never_held_a_lot_cannot_sign_about_it(world, kind, who):
    before = world.store.log_size()
    result = world.append(who, kind, [LOT], ABOUT[kind])
    assert (result.status, result.reason) == ("rejected", NOT_CUSTODIAN)
    assert f"never held {LOT}" in result.message
    assert "custodians past and present, inspectors and regulators" in result.message
    assert world.store.log_size() == before
    # ...also when the lot hides among lots it does hold
    world.ok("packer", "commission", [gs1.lot_uri(GTIN, "MINE")], _kale("MINE"))
    mixed = world.append("packer", kind, [gs1.lot_uri(GTIN, "MINE"), LOT], ABOUT[kind])
    assert mixed.reason == NOT_CUSTODIAN


def _kale(code: str) -> dict:
    return {"gtin": GTIN, "lot": code, "product": "Kale"}


@pytest.mark.parametrize("kind", ["inspect", "epcis"])
def test_custodians_past_and_present_inspectors_and_regulators_may(world, kind):
    world.ship_and_receive("farm", "carrier", [LOT], 2)
    for who in ("farm", "carrier", "inspector", "regulator"):  # maker, holder, by role
        world.ok(who, kind, [LOT], ABOUT[kind])
    # EPCIS records about nothing in this ledger go to the signer's own stream: no lot named
    world.ok("dc", "epcis", None, {"event": EPCIS_EVENT})


def test_the_receiver_of_an_open_shipment_may_not_sign_yet(world):
    world.ok("farm", "ship", [LOT], {"to": world.did("dc")}, time=at(2))
    assert world.append("dc", "inspect", [LOT], ABOUT["inspect"]).reason == NOT_CUSTODIAN


def test_access_rules_apply_from_the_recorded_log_index(shared_world):
    """A ledger from before the rules: what it accepted then replays as it was, and
    verifies; from the boundary on, the same events are refused."""
    world = shared_world
    with world.store.transaction():
        world.store.set_meta(ACCESS_RULES_FROM, "1000000")  # "the old version"
    world.ledger._forget()
    legacy = world.ok("store", "inspect", [LOT], ABOUT["inspect"])
    squatted = commission(world, "dc", OTHER_LOT)  # a distributor cannot: role, always
    assert squatted.reason == UNAUTHORISED
    world.enrol_party("rival", "producer", prefixes=[])
    world.ok("rival", "commission", [OTHER_LOT], _other("RIVAL1"))
    with world.store.transaction():  # the upgrade: rules from here on
        world.store.set_meta(ACCESS_RULES_FROM, str(world.store.log_size()))
    world.ledger._forget()
    assert world.append("store", "inspect", [LOT], ABOUT["inspect"]).reason == NOT_CUSTODIAN
    refused = world.append("rival", "commission", [gs1.lot_uri(OTHER_GTIN, "R2")], _other("R2"))
    assert refused.reason == UNAUTHORISED
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, [str(p) for p in report.problems]
    assert legacy.index is not None and legacy.index < world.store.log_size()


def _other(code: str) -> dict:
    return {"gtin": OTHER_GTIN, "lot": code, "product": "Not our kale"}


# --- 1. ...and the portal and API never grant access for it


@pytest.fixture
def legacy_portal(file_world, tmp_path):
    """The World behind the web app, with an inspection of LOT signed by the store,
    which never held it: accepted by a ledger from before the access rules (the
    strongest case: the event is in the log). The farm attached a private document."""
    from support.portal import Portal

    world = file_world
    app = make_app(world, tmp_path)
    portal = Portal(world, app, tmp_path)
    for name, party in (("farm1", "farm"), ("store1", "store"), ("insp1", "inspector")):
        portal.user(name, party)
    farm = portal.token("farm")
    upload = portal.api(
        "POST",
        "/api/v1/documents",
        farm,
        data={"file": (io.BytesIO(b"secret recipe\n"), "recipe.txt"), "result": "pass"}
        | {"batches": LOT},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.json
    portal.resync("farm")
    with world.store.transaction():
        world.store.set_meta(ACCESS_RULES_FROM, "1000000")
    world.ledger._forget()
    world.ok("store", "inspect", [LOT], ABOUT["inspect"])
    world.ok("store", "epcis", [LOT], ABOUT["epcis"])
    with world.store.transaction():
        world.store.set_meta(ACCESS_RULES_FROM, str(world.store.log_size()))
    world.ledger._forget()
    portal.sha256 = upload.json["document"]["sha256"]  # type: ignore[attr-defined]
    return portal


def test_signing_about_a_lot_grants_no_access_to_it(legacy_portal):
    portal = legacy_portal
    lot_id = portal.lot_id(LOT)
    sha = portal.sha256
    store_token = portal.token("store")
    # the portal's lot page and the document download
    client = portal.client("store1")
    assert client.get(f"/portal/lots/{lot_id}").status_code == 403
    assert client.get(f"/portal/documents/{sha}").status_code == 403
    # the API's lot lookup, label and document download
    for url in (
        f"/api/v1/lots/lookup?uri={LOT}",
        f"/api/v1/lots/label?uri={LOT}",
        f"/api/v1/documents/{sha}",
    ):
        response = portal.api("GET", url, store_token)
        assert response.status_code == 403, url
        assert response.json["reason"] == "other-party"
    assert LOT not in str(portal.api("GET", "/api/v1/lots", store_token).json)
    # the maker still sees both; so does the inspector's own upload, not the farm's
    assert portal.client("farm1").get(f"/portal/lots/{lot_id}").status_code == 200
    assert portal.client("farm1").get(f"/portal/documents/{sha}").status_code == 200
    assert portal.client("insp1").get(f"/portal/documents/{sha}").status_code == 403


def test_signing_through_the_api_is_refused_and_no_upload_is_kept(legacy_portal, tmp_path):
    portal = legacy_portal
    world = portal.world
    token = portal.token("store")
    portal.resync("store")
    envelope = world.sign("store", "inspect", [LOT], ABOUT["inspect"]).to_json()
    response = portal.api("POST", "/api/v1/events", token, json=envelope)
    assert response.status_code == 403
    assert response.json["results"][0]["reason"] == NOT_CUSTODIAN
    upload = portal.api(
        "POST",
        "/api/v1/documents",
        token,
        data={"file": (io.BytesIO(b"forged lab result\n"), "lab.txt"), "result": "fail"}
        | {"batches": LOT},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 403 and upload.json["reason"] == NOT_CUSTODIAN
    assert "never held" in upload.json["detail"]  # the portal's check, before storing a byte
    documents = tmp_path / "accounts" / "documents"
    stored = [p.name for p in documents.rglob("*") if p.is_file()]
    assert stored == [portal.sha256]  # only the farm's file is kept
    # an accredited inspector may attach a result, and reads back only its own file
    inspector = portal.token("inspector")
    result = portal.api(
        "POST",
        "/api/v1/documents",
        inspector,
        data={"file": (io.BytesIO(b"lab: pass\n"), "lab.txt"), "result": "pass"} | {"batches": LOT},
        content_type="multipart/form-data",
    )
    assert result.status_code == 201, result.json
    mine = result.json["document"]["sha256"]
    assert portal.api("GET", f"/api/v1/documents/{mine}", inspector).status_code == 200
    assert portal.api("GET", f"/api/v1/documents/{portal.sha256}", inspector).status_code == 403
    assert portal.api("GET", f"/api/v1/lots/lookup?uri={LOT}", inspector).status_code == 403


def test_api_me_names_the_prefixes_a_party_commissions_under(portal):
    me = portal.api("GET", "/api/v1/me", portal.token("farm")).json
    assert me["party"]["gs1_company_prefixes"] == sorted(PREFIXES)
    carrier = portal.api("GET", "/api/v1/me", portal.token("carrier")).json
    assert "gs1_company_prefixes" not in carrier["party"]


def test_past_custodians_keep_seeing_the_lot(portal):
    world = portal.world
    world.ship_and_receive("farm", "carrier", [LOT], 2)
    world.ship_and_receive("carrier", "store", [LOT], 4)
    lot_id = portal.lot_id(LOT)
    for user in ("farm1", "carrier1", "store1"):
        assert portal.client(user).get(f"/portal/lots/{lot_id}").status_code == 200, user
    assert portal.client("packer1").get(f"/portal/lots/{lot_id}").status_code == 403


# --- 2. GS1 company prefixes --------------------------------------------------------------------


def test_prefixes_are_matched_after_the_indicator_digit():
    assert under_prefix("09506000134352", ["9506000"])
    assert under_prefix("19506000134359", ["9506000"])  # a case of the same item
    assert not under_prefix("09506000134352", ["0950600"])  # not the GTIN-14's first digits
    assert under_prefix("00614141123452", ["0614141"])  # a U.P.C. company's GTIN-12
    assert not under_prefix("09520123456788", ["9506000", "95201230"])


def test_a_producer_cannot_commission_under_another_brands_prefix(world):
    world.enrol_party("rival", "producer", prefixes=["9520123"])
    squat = gs1.lot_uri(GTIN, "LOT43")  # the World farm's brand
    result = world.append("rival", "commission", [squat], _kale("LOT43"))
    assert (result.status, result.reason) == ("rejected", UNAUTHORISED)
    assert (
        "GTIN 09506000134352 is not under a GS1 company prefix granted to rival" in result.message
    )
    assert "granted: 9520123" in result.message
    assert "ask the registrar to grant prefix 9506000" in result.message
    assert world.store.lot_by_uri(squat) is None
    # its own brand is fine, and so is the brand owner
    world.ok("rival", "commission", [OTHER_LOT], _other("RIVAL1"))
    world.ok("farm", "commission", [squat], _kale("LOT43"))


def test_a_party_without_prefixes_commissions_nothing(world):
    world.enrol_party("newcomer", "processor", prefixes=[])
    result = world.append("newcomer", "commission", [OTHER_LOT], _other("RIVAL1"))
    assert result.reason == UNAUTHORISED and "granted: none" in result.message


def test_transform_outputs_that_make_new_lots_need_the_prefix(world):
    world.enrol_party("rival", "processor", prefixes=["9520123"])
    world.ship_and_receive("farm", "rival", [LOT], 2)
    data = {
        "inputs": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
        "outputs": [
            {"batch": gs1.lot_uri(GTIN, "BAG1"), "quantity": {"value": 4, "unit": "EA"}}
            | {"product": "Kale, bagged"}
        ],
    }
    squat = world.append("rival", "transform", [LOT, gs1.lot_uri(GTIN, "BAG1")], data, time=at(3))
    assert squat.reason == UNAUTHORISED and "may not commission" in squat.message
    assert world.store.lot_by_uri(gs1.lot_uri(GTIN, "BAG1")) is None
    data["outputs"][0]["batch"] = gs1.lot_uri(OTHER_GTIN, "BAG1")
    world.ok("rival", "transform", [LOT, gs1.lot_uri(OTHER_GTIN, "BAG1")], data, time=at(3))


def test_grants_by_the_registrar_or_a_regulator(shared_world):
    world = shared_world
    world.enrol_party("coop", "producer", prefixes=["9520123"])
    squat = gs1.lot_uri(GTIN, "COOP1")
    assert world.append("coop", "commission", [squat], _kale("COOP1")).reason == UNAUTHORISED
    grant = {"subject": world.did("coop"), "gs1_company_prefixes": ["9506000"]}
    # only the registrar and regulators grant; only to a party that commissions
    assert world.append("farm", "grant", None, grant).reason == UNAUTHORISED
    to_carrier = dict(grant, subject=world.did("carrier"))
    assert world.append("registrar", "grant", None, to_carrier).reason == "conflict"
    world.ok("regulator", "grant", None, dict(grant, reason="co-packer for the farm"))
    again = world.append("registrar", "grant", None, grant)
    assert again.reason == "conflict" and "already holds" in again.message
    world.ok("registrar", "grant", None, dict(grant, gs1_company_prefixes=["9506000", "4012345"]))
    world.ok("coop", "commission", [squat], _kale("COOP1"))
    # grants are in the log, filed under the party's prefix chain, not its identity chain
    stream = world.store.chain_by_subject(world.did("coop") + "#gs1")
    assert stream is not None and stream[3] == 2
    assert world.store.chain_by_subject(world.did("coop"))[3] == 1  # its enrolment
    coop = world.store.identity_by_did(world.did("coop"))
    assert world.store.prefixes(coop.id) == ["4012345", "9506000", "9520123"]
    # the lot's proof bundle and the whole ledger verify (replay included)
    verify_lot(world.store, squat, world.log_public_key)
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, [str(p) for p in report.problems]


@pytest.mark.parametrize(
    ("table", "sql"),
    [
        ("prefixes", "INSERT INTO prefixes (party, prefix, event) VALUES ({party}, '9520123', 0)"),
        ("custodians", "INSERT INTO custodians (lot, party) VALUES ({lot}, {party})"),
    ],
)
def test_edited_access_tables_are_caught_by_verify(shared_world, table, sql):
    world = shared_world
    dc = world.store.identity_by_did(world.did("dc")).id  # no prefixes, never held LOT
    lot = world.store.lot_by_uri(LOT).id
    world.store.conn.execute(sql.format(party=dc, lot=lot))
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert any(f"{table} table holds" in p.message for p in report.problems), report.problems


def test_a_new_ledger_applies_the_rules_from_its_first_event(tmp_path):
    world = World.create(tmp_path)
    assert world.store.get_meta(ACCESS_RULES_FROM) == "0"
    assert "grant" in KIND_CODES and KIND_CODES["grant"] == 18


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path):
    runner = CliRunner()
    base = ["--db", str(tmp_path / "p.db"), "--keys", str(tmp_path / "keys")]

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == code, (args, result.output, result.exception)
        return result.output

    run("init")
    return run


def register(cli, who: str, gtin: str, lot: str, code: int = 0) -> str:
    args = ("lot", "register", "--gtin", gtin, "--lot", lot, "--product", "Kale", "--as", who)
    return cli(*args, code=code)


def test_cli_party_add_with_prefixes_and_grant(cli, tmp_path):
    cli("party", "add", "Farm", "--role", "producer", "--prefix", "9506000", "--prefix", "950601")
    cli("party", "add", "Rival", "--role", "producer", "--prefix", "9520123")
    agency = cli("key", "new", "--out", str(tmp_path / "agency.pem")).strip()
    cli("party", "add", "Agency", "--role", "regulator", "--public-key", agency)
    register(cli, "Farm", GTIN, "A1")
    out = register(cli, "Rival", GTIN, "A2", code=1)
    assert "Error: unauthorised: Rival may not commission" in out
    assert 'provenance party grant "Rival" --prefix 9506000' in out
    out = cli("party", "grant", "Rival", "--prefix", "9506000", "--reason", "co-packer")
    assert out.strip() == "Rival may commission under 9506000, 9520123"
    register(cli, "Rival", GTIN, "A2")
    out = cli(
        "party",
        "grant",
        "Rival",
        "--prefix",
        "4012345",
        "--by",
        "Agency",
        "--key",
        str(tmp_path / "agency.pem"),
    )
    assert "4012345" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--role", "producer", "--prefix", "95060"), "6 to 12 digits"),
        (("--role", "producer", "--prefix", "9506000134352"), "6 to 12 digits"),
        (("--role", "producer", "--prefix", "95O6000"), "6 to 12 digits"),
        (("--role", "carrier", "--prefix", "9506000"), "commissions no lots"),
    ],
)
def test_cli_bad_prefixes_are_errors(cli, args, words):
    out = cli("party", "add", "X", *args, code=1)
    assert out.startswith("Error: ") and words in out
    assert "Traceback" not in out


def test_cli_grant_errors(cli):
    cli("party", "add", "Carrier", "--role", "carrier")
    assert "no party named 'Nobody'" in cli(
        "party", "grant", "Nobody", "--prefix", "950600", code=1
    )
    assert "name the prefixes" in cli("party", "grant", "Carrier", code=1)
    out = cli("party", "grant", "Carrier", "--prefix", "950600", code=1)
    assert "Error: conflict: Carrier is a carrier" in out
    assert "no regulator party named" in cli(
        "party", "grant", "Carrier", "--prefix", "950600", "--by", "Carrier", code=1
    )


def test_world_prefixes_cover_the_world_gtin():
    assert under_prefix(GTIN, PREFIXES)


# --- the same rules over MQTT (the ingest service appends through the same ledger)


def test_over_mqtt_the_rules_hold_and_rejects_name_them(
    file_world,
    start_ingest,  # noqa: F811 (the fixture from test_ingest)
    publisher,  # noqa: F811
):
    world = file_world
    world.enrol_party("rival", "producer", prefixes=["9520123"])
    service = start_ingest(world)
    publisher.listen_for_rejects()
    topic = topics.events_topic("parties", "handheld-1")
    stranger = world.sign("store", "inspect", [LOT], ABOUT["inspect"])
    squat = world.sign("rival", "commission", [gs1.lot_uri(GTIN, "SQ1")], _kale("SQ1"))
    allowed = world.sign("inspector", "inspect", [LOT], {"result": "pass"})
    for envelope in (stranger, squat, allowed):
        publisher.publish(topic, wire(envelope))
    notices = [notice for _, notice in publisher.wait_notices(2)]
    assert {(n["event_id"], n["reason"]) for n in notices} == {
        (stranger.event_id, NOT_CUSTODIAN),
        (squat.event_id, UNAUTHORISED),
    }
    assert service.wait_for(lambda s: s.accepted == 1 and s.rejected_total == 2, SETTLE)
    assert world.store.find_event(allowed.id_bytes) is not None
    assert world.store.lot_by_uri(gs1.lot_uri(GTIN, "SQ1")) is None


def test_an_existing_ledger_migrates_with_the_rules_from_its_size(tmp_path):
    """A ledger from before the access rules (tests/fixtures/README.md): the
    migration backfills custody from its lots and received shipments, records
    the boundary at its log size, and `verify` replays its old events as they
    were accepted."""
    import shutil
    import sqlite3

    from support.lineage import BEFORE_LINEAGE_LOG_KEY, FIXTURES

    from provenance.store.db import Store

    path = tmp_path / "ledger.db"
    shutil.copyfile(FIXTURES / "ledger-before-lineage.db", path)
    with sqlite3.connect(path) as old:
        size = old.execute("SELECT count(*) FROM events").fetchone()[0]
        received = old.execute(
            "SELECT count(*) FROM shipments WHERE receive_event IS NOT NULL"
        ).fetchone()[0]
    store = Store(path)
    assert "0005_access" in store.applied_migrations()
    assert store.get_meta(ACCESS_RULES_FROM) == str(size) != "0"
    for lot in store.lots():
        history = store.custodian_history(lot.id)
        assert lot.commissioned_by in history and lot.custodian in history
    rows = store.conn.execute("SELECT count(*) FROM custodians").fetchone()[0]
    assert rows >= len(store.lots()) + (1 if received else 0)
    report = verify_ledger(store, bytes.fromhex(BEFORE_LINEAGE_LOG_KEY), workers=1)
    assert report.ok, [str(p) for p in report.problems]
