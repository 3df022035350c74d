"""The camera scanner in a real browser: Debian's Chromium, driven by Playwright
at a phone's viewport, filming a fake camera (a .y4m made here from a label the
project prints, or from a GS1 DataMatrix), served by waitress on loopback.

- a label's QR code and a GS1 DataMatrix ((01)(17)(10)(21), FNC1 separators)
  open the lot's page, read by the bundled decoder (desktop Chromium has no
  BarcodeDetector) and with nothing fetched from anywhere but our server;
- a code that is not GS1 data is shown as such and the scanner keeps going;
- after one visit the offline shell works with the network cut: the scanner
  page, the saved lot page marked "saved …, may be out of date" and not live,
  a scan of a known code, and a clear page for a lot that was not saved.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from support.camera import (
    GS,
    PHONE,
    gs1_datamatrix,
    launch_with_camera,
    qr_image,
    require_chromium,
    write_y4m,
)
from support.world import GTIN

from provenance.barcodes.labels import Label, label_png
from provenance.web import create_app
from provenance.web.background import serving

pytestmark = [pytest.mark.external, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "screenshots"
PAGE = f"/01/{GTIN}/10/LOT42"
WAIT_MS = 30_000  # decoding in a loaded 2-core machine


@pytest.fixture(scope="module")
def playwright():
    sync_api = require_chromium()
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture
def server(file_world):
    app = create_app(
        {
            "DATABASE": str(file_world.store.path),
            "CLOCK": lambda: file_world.now,
            "LOG_PUBLIC_KEY": file_world.log_public_key,
        }
    )
    with serving(app) as base_url:
        yield base_url


def label_picture() -> Image.Image:
    label = Label.for_lot(GTIN, "LOT42", product="Curly kale", base="https://id.example.com")
    return Image.open(io.BytesIO(label_png(label)))


class Phone:
    """A browser context at a phone's size that records what went wrong."""

    def __init__(self, browser, base_url: str):
        self.base_url = base_url
        self.context = browser.new_context(viewport=PHONE, device_scale_factor=2)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.problems: list[str] = []
        self.elsewhere: list[str] = []
        self.requested: list[str] = []
        self.page.on(
            "console", lambda m: self.problems.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        # The page's own requests (the service worker's precaching is not the page's).
        self.page.on("request", lambda r: self.requested.append(r.url))
        self.context.route("**/*", self._only_loopback)

    def _only_loopback(self, route):
        if route.request.url.startswith(self.base_url + "/"):
            route.continue_()
        else:
            self.elsewhere.append(route.request.url)
            route.abort()

    def lands_on(self, path: str) -> None:
        self.page.wait_for_url(re.compile(re.escape(self.base_url + path) + "$"), timeout=WAIT_MS)
        self.page.wait_for_load_state("load")

    def worker_ready(self) -> None:
        """The offline shell is installed and active: every navigation from now on
        goes through it (the page that installed it may stay uncontrolled)."""
        activated = self.page.evaluate(
            """async (waitMs) => {
                const registration = await navigator.serviceWorker.ready;
                const worker = registration.active;
                if (worker.state === "activated") return true;
                return await new Promise((resolve) => {
                    const timer = setTimeout(() => resolve(false), waitMs);
                    worker.addEventListener("statechange", () => {
                        if (worker.state === "activated") {
                            clearTimeout(timer);
                            resolve(true);
                        }
                    });
                });
            }""",
            WAIT_MS,
        )
        assert activated, "the offline shell's worker activated"

    def wait_saved(self, count: int) -> None:
        """Wait (bounded) until the worker has saved `count` lot pages."""
        saved = self.page.evaluate(
            """async ([count, waitMs]) => {
                const deadline = Date.now() + waitMs;
                while (Date.now() < deadline) {
                    const cache = await caches.open("provenance-lots-v1");
                    if ((await cache.keys()).length >= count) return true;
                    await new Promise((resolve) => setTimeout(resolve, 50));
                }
                return false;
            }""",
            [count, WAIT_MS],
        )
        assert saved, f"{count} lot page(s) saved by the offline shell"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def camera(playwright, tmp_path):
    """`camera(picture)`: a Chromium whose camera films `picture`."""
    browsers = []

    def start(picture: Image.Image):
        video = write_y4m(tmp_path / f"camera{len(browsers)}.y4m", picture)
        browser = launch_with_camera(playwright, video)
        browsers.append(browser)
        return browser

    yield start
    for browser in browsers:
        browser.close()


def scans_to_lot(camera, server, picture, path: str, shot: str, tmp_path) -> Phone:
    phone = Phone(camera(picture), server)
    phone.page.goto(server + "/scan", wait_until="load")
    phone.lands_on(path)
    assert phone.page.locator("#status .status-word").is_visible()
    assert any("/static/vendor/zxing-library-0.23.0.min.js" in url for url in phone.requested), (
        "desktop Chromium has no BarcodeDetector: the bundled decoder read the code"
    )
    assert not phone.elsewhere, phone.elsewhere  # no third-party requests
    assert not phone.problems, phone.problems  # no CSP violations, no script errors
    image = tmp_path / shot
    phone.page.screenshot(path=str(image))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(image, ARTIFACTS / image.name)
    return phone


def test_a_labels_qr_code_opens_the_lot_page(camera, server, tmp_path):
    phone = scans_to_lot(camera, server, label_picture(), PAGE, "camera-qr-390x844.png", tmp_path)
    phone.close()


def test_a_gs1_datamatrix_opens_the_lot_page(camera, server, tmp_path):
    # (01) GTIN, (17) expiry, (10) lot, FNC1, (21) serial: what a vaccine's carton carries
    data = f"01{GTIN}17{'271231'}10LOT42{GS}21VIAL7"
    path = f"{PAGE}/21/VIAL7?17=271231"
    phone = scans_to_lot(
        camera, server, gs1_datamatrix(data), path, "camera-datamatrix-390x844.png", tmp_path
    )
    assert "VIAL7" in phone.page.locator("main").inner_text()
    phone.close()


# A platform BarcodeDetector (Chrome on Android and macOS) stood in for by one that
# reports what such a detector reports for a GS1 DataMatrix: the symbology
# identifier ]d2 and no leading FNC1. `formats` says what it claims to read.
PLATFORM_DETECTOR = """
(() => {
  const formats = %s;
  class BarcodeDetector {
    static async getSupportedFormats() { return formats; }
    constructor(options) { this.formats = options.formats; }
    async detect(video) {
      if (!video.videoWidth) return [];
      return [{ format: "data_matrix", rawValue: "]d201%s10LOT42\u001d17271231" }];
    }
  }
  window.BarcodeDetector = BarcodeDetector;
})();
"""


@pytest.mark.parametrize(
    "formats, bundled",
    [('["qr_code", "data_matrix", "ean_13"]', False), ('["qr_code", "ean_13"]', True)],
    ids=["platform-reads-both", "platform-lacks-datamatrix"],
)
def test_the_platform_detector_is_used_when_it_reads_both_formats(camera, server, formats, bundled):
    phone = Phone(camera(gs1_datamatrix(f"01{GTIN}10LOT42{GS}17271231")), server)
    try:
        phone.context.add_init_script(PLATFORM_DETECTOR % (formats, GTIN))
        phone.page.goto(server + "/scan", wait_until="load")
        phone.lands_on(f"{PAGE}?17=271231")
        loaded = any("/static/vendor/" in url for url in phone.requested)
        assert loaded is bundled, phone.requested
        assert not phone.problems, phone.problems
    finally:
        phone.close()


def test_a_code_that_is_not_gs1_is_explained_and_scanning_goes_on(camera, server):
    expect = require_chromium().expect
    phone = Phone(camera(qr_image("WIFI:S:coldroom;T:WPA;P:secret;;")), server)
    page = phone.page
    try:
        page.goto(server + "/scan", wait_until="load")
        status = page.locator("#camera-status")
        expect(status).to_contain_text("not a GS1 code", timeout=WAIT_MS)
        assert status.get_attribute("class") == "warn"
        assert "This code cannot be opened here:" in status.inner_text()
        assert page.url == server + "/scan", "it stays on the scanner"
        assert page.locator("#camera-view").is_visible(), "the camera keeps running"
        assert not phone.elsewhere, phone.elsewhere
    finally:
        phone.close()


def test_after_one_visit_the_scanner_works_offline(camera, server, tmp_path):
    phone = Phone(camera(label_picture()), server)
    page = phone.page
    try:
        # Online: the first scan installs the worker; once it runs, scans go through it.
        page.goto(server + "/scan", wait_until="load")
        phone.lands_on(PAGE)
        phone.worker_ready()
        page.goto(server + "/scan", wait_until="commit")
        phone.lands_on(PAGE)
        assert "(saved)" not in page.title()
        assert page.locator("#offline-copy").count() == 0, "online, the page is live"
        live_status = page.locator("#status .status-word").inner_text()
        phone.wait_saved(1)

        # Back to a live page once seen, with the network gone: never that page
        # from the browser's cache as if fresh, but the marked copy.
        page.goto(server + "/manifest.webmanifest", wait_until="load")
        phone.context.set_offline(True)
        page.go_back(wait_until="load")
        assert page.url == server + PAGE
        assert page.locator("#offline-copy").is_visible()

        # The lot page, from the phone, marked as not live.
        page.goto(server + PAGE, wait_until="load")
        banner = page.locator("#offline-copy")
        assert banner.is_visible()
        words = banner.inner_text()
        assert re.search(r"Saved on this phone .+, may be out of date\.", words), words
        assert "It is not live: a recall or hold issued since then is not shown." in words
        assert page.title().startswith("(saved) ")
        status = page.locator("#status")
        assert "Not live: as saved" in status.inner_text()
        assert live_status in status.inner_text(), "the saved verdict, shown as saved"
        box = banner.bounding_box()
        assert box is not None and box["y"] < 150, "the first thing on screen"
        image = tmp_path / "camera-offline-copy-390x844.png"
        page.screenshot(path=str(image))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, ARTIFACTS / image.name)

        # A lot never viewed on this phone: said plainly, not a browser error page;
        # the scanner (from the phone) lists what is saved. It waits for a tap here,
        # so the list can be read before a scan moves on.
        other = f"/01/{GTIN}/10/NEVER-SEEN"
        page.goto(server + other, wait_until="load")
        assert page.url.startswith(server + "/scan?missing=")
        missing = page.locator("#camera-missing")
        assert missing.is_visible()
        assert "This page is not saved on this phone" in missing.inner_text()
        assert other in missing.inner_text()
        saved = page.locator("#camera-saved")
        saved.wait_for(state="visible")
        entries = page.locator("#camera-saved-list li").all_inner_texts()
        assert len(entries) == 1 and "may be out of date" in entries[0], entries
        assert page.locator("#camera-saved-list a").get_attribute("href") == server + PAGE

        # A scan of the same code without a network: the saved copy, marked.
        page.get_by_role("button", name="Scan with the camera").click()
        phone.lands_on(PAGE)
        assert page.locator("#offline-copy").is_visible()

        phone.context.set_offline(False)
        # Back online: the live page again, not the copy.
        page.goto(server + PAGE, wait_until="load")
        assert page.locator("#offline-copy").count() == 0
        assert not page.title().startswith("(saved)")
        assert not phone.elsewhere, phone.elsewhere
        assert not [p for p in phone.problems if "Content Security Policy" in p], phone.problems
    finally:
        phone.close()


def test_only_the_last_ten_lot_pages_are_kept(camera, server):
    phone = Phone(camera(Image.new("L", (64, 64), 200)), server)  # films no code
    page = phone.page
    try:
        page.goto(server + "/scan", wait_until="load")
        phone.worker_ready()
        paths = [f"{PAGE}/21/ITEM{n}" for n in range(1, 13)]  # 12 pages of the lot
        for path in paths:
            page.goto(server + path, wait_until="load")
            phone.wait_saved(min(paths.index(path) + 1, 10))
        kept = page.evaluate(
            """async ([last, waitMs]) => {
                const deadline = Date.now() + waitMs;
                const cache = await caches.open("provenance-lots-v1");
                let urls = [];
                while (Date.now() < deadline) {
                    urls = (await cache.keys()).map((r) => new URL(r.url).pathname);
                    if (urls.length === 10 && urls.includes(last)) break;
                    await new Promise((resolve) => setTimeout(resolve, 50));
                }
                return urls;
            }""",
            [paths[-1], WAIT_MS],
        )
        assert sorted(kept) == sorted(paths[2:]), "the ten last viewed, the two first dropped"
    finally:
        phone.close()
