"""Export benchmark: EPCIS 2.0 of a ledger of readings, and the FDA FSMA 204
spreadsheet (CSV and XLSX) of a ledger of Critical Tracking Events.

    .venv/bin/python bench/exports.py [--readings 100000] [--events 100000] [--runs 3]

Each export is timed to a file, best of --runs (the machine is shared); the
EPCIS export's peak Python allocation is measured in one more run under
tracemalloc. Rates are also given as ratios to the raw single-core Ed25519
verify rates measured around the runs (bench/ledger.py), as docs/performance.md
reports every figure. The ledgers are the tests' (tests/support/export_ledgers.py):
readings every 10 s from one probe on one lot; lots commissioned with origin
and quantity, each shipped and received.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # support/world.py and support/export_ledgers.py

from ledger import raw_verify_rate  # noqa: E402  (bench/ledger.py)
from support.export_ledgers import (  # noqa: E402
    build_cte_ledger,
    build_reading_ledger,
    time_epcis_export,
    time_fsma_export,
)


def baseline() -> tuple[float, float]:
    return raw_verify_rate(), raw_verify_rate(library="libsodium")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000, help="readings for EPCIS")
    parser.add_argument("--events", type=int, default=100_000, help="CTE events for FSMA 204")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each export")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp:
        began = time.perf_counter()
        folders = Path(tmp) / "epcis", Path(tmp) / "fsma"
        for folder in folders:
            folder.mkdir()
        readings = build_reading_ledger(folders[0], args.readings)
        ctes = build_cte_ledger(folders[1], args.events)
        print(f"built both ledgers in {time.perf_counter() - began:.0f} s", file=sys.stderr)

        before = baseline()
        epcis = [time_epcis_export(readings) for _ in range(args.runs)]
        peak = time_epcis_export(readings, memory=True)["peak_mib"]
        fsma = [time_fsma_export(ctes) for _ in range(args.runs)]
        after = baseline()

    openssl = statistics.mean([before[0], after[0]])
    sodium = statistics.mean([before[1], after[1]])
    best = min(epcis, key=lambda run: run["seconds"])
    rows = fsma[0]["rows"]
    table = [
        (
            f"EPCIS 2.0, {args.readings:,} readings ({best['events']:,} events, "
            f"{best['bytes'] / 1e6:.1f} MB), streamed; peak {peak:.1f} MiB",
            best["seconds"],
            args.readings,
            "readings/s",
        ),
    ]
    for name in ("csv", "xlsx"):
        seconds = min(run[f"{name}_seconds"] for run in fsma)
        size = fsma[0][f"{name}_bytes"] / 1e6
        table.append(
            (f"FSMA 204 {name.upper()}, {rows:,} rows ({size:.1f} MB)", seconds, rows, "rows/s")
        )

    print(f"\nbest of {args.runs}; raw verify, 1 core: OpenSSL {openssl:,.0f}/s, libsodium "
          f"{sodium:,.0f}/s\n")  # fmt: skip
    print("| export | time | rate | × raw OpenSSL verify | × raw libsodium verify |")
    print("|---|---|---|---|---|")
    for label, seconds, count, unit in table:
        rate = count / seconds
        print(
            f"| {label} | {seconds:.1f} s | {rate:,.0f} {unit} | {rate / openssl:.2f} | "
            f"{rate / sodium:.2f} |"
        )
    print(
        f"\nraw verify before/after: OpenSSL {before[0]:,.0f}/s, {after[0]:,.0f}/s; "
        f"libsodium {before[1]:,.0f}/s, {after[1]:,.0f}/s"
    )


if __name__ == "__main__":
    main()
