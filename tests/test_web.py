"""The resolver, the consumer page and the transparency endpoints through
Flask's test client, against a real ledger file."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import time

import pytest
from support.world import GTIN, LOT, at

from provenance.core import gs1
from provenance.core.bundle import verify_bundle
from provenance.core.checkpoint import open_checkpoint
from provenance.core.merkle import verify_consistency, verify_inclusion
from provenance.web import create_app

PATH = LOT.removeprefix(gs1.DEFAULT_BASE)


@pytest.fixture
def world(file_world):
    file_world.ledger.append(
        [file_world.reading(1 + k / 4, 3.0) for k in range(40)]  # 10 h in range
    )
    file_world.ok("farm", "detach", [LOT], {"device": file_world.did("probe")}, time=at(12))
    return file_world


@pytest.fixture
def app(world):
    return create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
            "TESTING": True,
        }
    )


@pytest.fixture
def client(app):
    return app.test_client()


def text_of(response) -> str:
    body = response.get_data(as_text=True)
    body = body.split("<main>", 1)[-1].split("</main>", 1)[0]  # what a reader sees
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


# --- the page


def test_page_shows_the_lot_and_says_all_good(client):
    response = client.get(PATH)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    text = text_of(response)
    assert "All good" in text
    assert "Kale" in text and "LOT42" in text and GTIN in text
    assert "Produced by farm" in text
    assert "40 readings" in text
    assert "Chain of records intact" in text
    assert "43 of 43 signatures valid" in text
    assert "<svg" in response.get_data(as_text=True)


def test_recall_shows_first_at_once(world, client):
    assert "RECALLED" not in text_of(client.get(PATH))
    data = {"reason": "Listeria found", "class": "I", "instructions": "Return to store"}
    world.ok("regulator", "recall", [LOT], data, time=at(20))
    text = text_of(client.get(PATH))
    assert text.index("RECALLED") < text.index("Kale")
    assert "Listeria found" in text and "Return to store" in text
    assert "a serious health risk" in text


def test_producer_text_is_escaped(world, client):
    evil = "https://id.gs1.org/01/09506000134352/10/EVIL"
    world.enrol_party("<img src=x onerror=alert(1)>", "producer")
    world.ok(
        "<img src=x onerror=alert(1)>",
        "commission",
        [evil],
        {"gtin": GTIN, "lot": "EVIL", "product": "<script>alert('x')</script>Kale"},
        time=at(0),
    )
    body = client.get(evil.removeprefix(gs1.DEFAULT_BASE)).get_data(as_text=True)
    assert "<script>alert" not in body
    assert "<img src=x" not in body
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;Kale" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_bad_check_digit_is_a_400_that_says_so(client):
    response = client.get(f"/01/{GTIN[:-1]}3/10/LOT42")
    assert response.status_code == 400
    assert "check digit" in text_of(response)
    as_json = client.get(f"/01/{GTIN[:-1]}3/10/LOT42", headers={"Accept": "application/json"})
    assert as_json.status_code == 400
    assert "check digit is 3, expected 2" in as_json.get_json()["detail"]


def test_unknown_lot_is_a_friendly_404(client):
    response = client.get(f"/01/{GTIN}/10/NOPE")
    assert response.status_code == 404
    assert "We could not find this product" in text_of(response)
    assert '<form class="lookup"' in response.get_data(as_text=True)


def test_serial_without_lot_explains_what_is_missing(client):
    response = client.get(f"/01/{GTIN}/21/SERIAL1", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert "item serial SERIAL1" in response.get_json()["detail"]
    assert "AI 10" in response.get_json()["detail"]


def test_lot_with_serial_and_label_expiry(client):
    response = client.get(f"{PATH}/21/SER9?17=261231")
    assert response.status_code == 200
    text = text_of(response)
    assert "item SER9" in text
    assert "The label says it expires on 2026-12-31" in text


def test_percent_encoded_lot(world, client):
    uri = gs1.lot_uri(GTIN, "A/B+1")
    world.ok("farm", "commission", [uri], {"gtin": GTIN, "lot": "A/B+1", "product": "Beans"})
    response = client.get(uri.removeprefix(gs1.DEFAULT_BASE))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert "A/B+1" in text_of(response)


def test_lookup_form_redirects_to_the_lot(client):
    response = client.get(f"/lookup?gtin={GTIN}&lot=LOT42")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(PATH)
    assert client.get("/lookup?gtin=&lot=").status_code == 400


# --- negotiation


def test_json_twin(client):
    body = client.get(PATH, headers={"Accept": "application/json"}).get_json()
    assert body["lot"] == LOT
    assert body["state"] == "ok"
    assert body["integrity"]["verified"] is True
    assert [step["kind"] for step in body["custody"]] == ["commission", "attach", "detach"]
    assert body["legs"][0]["readings"] == 40


def test_recall_status(world, client):
    url = f"{PATH}?linkType=gs1:recallStatus"
    assert client.get(url).get_json()["recalled"] is False
    world.ok("regulator", "recall", [LOT], {"reason": "glass", "class": "II"}, time=at(20))
    body = client.get(url).get_json()
    assert body["recalled"] is True
    assert [(r["reason"], r["class"], r["direct"]) for r in body["recalls"]] == [
        ("glass", "II", True)
    ]


def test_cascaded_recall_names_the_ingredient(world, client):
    mix = f"https://id.gs1.org/01/{GTIN}/10/MIX1"
    quantity = {"value": 1, "unit": "KGM"}
    world.ok(
        "farm",
        "transform",
        [LOT, mix],
        {
            "inputs": [{"batch": LOT, "quantity": quantity}],
            "outputs": [{"batch": mix, "quantity": quantity, "product": "Kale mix"}],
        },
        time=at(13),
    )
    world.ok("regulator", "recall", [LOT], {"reason": "Listeria", "class": "I"}, time=at(20))
    response = client.get(mix.removeprefix(gs1.DEFAULT_BASE))
    text = text_of(response)
    assert "RECALLED" in text and "Listeria" in text
    assert "It was made from a recalled lot: LOT42" in text
    assert f'href="{PATH}"' in response.get_data(as_text=True)


def test_linkset(client):
    for response in (
        client.get(f"{PATH}?linkType=all"),
        client.get(PATH, headers={"Accept": "application/linkset+json"}),
    ):
        assert response.mimetype == "application/linkset+json"
        entry = response.get_json()["linkset"][0]
        assert entry["anchor"] == f"http://localhost{PATH}"
        assert entry["https://gs1.org/voc/pip"][0]["href"] == f"http://localhost{PATH}"
        traceability = entry["https://gs1.org/voc/traceability"][0]
        assert traceability["href"].endswith("?linkType=gs1:traceability")
        assert "https://gs1.org/voc/recallStatus" in entry
        assert "https://gs1.org/voc/defaultLink" in entry


def test_base_url_is_used_in_links(world):
    app = create_app({"DATABASE": str(world.store.path), "BASE_URL": "https://id.example.com"})
    entry = app.test_client().get(f"{PATH}?linkType=all").get_json()["linkset"][0]
    assert entry["anchor"] == f"https://id.example.com{PATH}"


def test_unknown_link_type_is_a_404_listing_the_known(client):
    response = client.get(f"{PATH}?linkType=gs1:smpc", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert "gs1:recallStatus" in response.get_json()["detail"]


def test_traceability_is_epcis(client):
    response = client.get(f"{PATH}?linkType=gs1:traceability")
    assert response.status_code == 200
    assert response.mimetype == "application/ld+json"
    document = response.get_json()
    assert document["type"] == "EPCISDocument"
    assert document["epcisBody"]["eventList"]


# --- languages and reading preferences


def test_chinese_from_accept_language_and_switch(client):
    response = client.get(PATH, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert '<html lang="zh-CN"' in response.get_data(as_text=True)
    assert "一切正常" in text_of(response)
    english = client.get(f"{PATH}?lang=en", headers={"Accept-Language": "zh-CN"})
    assert "All good" in text_of(english)
    assert "lang=en" in english.headers["Set-Cookie"]
    remembered = client.get(PATH, headers={"Accept-Language": "zh-CN"})
    assert "All good" in text_of(remembered)  # the cookie wins over the header


def test_times_in_the_readers_zone_and_language(client):
    """The scan page says its moments as the portal does (wording.moment): in the
    zone from ?tz= or the tz cookie (else UTC, said as such), in the page's
    language; the zone is part of the page cache's key, so one reader's zone is
    never served to another."""
    page = client.get(f"{PATH}?lang=en").get_data(as_text=True)
    assert "Times are shown in UTC." in re.sub(r"<[^>]+>", "", page.split("<footer>", 1)[1])
    utc = text_of(client.get(f"{PATH}?lang=en"))
    assert "21 Sep 2026, 14:13" in utc and "2026-09-21 14:13 UTC" not in utc
    shanghai = client.get(f"{PATH}?lang=zh&tz=Asia/Shanghai")
    assert "2026年9月21日 22:13" in text_of(shanghai)
    assert "tz=Asia/Shanghai" in shanghai.headers["Set-Cookie"]
    assert "Asia/Shanghai" in shanghai.get_data(as_text=True).split("<footer>", 1)[1]
    remembered = text_of(client.get(f"{PATH}?lang=en"))  # the cookie now
    assert "21 Sep 2026, 22:13" in remembered
    new_york = text_of(client.get(f"{PATH}?lang=en&tz=America/New_York"))
    assert "21 Sep 2026, 10:13" in new_york
    ignored = text_of(client.get(f"{PATH}?lang=en&tz=Nowhere/Else"))  # not a zone
    assert "21 Sep 2026, 10:13" in ignored


def test_every_time_says_its_instant_and_utc_on_hover(client):
    """Each time on the page is a <time> with the instant (datetime) and the UTC
    time as its title, shown in the reader's zone, for static/tz.js to rewrite."""
    page = client.get(f"{PATH}?lang=en&tz=Asia/Shanghai").get_data(as_text=True)
    main = page.split("<main>", 1)[1].split("</main>", 1)[0]
    times = re.findall(r"<time ([^>]*)>([^<]*)</time>", main)
    assert times
    for attributes, text in times:
        instant = re.search(r'datetime="([^"]+)"', attributes).group(1)
        title = re.search(r'title="([^"]+)"', attributes).group(1)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", instant)
        assert title == f"{instant[:10]} {instant[11:16]} UTC"
        assert 'data-local="plain"' in attributes and text
    assert '<time datetime="2026-09-21T14:13' in main  # the commission, 22:13 in Shanghai
    assert "21 Sep 2026, 22:13</time>" in main


