"""Named queries and subscriptions of the EPCIS REST binding
(provenance/web/epcis_named.py, epcis_deliveries.py), recordTime, WD_ and the
quantity parameters: stored per party, answered within what it may read,
delivered to a local webhook (loopback only, allowed by the test's setting),
HMAC-signed, retried, and every refusal a problem."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from support.portal import Portal, make_app
from support.world import HOUR, LOT, T0, at

from provenance.exchange.epcis_query import parse_query
from provenance.web import epcis_deliveries as deliveries
from provenance.web.epcis_named import deliver_due

SECRET = "a-shared-secret-of-the-subscriber"


@pytest.fixture
def site(file_world, tmp_path) -> Portal:
    """The portal with private (loopback) webhook destinations allowed, as a
    closed network's operator may; the delivery worker is driven by the test."""
    app = make_app(
        file_world, tmp_path, EPCIS_PRIVATE_DESTINATIONS=True, EPCIS_DELIVERY_THREAD=False
    )
    found = Portal(file_world, app, tmp_path)
    file_world.ship_and_receive("farm", "store", [LOT], 5)
    return found


def problem(response, status: int, kind: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == f"epcisException:{kind}"
    return response.json["detail"]


def post_json(site: Portal, url: str, token: str | None, body: Any):
    return site.api(
        "POST",
        url,
        token,
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )


def events_of(response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"]


# --- named queries


def test_a_named_query_is_saved_answered_and_deleted(site):
    token = site.token("farm")
    body = {"name": "shipped", "query": {"EQ_bizStep": ["shipping"], "eventType": ["ObjectEvent"]}}
    created = post_json(site, "/epcis/queries", token, body)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.headers["Location"] == "/epcis/queries/shipped"
    assert site.api("GET", "/epcis/queries", token).json == [body]
    assert site.api("GET", "/epcis/queries/shipped", token).json == body
    answer = events_of(site.api("GET", "/epcis/queries/shipped/events", token))
    assert answer and {e["bizStep"] for e in answer} == {"shipping"}
    again = events_of(
        site.api("GET", "/epcis/events?EQ_bizStep=shipping&eventType=ObjectEvent", token)
    )
    assert [e["eventID"] for e in answer] == [e["eventID"] for e in again]
    problem(post_json(site, "/epcis/queries", token, body), 409, "ResourceAlreadyExistsException")
    # Another party neither sees nor answers it.
    other = site.token("store")
    assert site.api("GET", "/epcis/queries", other).json == []
    problem(site.api("GET", "/epcis/queries/shipped/events", other), 404, "NoSuchNameException")
    assert site.api("DELETE", "/epcis/queries/shipped", token).status_code == 204
    problem(site.api("GET", "/epcis/queries/shipped", token), 404, "NoSuchNameException")
    problem(site.api("DELETE", "/epcis/queries/shipped", token), 404, "NoSuchNameException")


def test_named_query_pages_with_the_same_tokens(site):
    token = site.token("regulator")
    post_json(site, "/epcis/queries", token, {"name": "all", "query": {"orderDirection": "ASC"}})
    first = site.api("GET", "/epcis/queries/all/events?perPage=1", token)
    assert len(events_of(first)) == 1
    link = first.headers["Link"]
    assert "nextPageToken=" in link
    token_value = link.split("nextPageToken=")[1].split(">")[0]
    second = site.api(
        "GET", f"/epcis/queries/all/events?perPage=1&nextPageToken={token_value}", token
    )
    assert events_of(second)[0]["eventID"] != events_of(first)[0]["eventID"]
    problem(
        site.api("GET", "/epcis/queries/all/events?EQ_bizStep=shipping", token),
        400,
        "QueryParameterException",
    )


@pytest.mark.parametrize(
    ("body", "status", "kind", "words"),
    [
        (
            {"name": "a b", "query": {"EQ_bizStep": ["shipping"]}},
            400,
            "ValidationException",
            "name",
        ),
        (
            {"name": "x" * 65, "query": {"EQ_bizStep": ["shipping"]}},
            400,
            "ValidationException",
            "name",
        ),
        (
            {"name": "q", "query": {"EQ_colour": ["red"]}},
            400,
            "QueryParameterException",
            "EQ_colour",
        ),
        ({"name": "q", "query": {}}, 400, "QueryParameterException", "non-empty"),
        (
            {"name": "q", "query": {"EQ_bizStep": [{"x": 1}]}},
            400,
            "QueryParameterException",
            "strings",
        ),
        (
            {"name": "q", "query": {"nextPageToken": "abc"}},
            400,
            "QueryParameterException",
            "no place",
        ),
        (
            {"name": "q", "query": {"EQ_bizStep": ["s"] * 101}},
            400,
            "QueryParameterException",
            "1 to",
        ),
        (
            {"name": "q", "query": {"GE_eventTime": "soon"}},
            400,
            "QueryParameterException",
            "RFC 3339",
        ),
        (
            {"name": "q", "query": {"eventType": ["X"]}, "extra": 1},
            400,
            "ValidationException",
            "extra",
        ),
        ([1, 2], 400, "ValidationException", "object"),
    ],
)
def test_named_query_refusals(site, body, status, kind, words):
    detail = problem(post_json(site, "/epcis/queries", site.token("farm"), body), status, kind)
    assert words in detail
    assert site.api("GET", "/epcis/queries", site.token("farm")).json == []


def test_named_query_media_type_size_and_token(site):
    token = site.token("farm")
    response = site.api(
        "POST", "/epcis/queries", token, data="{}", headers={"Content-Type": "text/plain"}
    )
    problem(response, 415, "UnsupportedMediaTypeException")
    huge = {"name": "q", "query": {"EQ_bizStep": ["x" * 70_000]}}
    problem(post_json(site, "/epcis/queries", token, huge), 413, "QueryTooLargeException")
    problem(post_json(site, "/epcis/queries", None, {"name": "q"}), 401, "SecurityException")


# --- recordTime, WD_, quantities


def test_record_time_is_when_the_ledger_appended_the_event(site):
    world = site.world
    token = site.token("regulator")
    before = world.store.log_size()
    world.now += HOUR  # appended an hour after the rest
    world.ok(
        "farm",
        "commission",
        [LOT.replace("LOT42", "LATE-1")],
        {"gtin": LOT.split("/")[4], "lot": "LATE-1", "product": "Kale"},
        time=at(8),
    )
    cut = datetime.fromtimestamp((world.now - 1) / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    late = events_of(site.api("GET", f"/epcis/events?GE_recordTime={cut}", token))
    assert [e["provenance:eventId"] for e in late] == [
        world.store.event_at(before).envelope.event_id
    ]
    early = events_of(site.api("GET", f"/epcis/events?LT_recordTime={cut}&perPage=1000", token))
    assert len(early) > 1 and all(
        e["provenance:eventId"] != late[0]["provenance:eventId"] for e in early
    )


def test_events_from_before_record_times_were_kept_match_no_record_time_filter(site):
    site.world.store.conn.execute("DELETE FROM record_times")
    site.world.store.conn.commit()
    token = site.token("regulator")
    assert (
        events_of(site.api("GET", "/epcis/events?GE_recordTime=2000-01-01T00:00:00Z", token)) == []
    )
    assert events_of(site.api("GET", "/epcis/events", token))  # the rest still answers


def test_wd_is_eq_without_a_location_hierarchy_and_quantities_filter():
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-01-01T00:00:00Z",
        "readPoint": {"id": "urn:epc:id:sgln:9506000.00001.0"},
        "quantityList": [{"epcClass": LOT, "quantity": 12.5, "uom": "KGM"}],
    }
    assert parse_query({"WD_readPoint": ["urn:epc:id:sgln:9506000.00001.0"]}).matches(event)
    assert not parse_query({"WD_readPoint": ["urn:epc:id:sgln:9506000.00002.0"]}).matches(event)
    both = parse_query(
        {
            "WD_readPoint": ["urn:epc:id:sgln:9506000.00001.0"],
            "EQ_readPoint": ["urn:epc:id:sgln:9506000.00002.0"],
        }
    )
    assert not both.matches(event)  # both must hold
    assert parse_query({"GE_quantity_KGM": ["12"], "LT_quantity_KGM": ["13"]}).matches(event)
    assert not parse_query({"GT_quantity_KGM": ["12.5"]}).matches(event)
    assert not parse_query({"EQ_quantity_LTR": ["12.5"]}).matches(event)  # another unit
    assert not parse_query({"EQ_quantity": ["12.5"]}).matches(event)  # a count has no unit
    counted = {**event, "quantityList": [{"epcClass": LOT, "quantity": 3}]}
    assert parse_query({"EQ_quantity": ["3"]}).matches(counted)


# --- subscriptions


class Receiver:
    """A webhook on 127.0.0.1 that records what it is sent; answers *status*."""

    def __init__(self) -> None:
        self.got: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        self.status = 200
        self.location = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length", "0")), 8 * 1024 * 1024)
                outer.got.put((dict(self.headers), self.rfile.read(length)))
                self.send_response(outer.status)
                if outer.location:
                    self.send_header("Location", outer.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def next(self) -> tuple[dict[str, str], bytes]:
        return self.got.get(timeout=10)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def subscribe(site: Portal, token: str, body: dict[str, Any], name: str = "shipped"):
    if site.api("GET", f"/epcis/queries/{name}", token).status_code == 404:
        created = post_json(
            site, "/epcis/queries", token, {"name": name, "query": {"EQ_bizStep": ["shipping"]}}
        )
        assert created.status_code == 201
    return post_json(site, f"/epcis/queries/{name}/subscriptions", token, body)


def test_a_stream_subscription_gets_new_matching_events_signed(site, receiver):
    token = site.token("farm")
    created = subscribe(
        site, token, {"dest": receiver.url, "signatureToken": SECRET, "stream": True}
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    sub = created.json
    assert "signatureToken" not in sub and SECRET not in created.get_data(as_text=True)
    assert (
        created.headers["Location"]
        == f"/epcis/queries/shipped/subscriptions/{sub['subscriptionID']}"
    )
    deliver_due(site.app)
    assert receiver.got.empty()  # nothing new since it subscribed
    world = site.world
    world.ship_and_receive("store", "farm", [LOT], 9)
    deliver_due(site.app)
    headers, body = receiver.next()
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["GS1-Signature"] == expected
    document = json.loads(body)
    assert document["type"] == "EPCISQueryDocument"
    results = document["epcisBody"]["queryResults"]
    assert results["subscriptionID"] == sub["subscriptionID"]
    assert [e["bizStep"] for e in results["resultsBody"]["eventList"]] == ["shipping"]
    deliver_due(site.app)
    assert receiver.got.empty()  # delivered once
    listed = site.api("GET", "/epcis/queries/shipped/subscriptions", token).json
    assert [s["subscriptionID"] for s in listed] == [sub["subscriptionID"]]
    gone = site.api(
        "DELETE", f"/epcis/queries/shipped/subscriptions/{sub['subscriptionID']}", token
    )
    assert gone.status_code == 204
    world.ship_and_receive("farm", "store", [LOT], 11)
    deliver_due(site.app)
    assert receiver.got.empty()


def test_a_failed_delivery_is_retried_later_and_says_why(site, receiver):
    token = site.token("farm")
    sub = subscribe(
        site, token, {"dest": receiver.url, "signatureToken": SECRET, "stream": True}
    ).json
    receiver.status = 500
    world = site.world
    world.ship_and_receive("store", "farm", [LOT], 9)
    deliver_due(site.app)
    receiver.next()
    shown = site.api(
        "GET", f"/epcis/queries/shipped/subscriptions/{sub['subscriptionID']}", token
    ).json
    assert "500" in shown["lastError"]
    deliver_due(site.app)
    assert receiver.got.empty()  # not before its retry time
    receiver.status = 200
    world.now += deliveries.retry_delay_us(0) + 1
    deliver_due(site.app)
    _, body = receiver.next()  # the same events again
    assert [
        e["bizStep"]
        for e in json.loads(body)["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    ] == ["shipping"]
    shown = site.api(
        "GET", f"/epcis/queries/shipped/subscriptions/{sub['subscriptionID']}", token
    ).json
    assert "lastError" not in shown


def test_a_revoked_tokens_subscription_stops_and_a_party_reads_only_its_lots(site, receiver):
    token = site.token("packer")  # never held LOT
    subscribe(site, token, {"dest": receiver.url, "signatureToken": SECRET, "stream": True})
    world = site.world
    world.ship_and_receive("store", "farm", [LOT], 9)
    deliver_due(site.app)
    assert receiver.got.empty()  # nothing it may read
    farm = site.token("farm")
    subscribe(site, farm, {"dest": receiver.url, "signatureToken": SECRET, "stream": True})
    for found in site.accounts.tokens():
        site.accounts.revoke_token(found.id)
    world.ship_and_receive("farm", "store", [LOT], 11)
    deliver_due(site.app)
    assert receiver.got.empty()


def test_a_scheduled_subscription_reports_at_its_time(site, receiver):
    token = site.token("farm")
    body = {
        "dest": receiver.url,
        "signatureToken": SECRET,
        "schedule": {"minute": "0"},
        "reportIfEmpty": True,
    }
    created = subscribe(site, token, body)
    assert created.status_code == 201, created.get_data(as_text=True)
    deliver_due(site.app)
    assert receiver.got.empty()  # not yet the hour
    site.world.now += HOUR
    deliver_due(site.app)
    _, sent = receiver.next()
    assert json.loads(sent)["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"dest": "ftp://127.0.0.1/x", "signatureToken": SECRET, "stream": True}, "http or https"),
        ({"dest": "file:///etc/passwd", "signatureToken": SECRET, "stream": True}, "http or https"),
        ({"dest": "http://u:p@127.0.0.1/x", "signatureToken": SECRET, "stream": True}, "password"),
        ({"dest": "http:///x", "signatureToken": SECRET, "stream": True}, "no host"),
        (
            {"dest": "http://no-such-host.invalid/x", "signatureToken": SECRET, "stream": True},
            "resolve",
        ),
        ({"dest": 5, "signatureToken": SECRET, "stream": True}, "http(s) URL"),
        ({"dest": "http://127.0.0.1/x", "stream": True}, "signatureToken"),
        (
            {"dest": "http://127.0.0.1/x", "signatureToken": "short", "stream": True},
            "signatureToken",
        ),
        ({"dest": "http://127.0.0.1/x", "signatureToken": SECRET}, "either"),
        (
            {
                "dest": "http://127.0.0.1/x",
                "signatureToken": SECRET,
                "stream": True,
                "schedule": {"minute": "1"},
            },
            "either",
        ),
        (
            {"dest": "http://127.0.0.1/x", "signatureToken": SECRET, "schedule": {"minute": "61"}},
            "outside",
        ),
        (
            {"dest": "http://127.0.0.1/x", "signatureToken": SECRET, "schedule": {"minute": "*"}},
            "not a number",
        ),
        (
            {
                "dest": "http://127.0.0.1/x",
                "signatureToken": SECRET,
                "schedule": {"hour": "1", "second": "30"},
            },
            "whole minutes",
        ),
        (
            {
                "dest": "http://127.0.0.1/x",
                "signatureToken": SECRET,
                "schedule": {"dayOfMonth": "31", "month": "2"},
            },
            "no time",
        ),
        (
            {"dest": "http://127.0.0.1/x", "signatureToken": SECRET, "schedule": {"weekday": "1"}},
            "not one of",
        ),
        (
            {
                "dest": "http://127.0.0.1/x",
                "signatureToken": SECRET,
                "stream": True,
                "reportIfEmpty": "yes",
            },
            "reportIfEmpty",
        ),
        (
            {"dest": "http://127.0.0.1/x", "signatureToken": SECRET, "stream": True, "extra": 1},
            "unknown",
        ),
    ],
)
def test_subscription_refusals(site, body, words):
    token = site.token("farm")
    detail = problem(subscribe(site, token, body), 400, "ValidationException")
    assert words in detail
    assert site.api("GET", "/epcis/queries/shipped/subscriptions", token).json == []


def test_private_destinations_are_refused_unless_the_operator_allows_them(file_world, tmp_path):
    app = make_app(file_world, tmp_path)  # the default: public destinations only
    site = Portal(file_world, app, tmp_path)
    token = site.token("farm")
    for dest in (
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "https://192.168.0.1/x",
        "http://172.16.5.5/x",
        "http://0.0.0.0/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fd00::1]/x",
        "http://224.0.0.1/x",
    ):
        detail = problem(
            subscribe(site, token, {"dest": dest, "signatureToken": SECRET, "stream": True}),
            400,
            "ValidationException",
        )
        assert "private, loopback or reserved" in detail
    with pytest.raises(deliveries.DestinationRefused):  # and again at delivery time
        deliveries.post("http://127.0.0.1:9/x", b"{}", {}, allow_private=False)
    missing = post_json(site, "/epcis/queries/missing/subscriptions", token, {"stream": True})
    problem(missing, 404, "NoSuchNameException")


def test_schedules_name_the_next_whole_minute():
    start = int(datetime(2026, 12, 6, 10, 30, 20, tzinfo=UTC).timestamp() * 1e6)

    def due(schedule: dict[str, str]) -> str:
        found = deliveries.next_due(deliveries.parse_schedule(schedule), start)
        assert found is not None
        return datetime.fromtimestamp(found / 1e6, UTC).strftime("%Y-%m-%d %H:%M")

    assert due({"hour": "1", "minute": "5"}) == "2026-12-07 01:05"
    assert due({"minute": "0,45"}) == "2026-12-06 10:45"
    assert due({"minute": "[31-33]"}) == "2026-12-06 10:31"
    assert due({"dayOfWeek": "1", "hour": "0", "minute": "0"}) == "2026-12-07 00:00"  # a Monday
    assert due({"month": "1", "dayOfMonth": "1", "hour": "0", "minute": "0"}) == "2027-01-01 00:00"
    assert T0  # the world's clock is elsewhere; schedules are pure


def test_the_worker_thread_delivers_when_a_capture_wakes_it(file_world, tmp_path, receiver):
    """The app's own thread (no test driving it): a capture wakes it at once."""
    app = make_app(file_world, tmp_path, EPCIS_PRIVATE_DESTINATIONS=True, EPCIS_POLL_SECONDS=3600)
    site = Portal(file_world, app, tmp_path)
    token = site.token("farm")
    body = {"dest": receiver.url, "signatureToken": SECRET, "stream": True}
    assert subscribe(site, token, body, name="received").status_code == 201
    post_json(site, "/epcis/queries", token, {"name": "r", "query": {"EQ_bizStep": ["receiving"]}})
    assert subscribe(site, token, body, name="r").status_code == 201
    event = {
        "type": "ObjectEvent",
        "eventTime": at(700),
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "bizStep": "receiving",
        "quantityList": [{"epcClass": LOT, "quantity": 1, "uom": "KGM"}],
    }
    document = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-10-01T00:00:00Z",
        "epcisBody": {"eventList": [event]},
    }
    captured = site.api(
        "POST",
        "/epcis/capture",
        token,
        data=json.dumps(document),
        headers={"Content-Type": "application/ld+json"},
    )
    assert captured.status_code == 202
    _, sent = receiver.next()  # waits (bounded) for the thread, which the capture woke
    events = json.loads(sent)["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert [e["bizStep"] for e in events] == ["receiving"]
    app.extensions["provenance.epcis_deliveries"].stop()


def test_initial_record_time_sends_what_was_recorded_since(site, receiver):
    token = site.token("farm")
    body = {
        "dest": receiver.url,
        "signatureToken": SECRET,
        "stream": True,
        "initialRecordTime": "2000-01-01T00:00:00Z",
    }
    assert subscribe(site, token, body).status_code == 201
    site.world.ship_and_receive("store", "farm", [LOT], 9)  # the log grew: a delivery is due
    deliver_due(site.app)
    _, sent = receiver.next()
    events = json.loads(sent)["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert len(events) == 2  # the ship at hour 5 (recorded before it subscribed) and at 9
    bad = dict(body, initialRecordTime="soon")
    assert "initialRecordTime" in problem(subscribe(site, token, bad), 400, "ValidationException")


@pytest.mark.shared
def test_every_epcis_route_is_one_of_the_bindings_paths(site):
    """Each route under /epcis (capture, queries, subscriptions and the read
    side) is a path of GS1's openapi.yaml, with a method it declares."""
    from support.epcis_openapi import offline_binding
    from support.paths import SHARED

    spec = offline_binding(SHARED / "gs1-epcis" / "rest")
    declared = {path: {m.upper() for m in spec["paths"][path]} for path in spec["paths"]}
    ours = 0
    for rule in site.app.url_map.iter_rules():
        if not rule.rule.startswith("/epcis/"):
            continue
        path = rule.rule.removeprefix("/epcis")
        choices = [path]
        if "<any(" in path:  # one route for several of the binding's paths
            start = path.index("<any(")
            end = path.index(">", start)
            names = path[start + 5 : path.index(")", start)].split(", ")
            choices = [path[:start] + name + path[end + 1 :] for name in names]
        for choice in choices:
            while "<" in choice:
                start = choice.index("<")
                choice = choice[:start] + "{x}" + choice[choice.index(">", start) + 1 :]
            shapes = [
                p
                for p in declared
                if [s if not s.startswith("{") else "{x}" for s in p.split("/")]
                == choice.split("/")
            ]
            assert shapes, f"{rule.rule} ({choice}) is not a path of the binding"
            methods = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
            assert any(methods <= declared[p] for p in shapes), (rule.rule, methods)
            ours += 1
    assert ours >= 20


def test_a_redirect_is_not_followed(site, receiver):
    """A webhook that answers 302 elsewhere (e.g. to an internal service) is a
    failed delivery; the server never goes where it points."""
    target = Receiver()
    try:
        token = site.token("farm")
        body = {"dest": receiver.url, "signatureToken": SECRET, "stream": True}
        sub = subscribe(site, token, body).json
        receiver.status, receiver.location = 302, target.url
        site.world.ship_and_receive("store", "farm", [LOT], 9)
        deliver_due(site.app)
        receiver.next()
        shown = site.api(
            "GET", f"/epcis/queries/shipped/subscriptions/{sub['subscriptionID']}", token
        ).json
        assert "302" in shown["lastError"]
        assert target.got.empty()
    finally:
        target.close()


def test_a_server_that_cannot_write_refuses_a_capture_before_any_job(file_world, tmp_path):
    app = make_app(file_world, tmp_path)
    (tmp_path / "keys" / "log.pem").unlink()  # no log key: the portal only reads
    site = Portal(file_world, app, tmp_path)
    response = site.api(
        "POST",
        "/epcis/capture",
        site.token("farm"),
        data="{}",
        headers={"Content-Type": "application/ld+json"},
    )
    assert problem(response, 503, "ImplementationException")
    assert site.accounts.capture_jobs(file_world.did("farm"), limit=5, offset=0) == []
