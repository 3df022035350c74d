"""Proof bundle benchmark: size and whole-bundle verify rate for one big lot.

    .venv/bin/python bench/bundle.py [--readings 20000] [--runs 3]

Builds the tests' reading ledger (tests/export_ledgers.py: LOT42, one probe,
*readings* readings), exports the lot's bundle as `provenance export proof`
writes it, and reports (docs/performance.md, "Proof bundles"):

- bytes per event beyond the events: (bundle bytes − the events' own bytes) ÷
  events, where an event's own bytes are its envelope as signed (RFC 8785);
- whole-bundle verify: parse the JSON text and `verify_bundle` it, events/s
  (every event of every chain), as a ratio to the raw single-core Ed25519
  verify rate with the same verifier (libsodium, as `Envelope.verify_signature`
  uses), measured for 1 s right before and after each run (the machine's load
  varies); the median, best and worst of --runs ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # support/world.py and support/export_ledgers.py

from ledger import raw_verify_rate  # noqa: E402  (bench/ledger.py)
from support.export_ledgers import build_reading_ledger  # noqa: E402
from support.world import LOT  # noqa: E402

from provenance.core.bundle import verify_bundle  # noqa: E402
from provenance.core.envelope import Envelope  # noqa: E402
from provenance.ledger.proofs import build_bundle  # noqa: E402


def bundle_text(bundle: dict) -> str:
    """As `provenance export proof` writes it."""
    return json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"


def measure(world, runs: int) -> dict[str, float]:
    began = time.perf_counter()
    bundle = build_bundle(world.store, LOT)
    built = time.perf_counter() - began
    text = bundle_text(bundle)
    items = [item for entry in bundle["chains"] for item in entry["events"]]
    own = sum(len(Envelope.from_json(item["envelope"]).canonical_bytes()) for item in items)
    size = len(text.encode("utf-8"))
    key = world.log_public_key
    runs_out = []
    for _ in range(runs):  # the baseline right around each verify: the load here varies
        before = raw_verify_rate(1.0, library="libsodium")
        start = time.perf_counter()
        verify_bundle(json.loads(text), key)
        seconds = time.perf_counter() - start
        after = raw_verify_rate(1.0, library="libsodium")
        rate = len(items) / seconds
        runs_out.append((rate / ((before + after) / 2), rate, (before + after) / 2, seconds))
    runs_out.sort()
    median = runs_out[len(runs_out) // 2]
    return {
        "events": len(items),
        "bundle_bytes": size,
        "events_bytes": own,
        "beyond_per_event": (size - own) / len(items),
        "build_s": built,
        "verify_s": median[3],
        "verify_events_per_s": median[1],
        "raw_verifies_per_s": median[2],
        "verify_ratio_median": median[0],
        "verify_ratio_best": runs_out[-1][0],
        "verify_ratio_worst": runs_out[0][0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20_000, help="readings in the lot")
    parser.add_argument("--runs", type=int, default=5, help="timed verifies")
    args = parser.parse_args()
    began = time.perf_counter()
    world = build_reading_ledger(None, args.readings)
    print(f"built the ledger in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    figures = measure(world, args.runs)
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
