"""Each security property of the portal and the API, against a real ledger file:
CSRF, roles, other parties, token scope and revocation, rate limits, sign-in
throttling, session cookies, escaping."""

from __future__ import annotations

import re

import pytest
from support.portal import PASSWORD, csrf_of, make_app
from support.world import GTIN, LOT

from provenance.core import gs1

PAGE = LOT.removeprefix(gs1.DEFAULT_BASE)


# --- CSRF


def test_form_without_csrf_token_is_a_400(portal):
    client = portal.client("farm1")
    response = client.post("/portal/lots/new", data={"gtin": GTIN, "lot": "X1", "product": "Kale"})
    assert response.status_code == 400
    assert "CSRF token" in response.get_data(as_text=True)
    assert portal.world.store.lot_by_uri(gs1.lot_uri(GTIN, "X1")) is None


def test_form_with_a_wrong_csrf_token_is_a_403(portal):
    client = portal.client("farm1")
    form = {"gtin": GTIN, "lot": "X1", "product": "Kale", "csrf_token": "forged"}
    response = client.post("/portal/lots/new", data=form)
    assert response.status_code == 403
    assert "does not match your session" in response.get_data(as_text=True)
    # another user's valid token is no good either (tokens are per session)
    form["csrf_token"] = portal.csrf("packer1")
    assert client.post("/portal/lots/new", data=form).status_code == 403
    assert portal.world.store.lot_by_uri(gs1.lot_uri(GTIN, "X1")) is None


def test_csrf_guards_sign_in_and_sign_out(portal):
    browser = portal.app.test_client()
    response = browser.post("/portal/login", data={"name": "farm1", "password": PASSWORD})
    assert response.status_code == 400  # login CSRF: a form from elsewhere cannot sign you in
    client = portal.client("farm1")
    assert client.post("/portal/logout").status_code == 400
    assert client.get("/portal/").status_code == 200  # still signed in


def test_api_tokens_need_no_csrf_and_cookies_do_not_authenticate_the_api(portal):
    client = portal.client("farm1")  # a signed-in browser…
    response = client.post("/api/v1/lots", json={"gtin": GTIN, "lot": "X1", "product": "Kale"})
    assert response.status_code == 401  # …is not an API client: no cookie ever authorises it
    token = portal.token("farm")
    body = {"gtin": GTIN, "lot": "X1", "product": "Kale"}
    assert portal.api("POST", "/api/v1/lots", token, json=body).status_code == 201


# --- roles and parties


@pytest.mark.parametrize(
    ("user", "url", "words"),
    [
        ("farm1", "/portal/regulator/recall", "only a regulator signs recalls"),
        ("farm1", "/portal/regulator/lift", "only a regulator signs recalls"),
        ("carrier1", "/portal/lots/new", "only producers and processors"),
        ("store1", "/portal/transform", "only producers and processors"),
        ("root", "/portal/regulator/recall", "only a regulator"),
    ],
)
def test_wrong_role_is_a_403_with_a_reason(portal, user, url, words):
    data = {"lot": LOT, "reason": "Listeria", "class": "I", "confirm": "yes"}
    response = portal.post(user, url, data)
    assert response.status_code == 403
    assert words in response.get_data(as_text=True)
    assert not portal.world.store.lot_by_uri(LOT).recalled


@pytest.mark.parametrize(
    ("user", "url"),
    [
        ("farm1", "/portal/regulator/"),
        ("farm1", "/portal/regulator/search?q=kale"),
        ("farm1", "/portal/regulator/integrity"),
        ("farm1", "/portal/regulator/audit"),
        ("farm1", "/portal/admin/"),
        ("reg1", "/portal/admin/"),
        ("root", "/portal/regulator/search?q=kale"),
    ],
)
def test_pages_of_other_roles_are_403(portal, user, url):
    assert portal.client(user).get(url).status_code == 403


def test_a_producer_cannot_act_for_another_party(portal):
    world = portal.world
    lot_id = portal.lot_id(LOT)
    # the packer may not see or ship the farm's lot
    assert portal.client("packer1").get(f"/portal/lots/{lot_id}").status_code == 403
    response = portal.post("packer1", f"/portal/lots/{lot_id}/ship", {"to": world.did("store")})
    assert response.status_code == 403
    assert "was never held by your party" in response.get_data(as_text=True)
    # through the API the ledger's own check answers: not the custodian
    token = portal.token("packer")
    response = portal.api(
        "POST", "/api/v1/shipments", token, json={"batches": [LOT], "to": "store"}
    )
    assert response.status_code == 403
    assert response.json["reason"] == "not-custodian"
    # a shipment to the carrier cannot be received by the store
    shipped = portal.post("farm1", f"/portal/lots/{lot_id}/ship", {"to": world.did("carrier")})
    assert shipped.status_code == 303
    shipment = portal.api("GET", "/api/v1/shipments", portal.token("carrier")).json["incoming"]
    response = portal.post("store1", f"/portal/shipments/{shipment[0]['shipment']}/receive")
    assert response.status_code == 403
    assert "Your party may not do this" in response.get_data(as_text=True)
    assert (
        world.store.lot_by_uri(LOT).custodian == world.store.identity_by_did(world.did("farm")).id
    )


