"""The camera scanner's server side: what a scanned text opens (`barcodes.scanned`
and ``/scan/code``), the scanner page without JavaScript, the installable app's
manifest and service worker, and the vendored decoder's hash. The camera itself,
in Chromium: tests/test_camera_browser.py."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from support.portal import make_app
from support.world import GTIN

from provenance.barcodes.dictionary import GS1SyntaxError
from provenance.barcodes.labels import Label
from provenance.barcodes.scanned import (
    MAX_SCAN_CHARS,
    NoLotInCode,
    link_of_scan,
    resolver_path,
)
from provenance.core import gs1
from provenance.web import create_app

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"
VENDOR = STATIC / "vendor"
GS = "\x1d"
PAGE = f"/01/{GTIN}/10/LOT42"


def path_of(text: str) -> str:
    return resolver_path(link_of_scan(text))


# --- what a code opens ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, path",
    [
        # GS1 Digital Link QR codes, on any resolver: only the GS1 data is kept
        (f"https://id.gs1.org/01/{GTIN}/10/LOT42", PAGE),
        (f"HTTPS://id.example.com/dl/01/{GTIN}/10/LOT42?17=261231", PAGE + "?17=261231"),
        (f"https://evil.example/01/{GTIN}/10/LOT42?linkType=gs1:traceability", PAGE),
        (f"{PAGE}/21/X7", PAGE + "/21/X7"),
        ("https://id.gs1.org/01/9506000134352/10/LOT42", None),  # GTIN-13 in a URI: refused
        # GS1 DataMatrix as decoders give it: FNC1 as GS, as ]d2, or dropped
        (f"{GS}01{GTIN}17261231 10LOT42{GS}21X7".replace(" ", ""), PAGE + "/21/X7?17=261231"),
        (f"]d201{GTIN}17261231 10LOT42{GS}21X7".replace(" ", ""), PAGE + "/21/X7?17=261231"),
        (f"01{GTIN}10LOT42{GS}17261231", PAGE + "?17=261231"),
        (f"]Q3{GS}01{GTIN}10LOT42", PAGE),  # a GS1 QR code
        # a keyboard-wedge scanner's line end
        (f"{GS}01{GTIN}10LOT42\r\n", PAGE),
        # typed: bracketed and the engine's ^ notation
        (f"(01){GTIN}(17)261231(10)LOT42(21)X7", PAGE + "/21/X7?17=261231"),
        (f"^01{GTIN}10LOT42", PAGE),
    ],
)
def test_a_scanned_code_opens_its_lot_page(text, path):
    if path is None:
        with pytest.raises(GS1SyntaxError):
            path_of(text)
    else:
        assert path_of(text) == path


@pytest.mark.parametrize("lot", ["A/21/X", "X/../A", "%41", "A?linkType=all", "A&B=C", "A+B"])
def test_lot_codes_with_url_characters_stay_one_lot(lot):
    """The DataMatrix of a lot whose code holds URL characters opens that lot,
    encoded as every other link to it is (links.lot_path)."""
    expected = gs1.lot_path(gs1.lot_uri(GTIN, lot))
    assert path_of(f"{GS}01{GTIN}10{lot}") == expected
    assert path_of(f"https://id.gs1.org{expected}") == expected


@pytest.mark.parametrize(
    "text, words",
    [
        ("hello world", "is not a GS1 code"),
        ("", "is empty"),
        ("   \r\n", "is empty"),
        (f"{GS}01{GTIN[:-1]}310LOT42", "check digit"),  # garbled GTIN
        (f"{GS}01{GTIN}10", "10"),  # lot cut off
        (f"{GS}01{GTIN}10LOT^42", "'^'"),
        (f"{GS}99ABC", "primary key"),
        ("x" * (MAX_SCAN_CHARS + 1), "at most"),
        ("\x04\x1e05", "not a GS1 code"),
        ("mailto:someone@example.com", "not a GS1 code"),
    ],
)
def test_a_code_that_is_not_gs1_says_why(text, words):
    with pytest.raises(GS1SyntaxError) as caught:
        path_of(text)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "text, words",
    [
        (f"{GS}01{GTIN}", f"GTIN {GTIN} but not its batch/lot"),
        (f"https://id.gs1.org/01/{GTIN}/21/X7", "not its batch/lot"),
        ("(00)095060001343528860", "not a product's lot"),
    ],
)
def test_a_code_without_a_lot_says_so(text, words):
    with pytest.raises(NoLotInCode) as caught:
        path_of(text)
    assert words in str(caught.value)


# --- /scan/code -----------------------------------------------------------------------


@pytest.fixture
def client(file_world):
    app = create_app(
        {
            "DATABASE": str(file_world.store.path),
            "CLOCK": lambda: file_world.now,
            "LOG_PUBLIC_KEY": file_world.log_public_key,
        }
    )
    return app.test_client()


def test_scanned_code_answers_a_program_with_the_path(client):
    response = client.get(
        "/scan/code", query_string={"text": f"{GS}01{GTIN}10LOT42"}, headers=_json()
    )
    assert response.status_code == 200
    assert response.get_json() == {"path": PAGE}
    assert client.get(PAGE).status_code == 200


def test_scanned_code_sends_a_browser_to_the_lot_page(client):
    response = client.get("/scan/code", query_string={"text": f"(01){GTIN}(10)LOT42"})
    assert response.status_code == 303
    assert response.headers["Location"] == PAGE


@pytest.mark.parametrize(
    "query, words",
    [
        ({"text": "hello"}, "'hello' is not a GS1 code"),
        ({"text": f"(01){GTIN}"}, "but not its batch/lot"),
        ({"text": "é" * (MAX_SCAN_CHARS + 1)}, "at most"),
        ({}, "give the code's text"),
    ],
)
def test_a_bad_code_is_a_400_with_its_reason(client, query, words):
    answer = client.get("/scan/code", query_string=query, headers=_json())
    assert answer.status_code == 400
    assert words in answer.get_json()["detail"]
    page = client.get("/scan/code", query_string=query)
    assert page.status_code == 400 and page.mimetype == "text/html"
    assert words in page.get_data(as_text=True).replace("&#39;", "'")


def test_scanned_codes_are_rate_limited_like_scans(file_world, tmp_path):
    limits = {"scan": "2/minute burst 2", "lookup": "1/minute burst 1"}
    client = make_app(file_world, tmp_path, RATE_LIMITS=limits).test_client()
    text = {"text": f"(01){GTIN}(10)LOT42"}
    codes = [client.get("/scan/code", query_string=text).status_code for _ in range(3)]
    assert codes == [303, 303, 429]
    assert [client.get("/scan").status_code for _ in range(2)] == [200, 429]
    for free in ("/sw.js", "/manifest.webmanifest"):  # files, like /static/
        answer = client.get(free)
        answer.close()
        assert answer.status_code == 200, free


# --- the page, the app, the worker ------------------------------------------------------


def test_scanner_page_works_without_javascript(client):
    response = client.get("/scan")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<link rel="manifest" href="/manifest.webmanifest">' in html
    assert 'src="/static/camera.js"' in html
    form = re.search(r'<form class="lookup" method="get" action="([^"]+)">', html)
    assert form and form.group(1) == "/scan/code"
    assert 'name="text"' in html
    assert "needs JavaScript" in html  # what the status line says until the script runs
    # every decoder path the page may load is ours
    assert 'data-decoder-file="/static/vendor/zxing-library-0.23.0.min.js"' in html


def test_home_page_leads_to_the_scanner(client):
    html = client.get("/").get_data(as_text=True)
    assert 'href="/scan"' in html


def test_csp_allows_our_worker_and_manifest_and_nothing_else(client):
    csp = client.get("/scan").headers["Content-Security-Policy"]
    assert "worker-src 'self'" in csp and "manifest-src 'self'" in csp
    assert "unsafe" not in csp and "http" not in csp  # no eval, no other origin


def test_manifest_makes_an_installable_app(client):
    response = client.get("/manifest.webmanifest")
    assert response.mimetype == "application/manifest+json"
    manifest = json.loads(response.get_data())
    assert manifest["start_url"] == "/scan" and manifest["display"] == "standalone"
    sizes = set()
    for icon in manifest["icons"]:
        served = client.get(icon["src"])
        served.close()  # a static file is streamed: close it
        assert served.status_code == 200 and served.mimetype == "image/png"
        with Image.open(STATIC / icon["src"].removeprefix("/static/")) as image:
            assert f"{image.width}x{image.height}" == icon["sizes"]
        sizes.add(icon["sizes"])
    assert {"192x192", "512x512"} <= sizes  # what Chrome needs to offer "Install"


def test_service_worker_is_served_from_the_root_and_never_stale(client):
    response = client.get("/sw.js")
    source = response.get_data(as_text=True)
    response.close()
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Cache-Control"] == "no-cache"
    # What it keeps offline is the scanner's own files, all of which exist.
    shell = re.search(r"var SHELL_URLS = \[(.*?)\];", source, re.DOTALL)
    assert shell, "sw.js lists the files it keeps at install"
    urls = re.findall(r'"([^"]+)"', shell.group(1))
    assert "/scan" in urls and len(urls) >= 4
    for url in urls:
        served = client.get(url)
        served.close()
        assert served.status_code == 200, url


def test_the_worker_and_the_page_agree_on_names():
    """camera.js lists what sw.js saved: same cache and header names."""
    worker = (STATIC / "sw.js").read_text(encoding="utf-8")
    page = (STATIC / "camera.js").read_text(encoding="utf-8")
    for name in ("LOTS_CACHE", "SAVED_HEADER", "TITLE_HEADER"):
        pattern = rf'var {name} = ("[^"]+")'
        assert re.search(pattern, worker).group(1) == re.search(pattern, page).group(1), name


def test_labels_the_project_prints_open_their_lot():
    label = Label.for_lot(GTIN, "A/21/X", product="Kale", base="https://id.example.com")
    assert path_of(label.uri) == gs1.lot_path(gs1.lot_uri(GTIN, "A/21/X"))


# --- the vendored decoder ---------------------------------------------------------------


def test_vendored_files_match_their_recorded_sha256():
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", readme, re.MULTILINE)
    assert rows, "README.md lists each vendored file with its sha256"
    listed = {name for name, _ in rows}
    shipped = {p.name for p in VENDOR.iterdir() if p.suffix == ".js"}
    assert listed == shipped, "every vendored script is listed, and only those"
    for name, digest in rows:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
        licence = VENDOR / name.replace(".min.js", ".LICENSE")
        assert licence.exists() and "Apache License" in licence.read_text(encoding="utf-8")


def test_the_page_loads_the_vendored_file_the_readme_lists():
    from provenance.web.camera import ZXING_FILE

    assert (STATIC / ZXING_FILE).exists()
    # the service worker keeps it when asked, and only files from there
    assert '"/static/vendor/"' in (STATIC / "sw.js").read_text(encoding="utf-8")


def _json() -> dict[str, str]:
    return {"Accept": "application/json"}