def test_a_configured_default_zone_for_readers_without_one(world):
    """No ?tz= and no cookie (no JavaScript yet): the app's DEFAULT_TZ; a reader's
    own choice still wins. A zone the machine does not know stops the app at start."""
    app = create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
            "DEFAULT_TZ": "Asia/Shanghai",
        }
    )
    client = app.test_client()
    page = client.get(f"{PATH}?lang=zh")
    assert "2026年9月21日 22:13" in text_of(page)
    assert 'data-zone="Asia/Shanghai"' in page.get_data(as_text=True)
    assert "tz=" not in page.headers.get("Set-Cookie", "")  # a default is not remembered
    assert "21 Sep 2026, 14:13" in text_of(client.get(f"{PATH}?lang=en&tz=UTC"))
    with pytest.raises(ValueError, match="Asia/Shanghai, Europe/Berlin or UTC"):
        create_app({"DATABASE": str(world.store.path), "DEFAULT_TZ": "Mars/Olympus"})


def test_the_charts_time_axis_is_in_the_readers_zone(client):
    """The chart beside the text says its times in the same zone: its axis is
    labelled with the reader's zone (not UTC while the text says Shanghai), and
    each zone gets its own cached chart."""

    def axis(url: str) -> str:
        page = client.get(url).get_data(as_text=True)
        charts = re.findall(r'<g class="tick" text-anchor="middle".*?</g>', page, flags=re.S)
        assert charts, "no chart on the page"
        return charts[0]

    assert ">UTC<" in axis(f"{PATH}?lang=en&tz=UTC")
    shanghai = axis(f"{PATH}?lang=en&tz=Asia/Shanghai")
    assert ">Asia/Shanghai<" in shanghai and ">UTC<" not in shanghai
    assert ">UTC<" in axis(f"{PATH}?lang=en&tz=UTC")  # not the cached Shanghai chart


