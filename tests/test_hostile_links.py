"""Links to lots whose codes need percent-encoding (issue 9, "links that open a
different lot").

For each hostile lot code: commission the lot (next to sibling lots whose codes
look like a piece of it), render every page, JSON answer and linkset the resolver
and the portal give for it, follow every link to a lot as a browser would (dot
segments removed, RFC 3986 §5.2) with the Flask test client, and check that it
answers for the same lot and for no other.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.portal import Portal, make_app
from support.world import GTIN, LOT, at

from provenance.core import gs1, kinds
from provenance.core.errors import ValidationError

# Lot codes (GS1 CSET 82, at most 20 characters) that must be percent-encoded in a
# path, several of which decode to another lot's path or to a serial if decoded
# once too often (or not at all).
HOSTILE = [
    "A/B",
    "A/21/X",  # decoded: lot A, serial X
    "X/../A",  # decoded and normalised: lot A
    "A/..",
    "../A",
    "%41",  # decoded twice: A
    "A%2FB",  # decoded twice: A/B
    "A%252F",
    "A%",
    '"A"',
    "A?linkType=all",
    "A?lang=zh&text=x",
    "A+B",
    "A&B=C;D",
    "<A>'",
    "A//B",
    "/A",
    "A/",
    "...",
    ".A",
]
# Each test builds every lot: the fast lane (`./run tests --fast`) keeps three codes
# that go wrong in three ways, the full suite all of them.
FAST = {"A/21/X", "X/../A", "%41"}
CODES = [code if code in FAST else pytest.param(code, marks=pytest.mark.slow) for code in HOSTILE]
SIBLINGS = ["A", "B", "X", "A/B/X"]  # what a hostile code decodes to when mishandled
PRODUCT = "Item{:02d}Z"  # unique, none a substring of another


def uri_of(code: str) -> str:
    return gs1.lot_uri(GTIN, code)


@pytest.fixture
def lots(portal: Portal) -> dict[str, str]:
    """Every hostile and sibling lot, commissioned by farm; each hostile lot goes
    into a made-from lot, and is then recalled (so pages link to it as a source)."""
    world = portal.world
    products: dict[str, str] = {}
    for n, code in enumerate(SIBLINGS + HOSTILE):
        uri = uri_of(code)
        products[uri] = PRODUCT.format(n)
        data = {"gtin": GTIN, "lot": code, "product": products[uri]}
        world.ok("farm", "commission", [uri], data, time=at(1))
    for n, code in enumerate(HOSTILE):
        made = uri_of(f"MADE{n}")
        products[made] = f"Made{n:02d}Q"
        one = {"value": 1, "unit": "KGM"}
        data = {
            "inputs": [{"batch": uri_of(code), "quantity": one}],
            "outputs": [{"batch": made, "quantity": one, "product": products[made]}],
        }
        world.ok("farm", "transform", [uri_of(code), made], data, time=at(2))
        world.ok(
            "regulator", "recall", [uri_of(code)], {"reason": "test", "class": "II"}, time=at(3)
        )
    return products


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in [*value.keys(), *value.values()] for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def hrefs(page: str) -> list[str]:
    return [html.unescape(found) for found in re.findall(r'(?:href|action)="([^"]*)"', page)]


def browser_target(base: str, href: str) -> str:
    """What a browser requests for *href* on page *base*: resolved with dot segments
    removed, as path and query."""
    split = urlsplit(urljoin(base, href))
    return split.path + (f"?{split.query}" if split.query else "")


def lot_answered(client, target: str, lots: dict[str, str]) -> str:
    """The one lot that *target* answers for (asking for its JSON form)."""
    response = client.get(target, headers={"Accept": "application/json"})
    assert response.status_code == 200, (target, response.get_data(as_text=True)[:300])
    body = response.get_data(as_text=True)
    if response.mimetype == "application/linkset+json":
        anchor = json.loads(body)["linkset"][0]["anchor"]
        return gs1.lot_uri(*gs1.parse_lot_uri(anchor, require_canonical_base=False))
    document = json.loads(body)
    if isinstance(document, dict) and isinstance(document.get("lot"), str):
        return document["lot"]
    named = {s for s in strings(document) if s in lots}
    assert len(named) >= 1, (target, body[:300])
    return min(named, key=lambda uri: 0 if "/10/MADE" not in uri else 1)


@pytest.mark.parametrize("code", CODES)
def test_every_link_on_a_lot_page_opens_that_lot(portal, lots, code):
    uri = uri_of(code)
    client = portal.app.test_client()
    path = gs1.lot_path(uri)
    base = "http://localhost" + path
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    assert lots[uri] in page.get_data(as_text=True)

    followed = 0
    for href in hrefs(page.get_data(as_text=True)):
        target = browser_target(base, href)
        if not target.startswith(("/01/", "/bundle/01/")):
            continue
        followed += 1
        assert lot_answered(client, target, lots) == uri, (href, target)
        if "lang=" in target or "text=" in target:  # the page itself, switched
            switched = client.get(target)
            assert switched.status_code == 200 and lots[uri] in switched.get_data(as_text=True)
    assert followed >= 5  # language, text size, bundle, linkset, EPCIS


@pytest.mark.parametrize("code", CODES)
def test_every_link_in_the_json_and_linkset_opens_that_lot(portal, lots, code):
    uri = uri_of(code)
    client = portal.app.test_client()
    path = gs1.lot_path(uri)
    body = client.get(path, headers={"Accept": "application/json"}).get_json()
    assert body["lot"] == uri
    made = uri_of(f"MADE{HOSTILE.index(code)}")
    assert [item["batch"] for item in body["used_in"]] == [made]
    for text in strings(body):  # every lot URI the JSON names opens that lot here
        if text.startswith(gs1.DEFAULT_BASE + "/01/"):
            assert lot_answered(client, browser_target("http://localhost/", text), lots) == text

    linkset = client.get(path + "?linkType=all").get_json()["linkset"][0]
    targets = [
        link["href"] for links in linkset.values() if isinstance(links, list) for link in links
    ]
    assert len(targets) >= 5
    for href in [linkset["anchor"], *targets]:
        assert href.startswith("http://localhost/")
        assert lot_answered(client, browser_target(linkset["anchor"], href), lots) == uri, href


@pytest.mark.parametrize("code", CODES)
def test_made_from_a_recalled_lot_links_to_that_lot(portal, lots, code):
    made = uri_of(f"MADE{HOSTILE.index(code)}")
    client = portal.app.test_client()
    path = gs1.lot_path(made)
    page = client.get(path).get_data(as_text=True)
    sources = [h for h in hrefs(page) if h.startswith("/01/") and h != path and "?" not in h]
    assert sources, "the page names the recalled lot it was made from"
    for href in sources:
        assert lot_answered(
            client, browser_target("http://localhost" + path, href), lots
        ) == uri_of(code)


@pytest.mark.parametrize("code", CODES)
def test_portal_links_to_the_lot_open_that_lot(portal, lots, code):
    uri = uri_of(code)
    browser = portal.client("reg1")
    page_path = f"/portal/lots/{portal.lot_id(uri)}"
    page = browser.get(page_path)
    assert page.status_code == 200
    followed = 0
    for href in hrefs(page.get_data(as_text=True)):
        target = browser_target("http://localhost" + page_path, href)
        if target.startswith("/01/"):
            assert lot_answered(portal.app.test_client(), target, lots) == uri
            followed += 1
        elif target.startswith("/portal/regulator/trace"):
            traced = browser.get(target)
            assert traced.status_code == 200
            assert lots[uri] in traced.get_data(as_text=True)
            followed += 1
        elif target.startswith("/portal/regulator/recalls/"):
            report = browser.get(target)
            assert report.status_code == 200 and lots[uri] in report.get_data(as_text=True)
            followed += 1
    assert followed >= 3


def test_the_portal_holds_page_links_to_the_held_lots(portal, lots):
    world = portal.world
    world.keys["rules"] = Ed25519PrivateKey.generate()
    enrol = {"subject": world.did("rules"), "type": "rules", "name": "rules"}
    world.ok("registrar", "enrol", None, enrol)
    held = {uri_of(code) for code in ("A/21/X", "X/../A", "%41", "A%2FB")}
    for uri in held:
        world.ok("rules", "hold", [uri], {"rule": "cold", "reason": "too warm"}, time=at(4))
    flag = {"signal": "counterfeit", "rule": "far", "reason": "KE and DE", "key": "serial:S1"}
    world.ok("rules", "flag", [uri_of("A?linkType=all")], flag, time=at(4))
    page = portal.client("reg1").get("/portal/regulator/holds")
    assert page.status_code == 200
    answered = set()
    for href in hrefs(page.get_data(as_text=True)):
        target = browser_target("http://localhost/portal/regulator/holds", href)
        if target.startswith("/01/"):
            answered.add(lot_answered(portal.app.test_client(), target, lots))
    assert answered == held | {uri_of("A?linkType=all")}


@pytest.mark.parametrize(
    "raw",
    ["A%23B", "A%20B", "%C3%A9", "A%2e%2e", "%2E%2E", "%2E", "A%00B", "A%2"],
)
def test_codes_no_lot_can_have_answer_400_and_their_links_stay_put(portal, lots, raw):
    """Codes outside CSET 82 (or that are dot segments) name no lot: a 400 that
    says why, whose own links (language, text size) lead back to the same answer."""
    client = portal.app.test_client()
    path = f"/01/{GTIN}/10/{raw}"
    response = client.get(path)
    assert response.status_code in (400, 404), response.get_data(as_text=True)[:300]
    for href in hrefs(response.get_data(as_text=True)):
        target = browser_target("http://localhost" + path, href)
        if "lang=" in target:
            assert target.split("?")[0] == path
            again = client.get(target)
            assert again.status_code == response.status_code


@pytest.mark.parametrize("code", [".", ".."])
def test_new_lots_cannot_have_codes_no_link_can_carry(portal, code):
    """A path step '.' or '..' is removed by every client (browsers also remove
    %2E and %2E%2E), so a new lot may not be called so."""
    uri = uri_of(code)
    data = {"gtin": GTIN, "lot": code, "product": "Dots"}
    with pytest.raises(ValidationError, match="cannot be a new lot's code") as refused:
        kinds.validate_data("commission", data, (uri,))
    assert refused.value.field == "data.lot"
    one = {"value": 1, "unit": "KGM"}
    made = {
        "inputs": [{"batch": LOT, "quantity": one}],
        "outputs": [{"batch": uri, "quantity": one}],
    }
    with pytest.raises(ValidationError, match="cannot be a new lot's code") as refused:
        kinds.validate_data("transform", made, (LOT, uri))
    assert refused.value.field == "data.outputs[0].batch"
    response = portal.api("POST", "/api/v1/lots", portal.token("farm"), json=data)
    assert response.status_code == 400 and "data.lot" in response.json["detail"]


def test_an_old_dot_lot_can_still_be_named_and_its_links_open_no_other_lot(
    portal, lots, monkeypatch
):
    uri = uri_of("..")
    with monkeypatch.context() as before_the_rule:
        before_the_rule.setattr(gs1, "require_linkable_lot", lambda lot, field="lot": lot)
        portal.world.ok("farm", "commission", [uri], {"gtin": GTIN, "lot": "..", "product": "Dots"})
    portal.world.ok("regulator", "recall", [uri], {"reason": "test", "class": "II"}, time=at(3))
    page = portal.client("reg1").get(f"/portal/lots/{portal.lot_id(uri)}")
    assert page.status_code == 200
    client = portal.app.test_client()
    for href in hrefs(page.get_data(as_text=True)):
        target = browser_target(f"http://localhost/portal/lots/{portal.lot_id(uri)}", href)
        if target.startswith("/01/"):
            response = client.get(target, headers={"Accept": "application/json"})
            assert response.status_code in (400, 404), (href, target)


def test_links_use_base_url_and_stay_encoded(portal, lots, tmp_path):
    app = make_app(portal.world, tmp_path, BASE_URL="https://scan.example")
    uri = uri_of("A/21/X")
    linkset = app.test_client().get(gs1.lot_path(uri) + "?linkType=all").get_json()
    entry = linkset["linkset"][0]
    assert entry["anchor"] == f"https://scan.example/01/{GTIN}/10/A%2F21%2FX"
    bundle = entry["https://w3id.org/provenance-ledger/rel#proof-bundle"][0]["href"]
    assert bundle == f"https://scan.example/bundle/01/{GTIN}/10/A%2F21%2FX"


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example/x", "/%2F/evil.example"])
def test_a_page_never_links_off_site_from_a_crafted_path(portal, path):
    response = portal.app.test_client().get(path)
    for href in hrefs(response.get_data(as_text=True)):
        if href.startswith("data:"):
            continue
        resolved = urlsplit(urljoin("http://localhost/", href.replace("\\", "/")))
        assert resolved.netloc == "localhost", href


@pytest.mark.parametrize("code", CODES)
def test_the_lookup_form_redirects_to_that_lot(portal, lots, code):
    client = portal.app.test_client()
    response = client.get("/lookup", query_string={"gtin": GTIN, "lot": code})
    assert response.status_code == 303
    target = browser_target("http://localhost/lookup", response.headers["Location"])
    assert lot_answered(client, target, lots) == uri_of(code)
