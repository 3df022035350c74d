"""The regulator's portal and API end to end against a real ledger file:
search, trace, recall that cascades and its lift, active recalls, the recall
report with consumer scans, exports, ledger integrity, the audit trail; and
the admin pages."""

from __future__ import annotations

import csv
import io
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.portal import Portal, make_app
from support.world import GTIN, HOUR, LOT, at

from provenance.core import gs1
from provenance.core.checkpoint import Checkpoint, sign_checkpoint

BAG = gs1.lot_uri(GTIN, "BAG1")
PAGE = LOT.removeprefix(gs1.DEFAULT_BASE)
BAG_PAGE = BAG.removeprefix(gs1.DEFAULT_BASE)


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def lineage(file_world, tmp_path) -> Portal:
    """LOT42 went to the packer and became BAG1; the app counts scans by CF-IPCountry."""
    world = file_world
    world.ship_and_receive("farm", "packer", [LOT], 2)
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
    app = make_app(world, tmp_path, SCAN_COUNTRY_HEADER="CF-IPCountry")
    portal = Portal(world, app, tmp_path)
    portal.user("reg1", "regulator")
    portal.user("farm1", "farm")
    portal.user("root")
    return portal


def recall(portal: Portal, lots: str = LOT, **extra: str):
    form = {"lots": lots, "reason": "Listeria found", "class": "I", "confirm": "yes"}
    return portal.post("reg1", "/portal/regulator/recall", {**form, **extra})


def actions(portal: Portal) -> list[str]:
    return [entry.action for entry in portal.accounts.audit_entries(limit=1000)]


def test_search(lineage):
    client = lineage.client("reg1")
    page = text(client.get("/portal/regulator/search?q=bag"))
    assert "1 lot found" in page and "Kale bag" in page
    page = text(client.get(f"/portal/regulator/search?gtin={GTIN[1:]}&lot=LOT"))
    assert "1 lot found" in page and "LOT42" in page
    assert "0 lots found" in text(client.get("/portal/regulator/search?q=%25"))
    entry = lineage.accounts.audit_entries(action="search")[0]
    assert entry.actor == "user reg1" and entry.role == "regulator"
    assert entry.params == {"q": "%", "gtin": "", "lot": "", "page": 1, "found": 0}


def test_trace(lineage):
    page = text(lineage.client("reg1").get(f"/portal/regulator/trace?uri={LOT}"))
    assert "What was made from it (1 lot downstream)" in page  # the plural from the catalog
    assert "Kale bag" in page and "packer" in page and "400 packs" in page
    back = text(lineage.client("reg1").get(f"/portal/regulator/trace?uri={BAG}&direction=back"))
    assert "1 lot upstream" in back and "Origins: Kale, lot LOT42" in back
    assert lineage.client("farm1").get(f"/portal/regulator/trace?uri={LOT}").status_code == 403
    api = lineage.api("GET", f"/api/v1/trace?uri={LOT}", lineage.token("regulator")).json
    assert [lot["uri"] for lot in api["downstream"]] == [BAG]
    assert "trace" in actions(lineage)


def test_recall_cascades_and_is_signed_by_the_regulator(lineage):
    world = lineage.world
    assert recall(lineage, confirm="").status_code == 400  # must be confirmed
    response = recall(lineage)
    assert response.status_code == 303
    assert world.store.lot_by_uri(LOT).recalled and world.store.lot_by_uri(BAG).recalled
    page = text(lineage.client("reg1").get(response.headers["Location"]))
    assert "Recall signed for 1 lot." in page and "2 lots are recalled" in page
    chain = world.store.chain_events(world.store.chain_by_subject(BAG)[0])
    event = chain[-1].envelope
    assert event.kind == "recall" and event.signer == world.did("regulator")
    assert event.data == {"reason": "Listeria found", "class": "I"}
    consumer = text(lineage.app.test_client().get(BAG_PAGE))
    assert "RECALLED" in consumer and "Listeria found" in consumer
    entry = lineage.accounts.audit_entries(action="recall")[0]
    assert entry.params["lots"] == [LOT] and entry.params["class"] == "I"
    assert entry.params["events"] == [event.event_id]
    # the recalled lot cannot be shipped
    world.seqs["packer"] = world.ledger.next_seq(world.did("packer"))
    refused = world.append("packer", "ship", [BAG], {"to": world.did("store")})
    assert refused.reason == "recalled"


