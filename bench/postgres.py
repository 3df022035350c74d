"""PostgreSQL benchmark: the sequencer's integrate rate into PostgreSQL against
one ingest node's rate, and storage per reading, in one run.

    .venv/bin/python bench/postgres.py [--readings 100000] [--batch 500] [--node 10000]

1. One ingest node: `provenance ingest` (its own processes) on a SQLite ledger,
   fed one signed reading per message by publisher processes through a private
   Mosquitto (bench/ingest.py's phase (a), shorter): committed envelopes/s.
2. The sequencer alone on PostgreSQL: a fresh server from Debian's packages
   (tests/support/postgres.py, fsync on, as deployed), `Ledger.append` of
   readings whose signatures were checked beforehand (what ingest nodes hand
   over), in batches of --batch: integrated envelopes/s, and the same on a
   SQLite file for comparison.
3. Storage per reading in PostgreSQL: growth of `pg_total_relation_size` over
   every table of the ledger (indexes and TOAST included) / readings.

Prints a Markdown table for docs/performance.md (section "PostgreSQL").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # support/postgres.py starts the server

from ingest import Bench, Ingest  # noqa: E402  (bench/ingest.py)
from ledger import setup, signed_readings  # noqa: E402  (bench/ledger.py)
from support.postgres import running_server  # noqa: E402

from provenance.core.envelope import Envelope  # noqa: E402
from provenance.ledger.append import Ledger  # noqa: E402
from provenance.store.db import Store  # noqa: E402

TARGET_RATIO = 10.0  # issue 14: the sequencer ≥ 10 × one node, so ten nodes scale first
TARGET_BYTES = 400


def node_rate(envelopes: int) -> float:
    """Committed envelopes/s of one ingest node, one envelope per message."""
    with tempfile.TemporaryDirectory(prefix="bench-pg-node-") as tmp:
        bench = Bench(SimpleNamespace(publishers=2), Path(tmp))
        ingest = Ingest(bench.db, bench.keys, bench.broker.url, Path(tmp) / "ingest.log")
        try:
            rate, _ = bench.ingest_rate(ingest, envelopes, 1)
        finally:
            ingest.stop()
            bench.close()
    return rate


def checked_envelopes(wire: list[bytes]) -> list[Envelope]:
    """The readings as an ingest node hands them on: parsed, signatures checked."""
    envelopes = [Envelope.from_json(json.loads(raw)) for raw in wire]
    for envelope in envelopes:
        envelope.verify_signature()
    return envelopes


def sequencer(store: Store, readings: int, batch: int) -> tuple[float, float]:
    """(integrated envelopes/s, bytes per reading) of `Ledger.append` on *store*."""
    _, ledger, _, probe = setup(Path("."), store=store)
    envelopes = checked_envelopes(signed_readings(probe, readings))
    store.checkpoint_wal()
    size_before = store.bytes_in_use()
    start = time.perf_counter()
    for offset in range(0, len(envelopes), batch):
        results = ledger.append(envelopes[offset : offset + batch])
        assert all(r.status == "accepted" for r in results), results[0]
    seconds = time.perf_counter() - start
    store.checkpoint_wal()
    per_reading = (store.bytes_in_use() - size_before) / readings
    ledger.close()
    return readings / seconds, per_reading


def _writer(
    url: str,
    log_pem: bytes,
    probe_pem: bytes,
    first: int,
    count: int,
    batch: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """One sequencer process: sign and check its readings, wait for go, append."""
    log_key = load_pem_private_key(log_pem, None)
    probe = load_pem_private_key(probe_pem, None)
    store = Store(url, create=False)
    ledger = Ledger(store, log_key)  # type: ignore[arg-type]
    wire = signed_readings(probe, first + count)[first:]  # type: ignore[arg-type]
    envelopes = checked_envelopes(wire)
    ready.set()
    go.wait(600)
    start = time.perf_counter()
    for offset in range(0, len(envelopes), batch):
        done = ledger.append(envelopes[offset : offset + batch])
        assert all(r.status == "accepted" for r in done), done[0]
    results.put((start, time.perf_counter()))
    ledger.close()
    store.close()


def two_sequencers(url: str, readings: int, batch: int) -> float:
    """Integrated envelopes/s of two sequencer processes appending at once to
    one PostgreSQL ledger (each reloads its caches after the other's commits)."""
    store = Store(url)
    second = Ed25519PrivateKey.generate()
    _, ledger, log_key, probe = setup(Path("."), store=store, more_probes=(second,))
    ledger.close()
    store.close()
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    half = readings // 2
    processes, ready = [], []
    for device in (probe, second):  # a probe each, as ingest nodes see different devices
        event = context.Event()
        ready.append(event)
        processes.append(
            context.Process(
                target=_writer,
                args=(url, _pem(log_key), _pem(device), 0, half, batch, event, go, results),
            )
        )
        processes[-1].start()
    for event in ready:
        if not event.wait(600):
            raise RuntimeError("a sequencer process did not get ready")
    go.set()
    spans = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(60)
    return 2 * half / (max(end for _, end in spans) - min(start for start, _ in spans))


def _pem(key: Any) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="envelopes per append")
    parser.add_argument("--node", type=int, default=10_000, help="envelopes for the node phase")
    args = parser.parse_args()

    print(f"one ingest node, {args.node} messages of one envelope …", flush=True)
    node = node_rate(args.node)
    print(f"  {node:,.0f} envelopes/s", flush=True)

    with running_server(durable=True) as server:
        store = Store(server.url())
        print(f"sequencer on PostgreSQL, {args.readings} readings …", flush=True)
        pg_rate, pg_bytes = sequencer(store, args.readings, args.batch)
        store.close()
        print("two sequencer processes on one PostgreSQL ledger …", flush=True)
        two_rate = two_sequencers(server.fresh_schema(), args.readings // 2, args.batch)
    print(f"  {two_rate:,.0f} envelopes/s together", flush=True)
    print(f"  {pg_rate:,.0f} envelopes/s, {pg_bytes:.0f} bytes per reading", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-pg-sqlite-") as tmp:
        store = Store(Path(tmp) / "bench.db")
        print(f"sequencer on SQLite, {args.readings} readings …", flush=True)
        lite_rate, lite_bytes = sequencer(store, args.readings, args.batch)
        store.close()
    print(f"  {lite_rate:,.0f} envelopes/s, {lite_bytes:.0f} bytes per reading", flush=True)

    print()
    print(f"PostgreSQL benchmark, {os.cpu_count()} cores, batches of {args.batch}")
    print()
    print("| measure | value | ratio | target |")
    print("|---|---|---|---|")
    print(f"| one ingest node, 1 envelope per message (SQLite) | {node:,.0f} envelopes/s | 1 | |")
    print(
        f"| sequencer into PostgreSQL, signatures checked | {pg_rate:,.0f} envelopes/s | "
        f"**{pg_rate / node:.2f}** × one node | ≥ {TARGET_RATIO:g} × "
        f"{'✅' if pg_rate / node >= TARGET_RATIO else '❌'} |"
    )
    print(
        f"| two sequencer processes into one PostgreSQL ledger | {two_rate:,.0f} envelopes/s | "
        f"{two_rate / pg_rate:.2f} × one sequencer | |"
    )
    print(
        f"| sequencer into SQLite (file), signatures checked | {lite_rate:,.0f} envelopes/s | "
        f"{lite_rate / node:.2f} × one node | |"
    )
    print(
        f"| storage per reading, PostgreSQL, indexes included | {pg_bytes:.0f} bytes | | "
        f"≤ {TARGET_BYTES} {'✅' if pg_bytes <= TARGET_BYTES else '❌'} |"
    )
    print(f"| storage per reading, SQLite | {lite_bytes:.0f} bytes | | |")


if __name__ == "__main__":
    main()
