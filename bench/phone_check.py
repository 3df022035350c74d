"""The scan page's own check on a phone, for one big lot, in Debian's Chromium.

    .venv/bin/python bench/phone_check.py [--readings 20000] [--runs 3]

Builds the tests' reading ledger (LOT42, one probe, *readings* readings), has
two witnesses cosign its checkpoint (quorum 2), serves the real app on a
loopback port and opens the lot's page at a phone's viewport. Reports
(docs/performance.md, "The phone's own check"):

- **check_ms** (target ≤ 2,000 under CPU throttling 4×, CDP
  `Emulation.setCPUThrottlingRate`): from the start of static/verify.js's run,
  after the first paint, to "verified" — fetching the policy and the page form
  of the bundle, every check, the sample of readings and its fetch; the median
  of --runs page loads, each in a fresh browser context;
- **check_bytes** (target ≤ 1 MB): bytes received for that (the policy, the
  page-form bundle and the sample, compressed as sent: gzip), and the page and
  verify.js beside it;
- **full_ms** / **full_bytes**: the same check of the whole v2 bundle (every
  envelope, every signature) in the same page and throttling, for comparison —
  why the page form exists;
- **lcp_ms**, with and without verify.js (its request blocked), under
  Lighthouse's slow 4G (150 ms RTT, 1.6 Mb/s down) and 4× CPU: the page's
  Largest Contentful Paint must not move.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # support/

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from support import browser as chromium  # noqa: E402
from support.export_ledgers import build_reading_ledger  # noqa: E402

from provenance.core import gs1  # noqa: E402
from provenance.core.cosignature import Cosigner  # noqa: E402
from provenance.store.cosignatures import (  # noqa: E402
    WitnessRow,
    configure_witnesses,
    record_cosignature,
)
from provenance.web import create_app  # noqa: E402
from provenance.web.background import serving  # noqa: E402

PAGE = gs1.gtin_uri("09506000134352", lot="LOT42", base="")
BUNDLE = gs1.gtin_uri("09506000134352", lot="LOT42", base="/bundle")
SLOW_4G = {
    "offline": False,
    "latency": 150,
    "downloadThroughput": 1.6e6 / 8,
    "uploadThroughput": 750e3 / 8,
}
DONE = ", ".join(f'#phone-check[data-state="{s}"]' for s in ("verified", "failed", "cannot"))
LCP = """() => new Promise(resolve => {
  new PerformanceObserver(list => {
    const e = list.getEntries(); resolve(e[e.length - 1].startTime); })
    .observe({type: 'largest-contentful-paint', buffered: true}); })"""
FULL = """async ([url, policyUrl]) => {
  const V = window.ProvenanceVerify, ed = await V.ed25519();
  const t0 = performance.now();
  const [bundle, policy] = await Promise.all([fetch(url).then(r => r.json()),
                                              fetch(policyUrl).then(r => r.text())]);
  await V.verifyBundle(bundle, V.parsePolicy(policy), ed,
                       {nowSeconds: Math.floor(Date.now() / 1000)});
  return performance.now() - t0; }"""


def witness(world) -> None:
    cosigners = {
        name: Cosigner(f"witness.{name}.example/1", Ed25519PrivateKey.generate())
        for name in ("regulator", "consumers")
    }
    rows = [WitnessRow(n, "http://127.0.0.1:9/", c.verifier_key) for n, c in cosigners.items()]
    configure_witnesses(world.store, rows, 2)
    note = world.store.latest_checkpoint()
    size, body = int(note.split("\n")[1]), note[: note.rfind("\n\n") + 1]
    stamp = int(time.time()) - 60
    for name, cosigner in cosigners.items():
        line = cosigner.cosign(body, stamp).rstrip("\n")
        record_cosignature(world.store, size, name, line, stamp)


def received(page, predicate) -> list[int]:
    sizes: list[int] = []

    def on_finished(request) -> None:
        if predicate(request.url):
            sizes.append(request.sizes()["responseBodySize"])

    page.on("requestfinished", on_finished)
    return sizes


def one_check(browser, base: str, rate: float) -> dict[str, float]:
    context = browser.new_context(viewport=chromium.PHONE)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
    check = received(page, lambda url: "/bundle/" in url or url.endswith("/log/v1/policy"))
    rest = received(page, lambda url: "/bundle/" not in url and not url.endswith("/policy"))
    page.goto(base + PAGE)
    page.wait_for_selector(DONE, state="attached", timeout=120_000)
    state = page.get_attribute("#phone-check", "data-state")
    if state != "verified":
        raise SystemExit(f"the page says {state}: {page.inner_text('#phone-check')}")
    figures = {
        "check_ms": float(page.get_attribute("#phone-check", "data-ms")),
        "check_bytes": sum(check),
        "page_and_scripts_bytes": sum(rest),
    }
    full = received(page, lambda url: url.endswith(BUNDLE))
    figures["full_ms"] = page.evaluate(FULL, [base + BUNDLE, base + "/log/v1/policy"])
    figures["full_bytes"] = sum(full)
    context.close()
    return figures


def lcp(browser, base: str, *, with_check: bool) -> float:
    context = browser.new_context(viewport=chromium.PHONE)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", SLOW_4G)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
    if not with_check:
        page.route("**/static/verify.js", lambda route: route.abort())
    page.goto(base + PAGE, wait_until="load")
    value = page.evaluate(LCP)
    context.close()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20_000, help="readings in the lot")
    parser.add_argument("--runs", type=int, default=3, help="page loads measured")
    parser.add_argument("--rate", type=float, default=4, help="CPU throttling rate")
    args = parser.parse_args()
    if chromium.missing():
        raise SystemExit(chromium.missing())
    from playwright.sync_api import sync_playwright

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        world = build_reading_ledger(Path(directory), args.readings)
        witness(world)
        print(f"built the ledger in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        app = create_app(
            {"DATABASE": str(world.store.path), "LOG_PUBLIC_KEY": world.log_public_key}
        )
        with serving(app) as base, sync_playwright() as driver:
            browser = chromium.launch(driver)
            one_check(browser, base, 1)  # warm the server's caches (bundle, page form)
            runs = [one_check(browser, base, args.rate) for _ in range(args.runs)]
            lcp(browser, base, with_check=False)  # warm: the first load pays for connections
            paints: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.runs):  # interleaved, so the machine's load hits both alike
                for with_check in (True, False):
                    paints[with_check].append(lcp(browser, base, with_check=with_check))
            lcps = {
                "lcp_ms_with_check": statistics.median(paints[True]),
                "lcp_ms_without_check": statistics.median(paints[False]),
            }
            browser.close()
    figures = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    figures.update(lcps)
    figures["readings"] = args.readings
    figures["cpu_throttling"] = args.rate
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