def test_active_recalls_report_and_lift(lineage):
    world = lineage.world
    consumer = lineage.app.test_client()
    world.now -= 2 * HOUR
    consumer.get(PAGE, headers={"CF-IPCountry": "KE"})  # before the recall: not counted
    world.now += 2 * HOUR
    recall(lineage)
    for _ in range(2):
        assert consumer.get(PAGE, headers={"CF-IPCountry": "KE"}).status_code == 200
    consumer.get(BAG_PAGE, headers={"CF-IPCountry": "US"})
    consumer.get(BAG_PAGE)
    consumer.get(BAG_PAGE, headers={"Accept": "application/json"})  # a program, not a person
    consumer.get(BAG_PAGE + "?linkType=gs1:recallStatus")
    client = lineage.client("reg1")
    recalls = text(client.get("/portal/regulator/recalls"))
    assert "Recalls in force (1)" in recalls and "Listeria found" in recalls
    lot_id = lineage.lot_id(LOT)
    report = text(client.get(f"/portal/regulator/recalls/{lot_id}"))
    assert "Affected lots (2)" in report and "Kale bag" in report
    assert "Consumer scans since the recall (4)" in report
    data = lineage.api("GET", f"/api/v1/recalls/report?uri={LOT}", lineage.token("regulator")).json
    assert [(a["lot"], a["relation"], a["custodian"]) for a in data["affected"]] == [
        (LOT, "named", "packer"),
        (BAG, "downstream", "packer"),
    ]
    assert data["affected"][1]["through"] == [LOT]
    assert data["affected"][1]["quantity"] == {
        "registered": {"value": 400, "unit": "EA"},
        "held": {"value": 400, "unit": "EA"},
    }
    assert data["affected"][0]["quantity"]["held"] is None  # never registered a quantity
    day = data["since"][:10]
    assert data["scans"] == [
        {"day": day, "place": "KE", "count": 2},
        {"day": day, "place": "US", "count": 1},
        {"day": day, "place": "unknown", "count": 1},
    ]
    rows = list(
        csv.reader(io.StringIO(text(client.get(f"/portal/regulator/recalls/{lot_id}/lots.csv"))))
    )
    assert rows[0][:5] == ["lot", "gtin", "lot_code", "product", "relation"] and len(rows) == 3
    scans = text(client.get(f"/portal/regulator/recalls/{lot_id}/scans.csv"))
    assert f"{day},KE,2" in scans
    # no address is ever stored
    folder = lineage.tmp / "accounts"
    stored = b"".join(p.read_bytes() for p in folder.glob("accounts.db*"))
    assert b"127.0.0.1" not in stored
    # lift: both lots free again, and the lift is signed too
    lift = lineage.post("reg1", "/portal/regulator/lift", {"lot": LOT, "reason": "retested"})
    assert lift.status_code == 303
    assert not world.store.lot_by_uri(BAG).recalled
    assert "Recalls in force (0)" in text(client.get("/portal/regulator/recalls"))
    report = text(client.get(f"/portal/regulator/recalls/{lot_id}"))
    assert "lifted" in report and "retested" in report


