"""The EPCIS 2.0 capture interface (POST /epcis/capture, capture jobs;
provenance/web/epcis_capture.py): documents from partners become signed `epcis`
events — signed by the server for a custodial party, by the party itself
otherwise — with GS1-Capture-Error-Behaviour, and every refusal a problem."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.portal import (
    Portal,
    make_app,
    portal,  # noqa: F401  (fixture)
)
from support.world import LOT, at

from provenance.web.epcis_capture import MAX_CAPTURE_BYTES, MAX_CAPTURE_EVENTS, capture_events

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
ELSEWHERE = "urn:epc:class:lgtin:4012345.012345.998877"  # a lot this ledger does not have


def event(hours: float = 700, cls: str = LOT, **extra: Any) -> dict[str, Any]:
    moment = at(hours)
    return {
        "type": "ObjectEvent",
        "eventTime": moment,
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "bizStep": "receiving",
        "disposition": "in_progress",
        "quantityList": [{"epcClass": cls, "quantity": 12.5, "uom": "KGM"}],
    } | extra


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-10-01T00:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def capture(portal, token, body: Any, **headers: str):  # noqa: F811
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return portal.api(
        "POST",
        "/epcis/capture",
        token,
        data=data,
        headers={"Content-Type": "application/ld+json", **headers},
    )


def problem(response, status: int, kind: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == f"epcisException:{kind}"
    assert response.json["detail"]
    return response.json["detail"]


def job_of(portal, token, response) -> dict[str, Any]:  # noqa: F811
    assert response.status_code == 202, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith("/epcis/capture/")
    found = portal.api("GET", location, token)
    assert found.status_code == 200
    return found.json


def epcis_rows(portal) -> int:  # noqa: F811
    return sum(1 for _ in portal.world.store.event_rows(kinds=["epcis"]))


# --- a custodial party: the server signs


def test_a_custodial_party_captures_a_document_signed_by_the_server(portal):  # noqa: F811
    token = portal.token("farm")
    response = capture(portal, token, document(event(700), event(701)))
    job = job_of(portal, token, response)
    assert job["running"] is False and job["success"] is True and job["errors"] == []
    assert job["captureErrorBehaviour"] == "rollback"
    assert job["createdAt"] and job["finishedAt"]
    assert [e["status"] for e in job["events"]] == ["stored", "stored"]
    stored = [
        portal.world.store.event_from_row(r) for r in portal.world.store.event_rows(kinds=["epcis"])
    ]
    assert len(stored) == 2
    assert {s.envelope.signer for s in stored} == {portal.world.did("farm")}
    assert job["events"][0]["ledgerEventId"] == stored[0].envelope.event_id
    listed = portal.api("GET", "/epcis/capture", token)
    assert [j["captureID"] for j in listed.json] == [job["captureID"]]
    # The same document again: nothing new, each event a duplicate.
    again = job_of(portal, token, capture(portal, token, document(event(700), event(701))))
    assert [e["status"] for e in again["events"]] == ["duplicate", "duplicate"]
    assert epcis_rows(portal) == 2
    # The captured events answer queries.
    found = portal.api(
        "GET", "/epcis/events?EQ_bizStep=receiving&perPage=100", portal.token("regulator")
    )
    ids = {
        e["eventID"] for e in found.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    }
    assert {e["eventID"] for e in job["events"]} <= ids


def test_rollback_stores_nothing_and_proceed_stores_what_passes(portal):  # noqa: F811
    token = portal.token("farm")
    future = event(24 * 400)  # a year ahead of the server's clock: the ledger refuses it
    rolled = job_of(portal, token, capture(portal, token, document(event(702), future)))
    assert rolled["running"] is False and rolled["success"] is False
    assert rolled["errors"] and rolled["errors"][0]["type"] == "epcisException:ValidationException"
    assert epcis_rows(portal) == 0
    kept = job_of(
        portal,
        token,
        capture(
            portal,
            token,
            document(event(702), future),
            **{"GS1-Capture-Error-Behaviour": "proceed"},
        ),
    )
    assert kept["success"] is False and kept["captureErrorBehaviour"] == "proceed"
    assert [e["status"] for e in kept["events"]] == ["stored", "rejected"]
    assert len(kept["errors"]) == 1 and "event 1" in kept["errors"][0]["detail"]
    assert epcis_rows(portal) == 1


def test_capture_discovery_names_its_limits(portal):  # noqa: F811
    response = portal.api("OPTIONS", "/epcis/capture", portal.token("farm"))
    assert response.status_code == 204
    assert response.headers["GS1-EPCIS-Version"] == "2.0.0"
    other = portal.api("OPTIONS", "/epcis/queries", portal.token("farm"))
    assert other.status_code == 204 and "POST" in other.headers["Allow"]
    refused = portal.api("PUT", "/epcis/capture", portal.token("farm"))
    assert refused.status_code == 405 and "POST" in refused.headers["Allow"]
    assert response.headers["GS1-EPCIS-Capture-Limit"] == str(MAX_CAPTURE_EVENTS)
    assert response.headers["GS1-EPCIS-Capture-File-Size-Limit"] == str(MAX_CAPTURE_BYTES)
    assert "rollback" in response.headers["GS1-Capture-Error-Behaviour"]


# --- every refusal is a problem with a reason, and stores nothing


@pytest.mark.parametrize(
    ("case", "status", "kind"),
    [
        ("no token", 401, "SecurityException"),
        ("read-only token", 403, "SecurityException"),
        ("regulator", 403, "SecurityException"),
        ("behaviour all", 400, "ValidationException"),
        ("text/plain", 415, "UnsupportedMediaTypeException"),
        ("not json", 400, "ValidationException"),
        ("not epcis", 400, "ValidationException"),
        ("schema", 400, "ValidationException"),
        ("no events", 400, "ValidationException"),
        ("too many events", 413, "CaptureLimitExceededException"),
        ("too many bytes", 413, "CaptureLimitExceededException"),
        ("too deep", 400, "ValidationException"),
    ],
)
def test_capture_refusals(portal, case, status, kind):  # noqa: F811
    token = portal.token("farm")
    body: Any = document(event())
    headers: dict[str, str] = {}
    if case == "no token":
        token = None
    elif case == "read-only token":
        token = portal.token("farm", scope="read")
    elif case == "regulator":
        token = portal.token("regulator")
    elif case == "behaviour all":
        headers["GS1-Capture-Error-Behaviour"] = "all"
    elif case == "text/plain":
        headers["Content-Type"] = "text/plain"
    elif case == "not json":
        body = b"{not json"
    elif case == "not epcis":
        body = {"hello": "world"}
    elif case == "schema":
        body = document(event(bizStep="not a cbv step or uri"))
    elif case == "no events":
        body = document()
    elif case == "too many events":
        body = document(*[event(700 + i / 1000) for i in range(MAX_CAPTURE_EVENTS + 1)])
    elif case == "too many bytes":
        body = document(event(ilmd={"example:pad": "x" * MAX_CAPTURE_BYTES}))
    elif case == "too deep":
        deep: Any = "x"
        for _ in range(100):
            deep = {"example:d": deep}
        body = document(event(**{"example:deep": deep}))
    before = portal.world.store.log_size()
    response = capture(portal, token, body, **headers)
    problem(response, status, kind)
    assert portal.world.store.log_size() == before
    assert portal.accounts.capture_jobs(portal.world.did("farm"), limit=10, offset=0) == []


def test_a_party_sees_only_its_own_capture_jobs(portal):  # noqa: F811
    farm = portal.token("farm")
    job = job_of(portal, farm, capture(portal, farm, document(event())))
    other = portal.token("store")
    problem(
        portal.api("GET", f"/epcis/capture/{job['captureID']}", other),
        404,
        "NoSuchNameException",
    )
    assert portal.api("GET", "/epcis/capture", other).json == []
    problem(portal.api("GET", "/epcis/capture?perPage=0", farm), 400, "QueryParameterException")


# --- a party that holds its own key signs its events itself


@pytest.fixture
def own_key(file_world, tmp_path) -> Portal:
    world = file_world
    world.keys["ownfarm"] = Ed25519PrivateKey.generate()
    data = {
        "subject": world.did("ownfarm"),
        "type": "party",
        "name": "Own Farm",
        "role": "producer",
        "gs1_company_prefixes": ["9506000"],
        "custodial": False,
    }
    world.ok("registrar", "enrol", None, data)
    return Portal(world, make_app(world, tmp_path), tmp_path)


def signed(world, who: str, doc: dict[str, Any], **changes: Any) -> list[dict[str, Any]]:
    """What the party's own software does: sign each event as it will be stored."""
    out = []
    for item in capture_events(json.loads(json.dumps(doc))):
        data = {"event": item.event} | changes
        lots = [uri for uri in item.lots if world.store.lot_by_uri(uri)] or None
        envelope = world.sign(who, "epcis", lots, data, time=item.time)
        out.append(json.loads(envelope.canonical_bytes()))
    return out