def test_no_form_field_names_the_party(portal):
    """A party field smuggled into a form is ignored: events are signed as the user's party."""
    form = {"gtin": GTIN, "lot": "X2", "product": "Kale", "party": portal.world.did("packer")}
    assert portal.post("farm1", "/portal/lots/new", form).status_code == 303
    lot = portal.world.store.lot_by_uri(gs1.lot_uri(GTIN, "X2"))
    farm = portal.world.store.identity_by_did(portal.world.did("farm"))
    assert lot.commissioned_by == farm.id


def test_tokens_of_another_party_cannot_be_revoked(portal):
    portal.token("packer")
    response = portal.post("farm1", "/portal/tokens/1/revoke")
    assert response.status_code == 403
    assert portal.accounts.token(1).revoked_at is None


# --- API tokens


def test_api_without_a_token_is_a_401_in_json(portal):
    response = portal.api("GET", "/api/v1/me", None)
    assert response.status_code == 401
    assert response.json["reason"] == "no-token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert portal.api("GET", "/api/v1/me", "pvt_" + "x" * 43).json["detail"] == (
        "unknown API token"
    )


def test_revoked_token_is_refused(portal):
    token = portal.token("farm")
    assert portal.api("GET", "/api/v1/me", token).status_code == 200
    portal.accounts.revoke_token(1)
    response = portal.api("GET", "/api/v1/me", token)
    assert response.status_code == 401
    assert "revoked" in response.json["detail"]


def test_token_scope(portal):
    reader = portal.token("farm", scope="read")
    assert portal.api("GET", "/api/v1/lots", reader).status_code == 200
    body = {"gtin": GTIN, "lot": "X1", "product": "Kale"}
    response = portal.api("POST", "/api/v1/lots", reader, json=body)
    assert response.status_code == 403
    assert response.json["reason"] == "scope"
    producer = portal.token("farm")
    for method, url in (("POST", "/api/v1/recalls"), ("GET", "/api/v1/search?q=kale")):
        response = portal.api(method, url, producer, json={"batches": [LOT], "reason": "x"})
        assert response.status_code == 403, url
        assert response.json["reason"] == "role"
    me = portal.api("GET", "/api/v1/me", producer).json
    assert me["party"]["name"] == "farm" and me["role"] == "producer"


# --- rate limits


@pytest.fixture
def strict(file_world, tmp_path):
    limits = {
        "scan": "2/minute burst 2",
        "lookup": "1/minute burst 1",
        "login": "2/minute burst 2",
        "api": "2/minute burst 2",
        "log": "1/minute burst 1",
    }
    return make_app(file_world, tmp_path, RATE_LIMITS=limits)


def test_public_endpoints_are_rate_limited_per_client(strict):
    client = strict.test_client()
    assert [client.get(PAGE).status_code for _ in range(2)] == [200, 200]
    response = client.get(PAGE)
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert "too many scans from your address" in response.get_data(as_text=True)
    as_json = client.get(PAGE, headers={"Accept": "application/json"})
    assert as_json.status_code == 429 and as_json.json["error"] == "too many requests"
    other = strict.test_client()
    assert other.get(PAGE, environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code == 200
    assert client.get("/lookup?gtin=1&lot=2").status_code in (400, 303)
    assert client.get("/").status_code == 429
    assert client.get("/log/v1/checkpoint").status_code == 200
    assert client.get("/log/v1/checkpoint").status_code == 429


def test_sign_in_and_api_are_rate_limited(strict):
    client = strict.test_client()
    token = csrf_of(client.get("/portal/login"))
    form = {"name": "nobody", "password": "wrong password!", "csrf_token": token}
    assert [client.post("/portal/login", data=form).status_code for _ in range(3)] == [
        401,
        401,
        429,
    ]
    api = [client.get("/api/v1/me").status_code for _ in range(3)]
    assert api == [401, 401, 429]
    assert client.get("/api/v1/me").json["reason"] == "rate-limited"


def test_login_throttling_per_account(file_world, tmp_path):
    app = make_app(file_world, tmp_path, RATE_LIMITS={"login": "1000/minute burst 1000"})
    app.extensions["provenance.portal"].accounts.add_user("root", "admin", PASSWORD)
    client = app.test_client()
    token = csrf_of(client.get("/portal/login"))
    wrong = {"name": "root", "password": "wrong password!", "csrf_token": token}
    assert [client.post("/portal/login", data=wrong).status_code for _ in range(5)] == [401] * 5
    right = {**wrong, "password": PASSWORD}
    response = client.post("/portal/login", data=right)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    assert "too many failed sign-ins" in response.get_data(as_text=True)
    file_world.now += 31_000_000
    assert client.post("/portal/login", data=right).status_code == 303


# --- sessions


def _session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if "provenance_session=" in c]
    assert cookies, response.headers
    return cookies[-1]