def test_regulator_api_recall_and_lift(lineage):
    token = lineage.token("regulator")
    body = {"batches": [LOT], "reason": "Listeria", "class": "II", "instructions": "Return it"}
    # the server holds no regulator key, so it cannot sign for one ...
    refused = lineage.api("POST", "/api/v1/recalls", token, json=body)
    assert refused.status_code == 503 and refused.json["reason"] == "no-key"
    assert "/api/v1/events" in refused.json["detail"]
    # ... the regulator signs its recall itself and the API appends it as it is
    lineage.resync("regulator")
    data = {"reason": "Listeria", "class": "II", "instructions": "Return it"}
    envelope = lineage.world.sign("regulator", "recall", [LOT], data, time=at(20))
    appended = lineage.api("POST", "/api/v1/events", token, json=envelope.to_json())
    assert appended.status_code in (200, 201), appended.json
    listed = lineage.api("GET", "/api/v1/recalls", token).json["recalls"]
    assert listed[0]["named"] == [LOT] and listed[0]["lots_recalled"] == 2
    lifted = lineage.api("POST", "/api/v1/events", token, json=lift_of(lineage, BAG))
    assert lifted.status_code == 422 and "recalled only through" in json.dumps(lifted.json)
    lifted = lineage.api("POST", "/api/v1/events", token, json=lift_of(lineage, LOT))
    assert lifted.status_code in (200, 201), lifted.json
    assert lineage.api("GET", "/api/v1/recalls", token).json["recalls"] == []
    never = lineage.api("GET", f"/api/v1/recalls/report?uri={gs1.lot_uri(GTIN, 'X')}", token)
    assert never.status_code == 404


def lift_of(lineage, lot: str) -> dict:
    lineage.resync("regulator")
    envelope = lineage.world.sign("regulator", "recall-lift", [lot], {"reason": "x"}, time=at(21))
    return envelope.to_json()


def test_exports(lineage):
    client = lineage.client("reg1")
    assert "FSMA 204" in text(client.get("/portal/regulator/exports"))
    epcis = client.get(f"/portal/regulator/exports?format=epcis&lot={LOT}")
    assert epcis.status_code == 200 and epcis.mimetype == "application/ld+json"
    document = json.loads(epcis.data)
    assert document["type"] == "EPCISDocument"
    assert document["epcisBody"]["eventList"]
    sheet = client.get("/portal/regulator/exports?format=fsma204-csv&product=Kale")
    assert sheet.status_code == 200 and sheet.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(sheet.data.decode("utf-8-sig"))))
    assert len(rows) > 2
    xlsx = client.get("/portal/regulator/exports?format=fsma204-xlsx&from=2026-01-01&to=2026-12-31")
    assert xlsx.status_code == 200 and xlsx.data.startswith(b"PK")
    bad = client.get("/portal/regulator/exports?format=fsma204-csv&from=2026-02-01&to=2026-01-01")
    assert bad.status_code == 400
    api = lineage.api("GET", "/api/v1/exports/fsma204?format=csv", lineage.token("regulator"))
    assert api.status_code == 200 and int(api.headers["X-Provenance-Count"]) > 0
    assert lineage.client("farm1").get("/portal/regulator/exports?format=epcis").status_code == 403
    entry = lineage.accounts.audit_entries(action="export")[0]
    assert entry.params["format"] == "fsma204-csv"


def consistency(portal: Portal, note: str) -> str:
    return text(
        portal.post("reg1", "/portal/regulator/integrity/consistency", {"checkpoint": note})
    )


