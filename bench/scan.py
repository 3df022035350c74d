"""Scan-page benchmark: a lot with 20,000 readings and 40 custody events.

    .venv/bin/python bench/scan.py [--readings 20000] [--requests 2000] [--lcp-runs 5]

Measures, in one run:
- server time per page (in-process WSGI, gzip on): the first scan of the lot
  (reads every event; the app already warm from another lot's page, so the
  figure is the lot's, not the process's start), beside a baseline measured in
  the same run: checking the lot's signatures one by one on all cores, which
  the page no longer does for events the signed log vouches for (docs/scan.md,
  "Integrity"); a scan after one new reading (incremental),
  then p50/p95 over many scans, for the HTML page, its JSON twin and a 304
  revalidation; beside them the same app's plain home page as a baseline;
- bytes on the wire for the page (gzip body + headers);
- Largest Contentful Paint in Debian's Chromium (Playwright) at 390×844 under
  "slow 4G" emulation: Chrome DevTools' Slow 4G preset, which is Lighthouse's
  slow 4G (150 ms RTT, 1.6 Mbit/s down, 750 kbit/s up) scaled for request-level
  throttling to 562.5 ms latency, 1,474.56 kbit/s down, 675 kbit/s up; then the
  same with Lighthouse's 4× mobile CPU slowdown. A fresh browser context (cold
  cache) per run; the home page, measured the same way, is the floor.

Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.signing import did_of, sign
from provenance.core.timefmt import format_time, now_micros
from provenance.ledger.append import Ledger
from provenance.store.db import Store
from provenance.web import create_app
from provenance.web.background import serving
from provenance.web.portal.state import DEFAULT_RATE_LIMITS

GTIN = "09506000134352"
LOT = f"https://id.gs1.org/01/{GTIN}/10/BENCH-SCAN"
PATH = LOT.removeprefix("https://id.gs1.org")
WARM = f"https://id.gs1.org/01/{GTIN}/10/BENCH-WARM"  # a small lot that warms the app
MINUTE = 60_000_000
HOUR = 60 * MINUTE
CHROMIUM = "/usr/bin/chromium"
SLOW_4G = {
    "offline": False,
    "latency": 562.5,
    "downloadThroughput": 1474.56 * 1024 / 8,
    "uploadThroughput": 675 * 1024 / 8,
}
CPU_SLOWDOWN = 4


class Journey:
    """Parties, a logger and one lot, signed and appended through the Ledger."""

    def __init__(self, directory: Path, start: int):
        self.start = start
        self.store = Store(directory / "scan.db")
        self.log_key = Ed25519PrivateKey.generate()
        registrar = Ed25519PrivateKey.generate()
        self.ledger = Ledger.initialise(self.store, self.log_key, registrar, "bench.local/log")
        self.keys = {"registrar": registrar}
        self.seqs: dict[str, int] = {"registrar": 1}  # 0: its own enrolment
        for name, role in [
            ("farm", "producer"),
            ("packer", "processor"),
            ("carrier", "carrier"),
            ("dc", "distributor"),
            ("store", "retailer"),
        ]:
            data = {"type": "party", "name": name, "role": role}
            if role in ("producer", "processor"):  # they commission under the GTIN's prefix
                data["gs1_company_prefixes"] = ["9506000"]
            self.enrol(name, data)
        self.enrol("probe", {"type": "device", "name": "probe", "owner": self.did("farm")})

    def did(self, name: str) -> str:
        return did_of(self.keys[name])

    def enrol(self, name: str, data: dict) -> None:
        self.keys[name] = Ed25519PrivateKey.generate()
        self.append("registrar", "enrol", None, {"subject": self.did(name), **data}, self.start)

    def envelope(self, who: str, kind: str, lots, data: dict, at: int):
        seq = self.seqs.get(who, 0)
        self.seqs[who] = seq + 1
        return sign(self.keys[who], kind=kind, seq=seq, time=format_time(at), data=data, lots=lots)

    def append(self, who: str, kind: str, lots, data: dict, at: int) -> str:
        result = self.ledger.append([self.envelope(who, kind, lots, data, at)])[0]
        assert result.ok, result
        return result.event_id


def build(directory: Path, readings: int) -> Journey:
    """20,000 readings every 2 min with two excursions and a sensor gap, and 40
    custody events: commission, attach and 19 ship/receive handoffs."""
    step = 2 * MINUTE
    start = now_micros() - readings * step - HOUR
    journey = Journey(directory, start - HOUR)
    journey.append(
        "farm",
        "commission",
        [LOT],
        {"gtin": GTIN, "lot": "BENCH-SCAN", "product": "Baby spinach", "profile": "chilled"},
        start,
    )
    journey.append("farm", "attach", [LOT], {"device": journey.did("probe")}, start + MINUTE)
    warm = {"gtin": GTIN, "lot": "BENCH-WARM", "product": "Kale", "profile": "chilled"}
    journey.append("farm", "commission", [WARM], warm, start)
    times = [start + 2 * MINUTE + k * step for k in range(readings)]
    gap = range(readings // 2, readings // 2 + 60)  # two hours without data
    batch = []
    for k, t in enumerate(times):
        if k in gap:
            continue
        hot = (
            readings // 5 <= k < readings // 5 + 90
            or readings * 4 // 5 <= k < readings * 4 // 5 + 20
        )
        temperature = 9.5 if hot else 3.0 + (k % 30) / 20
        batch.append(journey.envelope("probe", "reading", None, {"temperature_c": temperature}, t))
        if len(batch) == 500:
            assert all(r.ok for r in journey.ledger.append(batch))
            batch = []
    if batch:
        assert all(r.ok for r in journey.ledger.append(batch))
    holders = ["farm", "packer", "carrier", "dc", "carrier", "store"]
    handoff_every = (times[-1] - times[0]) // 20
    holder = "farm"
    for n in range(19):
        receiver = holders[(n + 1) % len(holders)]
        if receiver == holder:
            receiver = "dc"
        at = times[0] + (n + 1) * handoff_every
        shipped = journey.append(holder, "ship", [LOT], {"to": journey.did(receiver)}, at)
        journey.append(receiver, "receive", [LOT], {"shipment": shipped}, at + 30 * MINUTE)
        holder = receiver
    return journey


def timed(client, url: str, headers: dict, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.get(url, headers=headers)
        response.get_data()
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code in (200, 304), response.status_code
    return out


def signature_baseline(store: Store) -> float:
    """ms to check the lot's signatures as the page did before the log vouched
    for them: every envelope, on all cores (lot_view._verify)."""
    from provenance.ledger import lot_view

    chain_id = store.chain_by_subject(LOT)[0]
    envelopes = [stored.envelope for stored in store.chain_events(chain_id)]
    start = time.perf_counter()
    failures = lot_view._verify(envelopes)
    elapsed = (time.perf_counter() - start) * 1000
    assert not any(failures)
    return elapsed


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def lcp(base: str, runs: int, cpu_slowdown: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {"page": [], "home": []}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        for _ in range(runs):
            for name, path in (("page", PATH), ("home", "/")):
                context = browser.new_context(viewport={"width": 390, "height": 844})
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")
                cdp.send("Network.emulateNetworkConditions", SLOW_4G)
                cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu_slowdown})
                page.goto(base + path, wait_until="load", timeout=60_000)
                value = page.evaluate(
                    """() => new Promise(resolve => {
                        new PerformanceObserver(list => {
                            const entries = list.getEntries();
                            resolve(entries[entries.length - 1].startTime);
                        }).observe({type: 'largest-contentful-paint', buffered: true});
                        setTimeout(() => resolve(-1), 5000);
                    })"""
                )
                results[name].append(value)
                context.close()
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--lcp-runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        journey = build(Path(tmp), args.readings)
        chain = journey.store.chain_by_subject(LOT)
        print(
            f"built {chain[3]} events on the lot in {time.perf_counter() - began:.1f} s",
            file=sys.stderr,
        )
        public = journey.log_key.public_key().public_bytes_raw()
        # One client asks thousands of times: switch the per-address limits
        # off, or the benchmark would time 429s.
        no_limits = dict.fromkeys(DEFAULT_RATE_LIMITS)
        app = create_app(
            {
                "DATABASE": str(journey.store.path),
                "LOG_PUBLIC_KEY": public,
                "RATE_LIMITS": no_limits,
            }
        )
        client = app.test_client()
        gz = {"Accept-Encoding": "gzip"}
        timed(client, WARM.removeprefix("https://id.gs1.org"), gz, 3)
        first = timed(client, PATH, gz, 1)[0]
        baseline = signature_baseline(journey.store)
        incremental = []
        for k in range(10):
            at = now_micros() - 10 * MINUTE + k * MINUTE
            journey.ledger.append(
                [journey.envelope("probe", "reading", None, {"temperature_c": 3.1}, at)]
            )
            incremental.extend(timed(client, PATH, gz, 1))
        page = timed(client, PATH, gz, args.requests)
        as_json = timed(client, PATH, {**gz, "Accept": "application/json"}, args.requests // 4)
        response = client.get(PATH, headers=gz)
        etag = response.headers["ETag"]
        revalidate = timed(client, PATH, {**gz, "If-None-Match": etag}, args.requests // 4)
        home = timed(client, "/", gz, args.requests // 4)
        body = response.get_data()
        header_bytes = sum(len(k) + len(v) + 4 for k, v in response.headers.items()) + 17
        html = gzip.decompress(body)

        with serving(app) as base:
            paints = {cpu: lcp(base, args.lcp_runs, cpu) for cpu in (1, CPU_SLOWDOWN)}

    p50, p95 = percentiles(page)
    j50, j95 = percentiles(as_json)
    r50, r95 = percentiles(revalidate)
    h50, h95 = percentiles(home)
    rows = [
        ("lot", f"{chain[3]:,} events ({args.readings:,} readings, 40 custody events)", ""),
        (
            "first scan of the lot (reads every event; the log vouches for the signatures)",
            f"{first:,.0f} ms",
            "target ≤ 250 ms; once per lot",
        ),
        (
            "baseline: checking its signatures one by one, all cores",
            f"{baseline:,.0f} ms",
            f"first scan = {first / baseline:.2f}× this",
        ),
        ("scan after a new reading", f"{statistics.median(incremental):.1f} ms median", ""),
        ("page, server time p50 / p95", f"{p50:.2f} / {p95:.2f} ms", "target p95 ≤ 20 ms"),
        ("JSON twin p50 / p95", f"{j50:.2f} / {j95:.2f} ms", ""),
        ("304 revalidation p50 / p95", f"{r50:.2f} / {r95:.2f} ms", ""),
        (
            "baseline: home page p50 / p95",
            f"{h50:.2f} / {h95:.2f} ms",
            f"page p95 = {p95 / h95:.1f}× home",
        ),
        (
            "bytes on the wire (gzip body + headers)",
            f"{len(body) + header_bytes:,} B ({len(html):,} B of HTML)",
            "target ≤ 50 KB",
        ),
    ]
    for cpu, runs in paints.items():
        page_lcp, home_lcp = statistics.median(runs["page"]), statistics.median(runs["home"])
        condition = "slow 4G" + (f" + {cpu}× CPU slowdown" if cpu > 1 else "")
        rows.append(
            (
                f"LCP, {condition}, median of {args.lcp_runs}",
                f"{page_lcp:.0f} ms (runs: {', '.join(f'{v:.0f}' for v in runs['page'])})",
                "target ≤ 1,000 ms" if cpu == 1 else "",
            )
        )
        rows.append(
            (
                f"floor: LCP of the plain home page, {condition}",
                f"{home_lcp:.0f} ms",
                f"page = {page_lcp / home_lcp:.2f}× home",
            )
        )
    print("| measure | value | note |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