def test_large_text_mode_without_javascript(client):
    body = client.get(PATH).get_data(as_text=True)
    assert 'class="text-normal"' in body
    assert "text=large" in body  # a plain link switches it
    large = client.get(f"{PATH}?text=large").get_data(as_text=True)
    assert 'class="text-large"' in large


def test_read_aloud_is_progressive_enhancement(client):
    body = client.get(PATH).get_data(as_text=True)
    assert re.search(r'<button id="read-aloud"[^>]* hidden', body)
    with client.get("/static/scan.js") as script:
        assert "speechSynthesis" in script.get_data(as_text=True)


# --- transport


def test_gzip_and_a_strict_csp_that_allows_the_inline_css(client):
    response = client.get(PATH, headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    html = gzip.decompress(response.get_data()).decode("utf-8")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    css = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy
    elsewhere = re.findall(r"(?:src|href|action)=\"(https?://[^/\"]*)", html)
    assert set(elsewhere) <= {"http://localhost"}, "no third-party requests"


def test_conditional_get(world, client):
    first = client.get(PATH)
    again = client.get(PATH, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    world.ok("farm", "inspect", [LOT], {"result": "pass"}, time=at(20))
    changed = client.get(PATH, headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200


def test_missing_ledger_is_a_503(tmp_path):
    app = create_app({"DATABASE": str(tmp_path / "absent.db")})
    response = app.test_client().get(PATH, headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert "provenance init" in response.get_json()["detail"]


# --- proofs


def test_bundle_download_verifies(world, client):
    response = client.get(f"/bundle{PATH}")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    report = verify_bundle(json.loads(response.get_data()), world.log_public_key)
    assert report.subject == LOT


def test_a_commit_elsewhere_does_not_rebuild_the_lots_page(world, client, monkeypatch):
    """A commit that does not touch the lot makes no new proof bundle for its
    page: the size the page states is kept while the lot's chain is unchanged."""
    from provenance.web import resolver

    built = []
    real = resolver.build_bundle
    monkeypatch.setattr(resolver, "build_bundle", lambda *a, **k: built.append(1) or real(*a, **k))
    first = client.get(PATH, headers={"Accept": "text/html"})
    assert first.status_code == 200 and len(built) == 1
    world.enrol_party("Elsewhere Carrier", "carrier")  # a commit that is not about the lot
    again = client.get(PATH, headers={"Accept": "text/html"})
    assert again.status_code == 200 and len(built) == 1
    assert "Download the proof bundle (" in again.get_data(as_text=True)


def test_a_big_lots_bundle_is_made_after_its_first_scan_not_during_it(world):
    """Above BUNDLE_INLINE_EVENTS the first page does not wait for the proof
    bundle: it offers the download without a size, and once the app's bundle
    thread has made it, the page (with a new ETag) states it."""
    app = create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
            "BUNDLE_INLINE_EVENTS": 10,
            "TESTING": True,
        }
    )
    client = app.test_client()
    first = client.get(PATH, headers={"Accept": "text/html"})
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    assert "Download the proof bundle" in page and "Download the proof bundle (" not in page
    deadline = time.monotonic() + 20
    while True:
        again = client.get(PATH, headers={"Accept": "text/html"})
        if "Download the proof bundle (" in again.get_data(as_text=True):
            break
        assert time.monotonic() < deadline, "the bundle thread made no bundle within 20 s"
        app.extensions["provenance.bundle_thread"].pool.submit(lambda: None).result(timeout=20)
    assert again.headers["ETag"] != first.headers["ETag"]
    download = client.get(f"/bundle{PATH}")
    assert len(download.get_data()) > 0
    # One more reading (< 1 % more events would be too few for this small lot:
    # it grows by far more), so the size is measured again in the background;
    # the page meanwhile states the last size measured rather than none.
    world.ledger.append([world.reading(11, 3.0)])
    grown = client.get(PATH, headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Download the proof bundle (" in grown


def test_checkpoint_and_inclusion_proof(world, client):
    note = client.get("/log/v1/checkpoint").get_data(as_text=True)
    origin = note.split("\n", 1)[0]
    checkpoint = open_checkpoint(note, origin, world.log_public_key)
    event_id = world.ok("farm", "inspect", [LOT], {"result": "pass"}).event_id
    proof = client.get(f"/log/v1/proof/inclusion?id={event_id}").get_json()
    assert proof["tree_size"] == checkpoint.size + 1
    latest = open_checkpoint(
        client.get("/log/v1/checkpoint").get_data(as_text=True), origin, world.log_public_key
    )
    verify_inclusion(
        proof["leaf_index"],
        proof["tree_size"],
        base64.b64decode(proof["leaf_hash"]),
        [base64.b64decode(h) for h in proof["audit_path"]],
        latest.root_hash,
    )
    consistency = client.get(f"/log/v1/proof/consistency?first={checkpoint.size}").get_json()
    verify_consistency(
        checkpoint.size,
        latest.size,
        [base64.b64decode(h) for h in consistency["consistency"]],
        checkpoint.root_hash,
        latest.root_hash,
    )


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/log/v1/proof/inclusion?id=zz", 400, "64 hex digits"),
        ("/log/v1/proof/inclusion?id=" + "0" * 64, 404, "no event"),
        ("/log/v1/proof/consistency", 400, "first: is required"),
        ("/log/v1/proof/consistency?first=-1", 400, "written with the digits 0-9"),
        ("/log/v1/proof/consistency?first=1&second=99999", 400, "beyond the latest signed"),
        ("/log/v1/proof/consistency?first=9&second=3", 400, "must not exceed second"),
        ("/log/v1/entries?start=99999", 400, "below end"),
    ],
)
def test_transparency_refusals_say_why(client, url, status, words):
    response = client.get(url, headers={"Accept": "application/json"})
    assert response.status_code == status
    assert words in response.get_json()["detail"]


def test_entries_are_the_logged_envelopes(world, client):
    body = client.get("/log/v1/entries?start=0&end=3").get_json()
    assert [entry["index"] for entry in body["entries"]] == [0, 1, 2]
    assert body["entries"][0]["envelope"]["kind"] == "enrol"