def test_integrity(lineage):
    world = lineage.world
    client = lineage.client("reg1")
    old = world.store.latest_checkpoint()
    world.ok("farm", "inspect", [LOT], {"result": "pass"}, time=at(5))
    page = text(client.get("/portal/regulator/integrity"))
    assert "signature valid" in page and "the operator&#39;s log key" in page
    started = lineage.post("reg1", "/portal/regulator/integrity/verify", {"lot": ""})
    assert started.status_code == 303  # a background job (tests/test_portal_jobs.py)
    jobs = lineage.app.extensions["provenance.portal"].jobs
    job = jobs.get(started.headers["Location"].rsplit("/", 1)[1], "user reg1")
    try:
        assert job is not None and job.wait(60)
        whole = text(client.get(started.headers["Location"]))
        assert "The whole ledger verifies" in whole
    finally:
        jobs.close()
    one = text(lineage.post("reg1", "/portal/regulator/integrity/verify", {"lot": LOT}))
    assert "Lot verifies" in one
    good = text(
        lineage.post("reg1", "/portal/regulator/integrity/consistency", {"checkpoint": old})
    )
    assert "Consistent" in good and "extends the" in good
    origin = world.store.get_meta("origin")
    latest = world.store.latest_checkpoint().split("\n")
    size = int(latest[1])
    ahead = sign_checkpoint(Checkpoint(origin, size + 10, b"\1" * 32), origin, world.log_key)
    rolled = text(
        lineage.post("reg1", "/portal/regulator/integrity/consistency", {"checkpoint": ahead})
    )
    assert "NOT consistent" in rolled and "rolled back" in rolled
    forked = sign_checkpoint(Checkpoint(origin, size - 1, b"\2" * 32), origin, world.log_key)
    changed = text(
        lineage.post("reg1", "/portal/regulator/integrity/consistency", {"checkpoint": forked})
    )
    assert "NOT consistent" in changed and "were changed" in changed
    stranger = sign_checkpoint(
        Checkpoint(origin, 3, b"\3" * 32), origin, Ed25519PrivateKey.generate()
    )
    other = text(
        lineage.post("reg1", "/portal/regulator/integrity/consistency", {"checkpoint": stranger})
    )
    assert "does not verify with this log" in other
    api = lineage.api(
        "POST",
        "/api/v1/integrity/consistency",
        lineage.token("regulator"),
        json={"checkpoint": old},
    ).json
    assert api["ok"] and api["proof"]
    assert {"integrity", "verify", "consistency"} <= set(actions(lineage))


def test_audit_trail_records_every_regulator_query_and_action(lineage):
    client = lineage.client("reg1")
    client.get("/portal/regulator/search?q=kale")
    client.get(f"/portal/lots/{lineage.lot_id(LOT)}")
    recall(lineage)
    client.get(f"/portal/regulator/recalls/{lineage.lot_id(LOT)}")
    lineage.api("GET", "/api/v1/search?q=kale", lineage.token("regulator"))
    page = text(client.get("/portal/regulator/audit"))
    assert "chain intact" in page
    found = actions(lineage)
    for action in ("login", "search", "view-lot", "recall", "recall-report", "audit-view"):
        assert action in found, action
    api_search = lineage.accounts.audit_entries(action="search")[0]
    assert api_search.actor == "token 1" and api_search.party == "regulator"
    filtered = text(client.get("/portal/regulator/audit?action=recall"))
    assert "Listeria found" in filtered and "view-lot" not in filtered
    admin = lineage.client("root").get("/portal/regulator/audit")
    assert admin.status_code == 200
    api = lineage.api("GET", "/api/v1/audit?limit=5", lineage.token("regulator")).json
    assert len(api["entries"]) == 5 and api["chain"]["intact"]


def test_admin_manages_users_and_tokens(lineage):
    world = lineage.world
    page = text(lineage.client("root").get("/portal/admin/"))
    assert "reg1" in page and "farm1" in page
    form = {"name": "carol", "role": "carrier", "party": world.did("carrier"), "password": "x" * 12}
    assert lineage.post("root", "/portal/admin/users", form).status_code == 303
    assert lineage.accounts.user("carol").party_name == "carrier"
    wrong = {**form, "name": "dave", "role": "producer"}
    response = lineage.post("root", "/portal/admin/users", wrong)
    assert response.status_code == 400 and "enrolled as a carrier" in text(response)
    assert lineage.post("root", "/portal/admin/users", form).status_code == 409
    token = lineage.token("farm")
    assert lineage.post("root", "/portal/admin/tokens/1/revoke").status_code == 303
    assert lineage.api("GET", "/api/v1/me", token).status_code == 401
    assert lineage.post("root", "/portal/admin/users/root/disable").status_code == 409
    assert {"user-add", "token-revoke"} <= set(actions(lineage))