def test_session_cookie_flags(portal):
    client = portal.app.test_client()
    token = csrf_of(client.get("/portal/login"))
    response = client.post(
        "/portal/login", data={"name": "farm1", "password": PASSWORD, "csrf_token": token}
    )
    cookie = _session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/portal" in cookie
    assert "Secure" not in cookie  # plain HTTP (tests): a Secure cookie would never come back
    secure = portal.app.test_client()
    page = secure.get("/portal/login", base_url="https://portal.example")
    assert "Secure" in _session_cookie(page)


def test_consumer_pages_and_api_set_no_session_cookie(portal):
    client = portal.app.test_client()
    for url in (PAGE, "/", "/log/v1/checkpoint", "/api/v1/me"):
        response = client.get(url)
        assert not [c for c in response.headers.getlist("Set-Cookie") if "session" in c], url


def test_session_id_changes_at_sign_in_and_sign_out_ends_it(portal):
    client = portal.app.test_client()
    page = client.get("/portal/login")
    token, before = csrf_of(page), _session_cookie(page)
    response = client.post(
        "/portal/login", data={"name": "farm1", "password": PASSWORD, "csrf_token": token}
    )
    signed_in = _session_cookie(response)
    assert signed_in != before
    stolen = signed_in.split(";")[0].split("=", 1)[1]
    assert client.get("/portal/").status_code == 200
    out = client.post("/portal/logout", data={"csrf_token": csrf_of(client.get("/portal/"))})
    assert out.status_code == 303
    thief = portal.app.test_client()
    thief.set_cookie("provenance_session", stolen, path="/portal")
    response = thief.get("/portal/")
    assert response.status_code == 302 and "/portal/login" in response.headers["Location"]


def test_disabling_a_user_ends_their_session(portal):
    client = portal.client("farm1")
    assert client.get("/portal/").status_code == 200
    portal.post("root", "/portal/admin/users/farm1/disable")
    assert client.get("/portal/").status_code == 302


def test_sign_in_redirects_only_within_the_portal(portal):
    client = portal.app.test_client()
    for target, expected in (
        ("/portal/shipments", "/portal/shipments"),
        ("https://evil.example/", "/portal/"),
        ("//evil.example/portal/", "/portal/"),
    ):
        page = client.get("/portal/login")
        response = client.post(
            "/portal/login",
            data={
                "name": "farm1",
                "password": PASSWORD,
                "csrf_token": csrf_of(page),
                "next": target,
            },
        )
        assert response.headers["Location"] == expected, target
        client.post("/portal/logout", data={"csrf_token": csrf_of(client.get("/portal/"))})


def test_portal_pages_are_hardened(portal):
    response = portal.client("farm1").get("/portal/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    # Works without JavaScript: the one script is our own, optional time-zone
    # hint (static/tz.js, told the page's zone; without it times show in the
    # server's default zone), nothing inline.
    scripts = re.findall(r"<script[^>]*>", response.get_data(as_text=True))
    assert scripts == ['<script src="/static/tz.js" data-zone="UTC">']


# --- escaping


def test_names_and_products_are_escaped_in_portal_pages(portal):
    world = portal.world
    world.enrol_party("<script>alert('party')</script>", "retailer")
    evil = "<img src=x onerror=alert('product')>Kale"
    form = {"gtin": GTIN, "lot": "XSS1", "product": evil, "origin": "<b>farm</b>"}
    assert portal.post("farm1", "/portal/lots/new", form).status_code == 303
    lot_id = portal.lot_id(gs1.lot_uri(GTIN, "XSS1"))
    pages = [
        portal.client("farm1").get("/portal/").get_data(as_text=True),
        portal.client("farm1").get(f"/portal/lots/{lot_id}").get_data(as_text=True),
        portal.client("reg1").get("/portal/regulator/search?q=Kale").get_data(as_text=True),
        portal.client("reg1").get("/portal/regulator/audit").get_data(as_text=True),
        portal.client("root").get("/portal/admin/").get_data(as_text=True),
    ]
    for page in pages:
        assert "<img src=x" not in page and "<script>alert" not in page and "<b>farm" not in page
    assert "&lt;img src=x onerror=alert(&#39;product&#39;)&gt;Kale" in pages[0]
    assert "&lt;script&gt;alert(&#39;party&#39;)&lt;/script&gt;" in pages[1]  # ship-to list
    # a search for markup is echoed back escaped
    page = portal.client("reg1").get('/portal/regulator/search?q="><script>x</script>')
    assert "<script>x" not in page.get_data(as_text=True)
    assert re.search(r'value="&#34;&gt;&lt;script&gt;x', page.get_data(as_text=True))