def test_a_party_holding_its_own_key_sends_signed_envelopes(own_key):
    token = own_key.token("ownfarm", key=False)
    doc = document(event(700, cls=ELSEWHERE))
    problem(capture(own_key, token, doc), 403, "SecurityException")  # never signed for it
    assert epcis_rows(own_key) == 0
    job = job_of(
        own_key,
        token,
        capture(
            own_key, token, doc | {"provenance:envelopes": signed(own_key.world, "ownfarm", doc)}
        ),
    )
    assert job["success"] is True and [e["status"] for e in job["events"]] == ["stored"]
    stored = own_key.world.store.event_from_row(
        next(own_key.world.store.event_rows(kinds=["epcis"]))
    )
    assert stored.envelope.signer == own_key.world.did("ownfarm")


@pytest.mark.parametrize(
    ("case", "status", "kind"),
    [
        ("another event", 400, "ValidationException"),
        ("another party", 403, "SecurityException"),
        ("unsigned", 400, "ValidationException"),
        ("one missing", 400, "ValidationException"),
        ("another kind", 400, "ValidationException"),
    ],
)
def test_signed_capture_refusals(own_key, case, status, kind):
    token = own_key.token("ownfarm", key=False)
    doc = document(event(700, cls=ELSEWHERE), event(701, cls=ELSEWHERE))
    envelopes = signed(own_key.world, "ownfarm", doc)
    if case == "another event":
        envelopes[1] = signed(own_key.world, "ownfarm", document(event(702, cls=ELSEWHERE)))[0]
    elif case == "another party":
        envelopes = signed(own_key.world, "carrier", doc)
    elif case == "unsigned":
        del envelopes[0]["sig"]
    elif case == "one missing":
        envelopes = envelopes[:1]
    elif case == "another kind":
        envelopes[0]["kind"] = "reading"
    problem(capture(own_key, token, doc | {"provenance:envelopes": envelopes}), status, kind)
    assert epcis_rows(own_key) == 0


