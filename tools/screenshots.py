"""Screenshots of the main screens for docs/screenshots/, refreshed by running

    .venv/bin/python tools/screenshots.py [--out DIR] [--only SCREEN,…]
        [--size phone|desktop] [--lang en|zh]

It builds a small ledger in a temporary folder (the test World of
tests/support/world.py, with a farm, a packhouse, a shop and a food agency),
tells a short story in it with the demo's kind of names — a lot that is simply
fine, a lot that was too warm on the way, kale made into salad bags and
recalled — serves the web app on a
loopback port from this process, and drives Debian's Chromium with Playwright
(never a downloaded browser; every request but loopback is refused) through
the consumer scan page and the producer and regulator portals, at a phone's
size (390×844) and a desktop's (1280×800), in English and Chinese. Each
picture is `SCREEN-SIZE-LANG.png`, reduced to a palette PNG with Pillow so the
whole set stays small. docs/screenshots/README.md says what each one shows.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test World and portal helpers

from support.portal import PASSWORD, Portal, make_app  # noqa: E402
from support.world import GTIN, HOUR, T0, World, at  # noqa: E402

from provenance.core import gs1  # noqa: E402
from provenance.web.background import serving  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
OUT = ROOT / "docs" / "screenshots"
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
LANGS = ("en", "zh")
ZONES = {"en": "Europe/London", "zh": "Asia/Shanghai"}  # a reader's own zone for each
MAX_HEIGHT = 2600  # a long page is cut here: the top is what a person sees first
COLOURS = 128

KALE = gs1.lot_uri(GTIN, "KALE-2611")  # kale made into salad bags, then recalled
FINE = gs1.lot_uri(GTIN, "SPIN-07")  # spinach that stayed cold all the way
WARM = gs1.lot_uri(GTIN, "ROCK-03")  # rocket that was too warm for four hours
BAG = gs1.lot_uri(GTIN, "SALAD-11")  # salad bags made from the recalled kale
LEAF = gs1.lot_uri(GTIN, "LEAF-09")  # baby leaf too warm on the farm, made into a mix
MIX = gs1.lot_uri(GTIN, "MIX-05")  # the leaf mix made from it
PEAS = gs1.lot_uri(GTIN, "PEA-04")  # peas that no logger ever watched


FARM, PACKER, SHOP, AGENCY = "Green Valley Farm", "Fresh Cuts", "Corner Shop", "Food Agency"


def build(directory: Path) -> World:
    """The story's ledger: KALE-2611 is made into salad bags and recalled;
    SPIN-07 is simply fine; ROCK-03 was too warm on the way; LEAF-09 was too warm on
    the farm and made into MIX-05; PEA-04 was never watched by a logger."""
    world = World.create(directory, with_lot=False)
    for name, role in ((FARM, "producer"), (PACKER, "processor"), (SHOP, "retailer")):
        world.enrol_party(name, role)
    world.enrol_party(AGENCY, "regulator")
    probes: dict[str, str] = {}
    hours = [1 + k / 4 for k in range(4 * 12 + 3)]  # 1 h … 13.5 h, every 15 min
    for uri, name, product, probe in (
        (KALE, "KALE-2611", "Kale", "truck7"),
        (FINE, "SPIN-07", "Spinach", "truck8"),
        (WARM, "ROCK-03", "Rocket", "truck9"),
        (LEAF, "LEAF-09", "Baby leaf", "truck6"),
    ):
        world.enrol_device(probe, owner=FARM)
        probes[uri] = probe
        data = {
            "gtin": GTIN,
            "lot": name,
            "product": product,
            "category": "food",
            "profile": "chilled",
            "quantity": {"value": 240, "unit": "KGM"},
            "origin": {"name": "Green Valley Farm, field 3", "country": "KE"},
        }
        world.ok(FARM, "commission", [uri], data, time=at(0.2))
        world.ok(FARM, "attach", [uri], {"device": world.did(probe)}, time=at(0.5))
    warm = {h: (11.0 if 6 <= h < 10 else 3.0) for h in hours}
    world.ledger.append(
        [world.reading(h, 3.0 + (h % 3) / 4, "truck8") for h in hours]
        + [world.reading(h, warm[h], "truck9") for h in hours]
        + [world.reading(h, 3.5, "truck7") for h in hours]
        + [world.reading(h, 9.0 if 3 <= h < 6 else 3.5, "truck6") for h in hours]
    )
    for uri, to, place in (
        (FINE, SHOP, "Corner Shop, Mill Lane"),
        (WARM, SHOP, "Corner Shop, Mill Lane"),
        (KALE, PACKER, "Fresh Cuts packhouse"),
        (LEAF, PACKER, "Fresh Cuts packhouse"),
    ):
        shipped = world.ok(FARM, "ship", [uri], {"to": world.did(to)}, time=at(12))
        received = {"shipment": shipped.event_id, "location": {"name": place}}
        world.ok(to, "receive", [uri], received, time=at(13.5))
        world.ok(to, "detach", [uri], {"device": world.did(probes[uri])}, time=at(13.6))
    world.ok(
        PACKER,
        "transform",
        [KALE, BAG],
        {
            "inputs": [{"batch": KALE, "quantity": {"value": 100, "unit": "KGM"}}],
            "outputs": [
                {"batch": BAG, "quantity": {"value": 400, "unit": "EA"}, "product": "Salad bag"}
            ],
            "location": {"name": "Fresh Cuts packhouse"},
        },
        time=at(14),
    )
    world.ok(
        PACKER,
        "transform",
        [LEAF, MIX],
        {
            "inputs": [{"batch": LEAF, "quantity": {"value": 50, "unit": "KGM"}}],
            "outputs": [
                {"batch": MIX, "quantity": {"value": 200, "unit": "EA"}, "product": "Leaf mix"}
            ],
            "location": {"name": "Fresh Cuts packhouse"},
        },
        time=at(14.5),
    )
    peas = {
        "gtin": GTIN,
        "lot": "PEA-04",
        "product": "Peas",
        "category": "food",
        "profile": "chilled",
        "quantity": {"value": 80, "unit": "KGM"},
        "origin": {"name": "Green Valley Farm, field 5", "country": "KE"},
    }
    world.ok(FARM, "commission", [PEAS], peas, time=at(0.3))
    shipped = world.ok(FARM, "ship", [PEAS], {"to": world.did(SHOP)}, time=at(12))
    world.ok(SHOP, "receive", [PEAS], {"shipment": shipped.event_id}, time=at(13.5))
    recall = {
        "reason": "Listeria found in routine testing",
        "class": "I",
        "instructions": "Do not eat it; return it to the shop for a refund.",
    }
    world.ok(AGENCY, "recall", [KALE], recall, time=at(30))
    world.now = T0 + 32 * HOUR  # the story happened yesterday and today
    return world


@dataclass
class Screen:
    name: str
    who: str | None  # the portal user, or None for the public scan page
    show: Callable  # (page, base, portal) -> None: go to the screen


def _scan(uri: str) -> Callable:
    return lambda page, base, portal: page.goto(base + uri.removeprefix(gs1.DEFAULT_BASE))


def _lot(uri: str) -> Callable:
    return lambda page, base, portal: page.goto(f"{base}/portal/lots/{portal.lot_id(uri)}")


def _preview(page, base, portal) -> None:
    page.goto(f"{base}/portal/lots/{portal.lot_id(WARM)}")
    form = page.locator("#recall-form")
    form.locator("input[name=reason]").fill("Kept too warm on the way: 4 h at 11 °C")
    form.locator("input[name=class][value=II]").check()
    form.locator("button[type=submit]").first.click()
    page.wait_for_selector("#reach")


SCREENS = [
    Screen("scan-normal", None, _scan(FINE)),
    Screen("scan-excursion", None, _scan(WARM)),
    Screen("scan-recalled", None, _scan(BAG)),
    Screen("scan-made-from", None, _scan(MIX)),
    Screen("scan-unmonitored", None, _scan(PEAS)),
    Screen("portal-producer-home", "farm1", lambda p, b, _: p.goto(b + "/portal/")),
    Screen("portal-register", "farm1", lambda p, b, _: p.goto(b + "/portal/lots/new")),
    Screen("portal-lot", "farm1", _lot(WARM)),
    Screen("portal-regulator-home", "agency1", lambda p, b, _: p.goto(b + "/portal/regulator/")),
    Screen("portal-recall-preview", "agency1", _preview),
    Screen(
        "portal-recall-report",
        "agency1",
        lambda p, b, portal: p.goto(f"{b}/portal/regulator/recalls/{portal.lot_id(KALE)}"),
    ),
]


def small_png(raw: bytes) -> bytes:
    """A palette PNG of the screenshot: a page is a few flat colours."""
    from PIL import Image

    image = Image.open(io.BytesIO(raw)).convert("RGB")
    if image.height > MAX_HEIGHT:
        image = image.crop((0, 0, image.width, MAX_HEIGHT))
    out = io.BytesIO()
    image.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return out.getvalue()


def capture(out: Path, screens: list[Screen], sizes: list[str], langs: list[str]) -> list[Path]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise SystemExit(f"Error: {CHROMIUM} is missing; install Debian's chromium package.")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="screenshots-") as folder:
        tmp = Path(folder)
        world = build(tmp)
        portal = Portal(world, make_app(world, tmp), tmp)
        portal.user("farm1", FARM)
        portal.user("agency1", AGENCY)
        with serving(portal.app) as base, sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
                timeout=30_000,
            )
            try:
                for size in sizes:
                    for lang in langs:
                        written += _one_reader(browser, base, portal, out, screens, size, lang)
            finally:
                browser.close()
    return written


def _one_reader(browser, base, portal, out, screens, size, lang) -> list[Path]:
    written = []
    contexts: dict[str | None, object] = {}
    try:
        for screen in screens:
            if screen.who not in contexts:
                context = browser.new_context(viewport=SIZES[size], locale=lang)
                context.add_cookies(
                    [
                        {"name": "lang", "value": lang, "url": base},
                        {"name": "tz", "value": ZONES[lang], "url": base},
                    ]
                )
                context.route(
                    "**/*",
                    lambda route: (
                        route.continue_() if route.request.url.startswith(base) else route.abort()
                    ),
                )
                if screen.who:
                    page = context.new_page()
                    page.goto(base + "/portal/login")
                    page.fill("input[name=name]", screen.who)
                    page.fill("input[name=password]", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_load_state("load")
                    page.close()
                contexts[screen.who] = context
            page = contexts[screen.who].new_page()
            page.set_default_timeout(20_000)
            screen.show(page, base, portal)
            page.wait_for_load_state("load")
            if screen.who is None:  # the scan page: once the phone's own check has spoken
                page.wait_for_selector(
                    "#phone-check.phone-verified, #phone-check.phone-failed, "
                    "#phone-check.phone-cannot",
                    timeout=60_000,
                )
            path = out / f"{screen.name}-{size}-{lang}.png"
            path.write_bytes(small_png(page.screenshot(full_page=True)))
            written.append(path)
            page.close()
    finally:
        for context in contexts.values():
            context.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNGs")
    parser.add_argument("--only", help="comma-separated screen names (default: all)")
    parser.add_argument("--size", choices=sorted(SIZES), action="append")
    parser.add_argument("--lang", choices=LANGS, action="append")
    args = parser.parse_args(argv)
    screens = SCREENS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.name for s in SCREENS}
        if unknown:
            names = ", ".join(s.name for s in SCREENS)
            print(f"Error: no screen {', '.join(sorted(unknown))}; screens: {names}")
            return 2
        screens = [s for s in SCREENS if s.name in wanted]
    written = capture(args.out, screens, args.size or list(SIZES), args.lang or list(LANGS))
    total = sum(p.stat().st_size for p in written)
    print(f"{len(written)} screenshots in {args.out} ({total / 1_000_000:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