def test_holds_page_lists_holds_and_flags_and_releases(lineage):
    world = lineage.world
    world.keys["rules"] = Ed25519PrivateKey.generate()
    enrol = {"subject": world.did("rules"), "type": "rules", "name": "rules"}
    world.ok("registrar", "enrol", None, enrol)
    hold = world.ok("rules", "hold", [BAG], {"rule": "cold", "reason": "4 h at 11 °C"})
    flag = {"signal": "counterfeit", "rule": "far", "reason": "KE and DE", "key": "serial:S1"}
    world.ok("rules", "flag", [BAG], flag)
    page = text(lineage.client("reg1").get("/portal/regulator/holds"))
    assert "4 h at 11 °C" in page and "KE and DE" in page and "BAG1" in page
    assert lineage.client("farm1").get("/portal/regulator/holds").status_code == 403
    form = {"lots": BAG, "hold": hold.event_id, "reason": "retested"}
    assert lineage.post("farm1", "/portal/regulator/holds/release", form).status_code == 403
    assert lineage.post("reg1", "/portal/regulator/holds/release", form).status_code == 303
    assert not world.store.lot_by_uri(BAG).held
    released = world.store.chain_events(world.store.chain_by_subject(BAG)[0])[-1].envelope
    assert released.kind == "release" and released.signer == world.did("regulator")
    assert lineage.accounts.audit_entries(action="holds")


def test_the_audit_page_and_api_hold_the_trail_against_its_anchors(lineage):
    """The operator rebuilds the trail (every hash recomputed) after it was
    anchored: the regulator's page and the API say so, naming the entry."""
    from provenance.core.trail import GENESIS, entry_hash
    from provenance.ledger.trail_anchors import anchor_trail
    from provenance.store.accounts.audit_trail import TRAIL

    world, accounts = lineage.world, lineage.accounts
    lineage.client("reg1").get("/portal/regulator/search?q=kale")
    anchored = anchor_trail(world.ledger, world.registrar, TRAIL, accounts.audit_head)
    assert anchored.status == "accepted"
    count, _ = accounts.audit_head()
    api = lineage.api("GET", "/api/v1/audit?limit=5", lineage.token("regulator")).json
    assert api["chain"]["intact"] and api["chain"]["anchors"] == 1
    assert api["chain"]["anchored"] == count
    conn = accounts.conn
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute(f"UPDATE audit SET outcome = 'refused: hidden' WHERE id = {count}")
    previous = GENESIS
    for entry in list(accounts.trail_entries()):
        previous = entry_hash(previous, entry.fields)
        conn.execute("UPDATE audit SET hash = ? WHERE id = ?", (previous, entry.id))
    assert accounts.verify_audit()[1] is None  # the chain alone cannot tell
    page = text(lineage.client("reg1").get("/portal/regulator/audit"))
    named = f"one of audit entries 1–{count} (#1–#{count}) was rewritten or removed"
    assert "chain broken" in page and named in page, page
    api = lineage.api("GET", "/api/v1/audit?limit=5", lineage.token("regulator")).json
    assert not api["chain"]["intact"] and api["chain"]["problem"].startswith(named)


def test_holds_page_words_a_rules_hold_in_the_readers_language(lineage):
    """A hold's reason is worded from the code and evidence the rules engine
    signed (docs/scan.md, "Reasons"), so a Chinese portal says it in Chinese;
    the signed English sentence stays the record."""
    world = lineage.world
    world.keys["rules"] = Ed25519PrivateKey.generate()
    enrol = {"subject": world.did("rules"), "type": "rules", "name": "rules"}
    world.ok("registrar", "enrol", None, enrol)
    evidence = {
        "code": "logger-silent",
        "logger": world.did("probe"),
        "logger_name": "probe",
        "silent_from": "2026-09-21T16:13:20.000Z",
        "silent_until": None,
        "limit_s": 3600,
    }
    reason = "logger probe has sent no reading since 2026-09-21T16:13:20.000Z (limit 1 h)"
    world.ok("rules", "hold", [BAG], {"rule": "silent", "reason": reason, "evidence": evidence})
    zh = text(lineage.client("reg1").get("/portal/regulator/holds?lang=zh"))
    assert '温度记录仪 <span lang="en">probe</span> 自' in zh
    assert "起没有发送读数（上限 1 小时）" in zh
    assert "has sent no reading" not in zh
    en = text(lineage.client("reg1").get("/portal/regulator/holds?lang=en"))
    assert "Logger probe has sent no reading since <time" in en