def test_a_forged_signature_is_refused_by_the_ledger_and_the_job_says_so(own_key):
    token = own_key.token("ownfarm", key=False)
    doc = document(event(700, cls=ELSEWHERE))
    envelopes = signed(own_key.world, "ownfarm", doc)
    envelopes[0]["sig"] = envelopes[0]["sig"][:-4] + (
        "AAAA" if not envelopes[0]["sig"].endswith("AAAA") else "BBBB"
    )
    job = job_of(own_key, token, capture(own_key, token, doc | {"provenance:envelopes": envelopes}))
    assert job["success"] is False and job["events"][0]["status"] == "rejected"
    assert epcis_rows(own_key) == 0


def test_the_lot_uri_of_a_capture_names_a_ledger_lot(portal):  # noqa: F811
    """Captured events about a ledger lot are filed under it, so its custodians read them."""
    token = portal.token("farm")
    job_of(portal, token, capture(portal, token, document(event(703))))
    stored = portal.world.store.event_from_row(next(portal.world.store.event_rows(kinds=["epcis"])))
    assert list(stored.envelope.lots or ()) == [LOT]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "kind"),
    [
        ("GET", "/epcis/no-such-resource", {}, 404, "NoSuchNameException"),
        ("GET", "/epcis", {}, 404, "NoSuchNameException"),
        ("PUT", "/epcis/capture", {}, 405, "ValidationException"),
        (
            "GET",
            "/epcis/queries/q/events",
            {"Connection": "Upgrade", "Upgrade": "websocket"},
            400,
            "SubscriptionControlsException",
        ),
    ],
)
def test_what_no_route_takes_under_epcis_is_a_problem_not_a_page(
    portal,  # noqa: F811
    method,
    path,
    headers,
    status,
    kind,
):
    problem(portal.api(method, path, portal.token("farm"), headers=headers), status, kind)


def test_a_custodial_party_may_sign_its_events_itself(portal):  # noqa: F811
    """The envelopes path is open to every party: the server signs only when none come."""
    token = portal.token("farm", key=False)
    portal.accounts.remove_party_key(portal.world.did("farm"))  # the server holds none now
    doc = document(event(704))
    assert "holds no signing key" in problem(capture(portal, token, doc), 403, "SecurityException")
    envelopes = signed(portal.world, "farm", doc)
    job = job_of(portal, token, capture(portal, token, doc | {"provenance:envelopes": envelopes}))
    assert job["success"] is True and job["events"][0]["status"] == "stored"
