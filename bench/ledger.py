"""Ledger benchmark: append and whole-ledger verify rates as ratios of the raw
single-core Ed25519 verify rate measured in the same run, and bytes on disk
per stored reading.

    .venv/bin/python bench/ledger.py [--readings 100000] [--batch 500]

Uses only the public API. Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.ed25519 import Verifier
from provenance.core.identity import public_key_from_did
from provenance.core.signing import did_of, sign
from provenance.core.timefmt import format_time, now_micros
from provenance.ledger.append import Ledger
from provenance.ledger.audit import verify_ledger
from provenance.store.db import Store

LOT = "https://id.gs1.org/01/09506000134352/10/BENCH-1"


LIBRARIES = ("openssl", "libsodium")  # OpenSSL via `cryptography`; libsodium via PyNaCl


def raw_verify_rate(seconds: float = 2.0, library: str = "openssl") -> float:
    """Ed25519 verifies/s on one core for a reading-sized message, with
    OpenSSL (the baseline the targets were set against) or libsodium (what
    the ledger verifies with since provenance/core/ed25519.py)."""
    key = Ed25519PrivateKey.generate()
    if library == "openssl":
        public: Any = key.public_key()
    elif library == "libsodium":
        public = Verifier(key.public_key().public_bytes_raw())
    else:
        raise ValueError(f"library must be one of {', '.join(LIBRARIES)}")
    message = b'{"data":{"humidity_pct":61.5,"temperature_c":4.25},"kind":"reading","seq":4211,' + (
        b'"signer":"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",'
        b'"time":"2026-11-22T10:15:00.123Z","v":1}'
    )
    signature = key.sign(message)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            public.verify(signature, message)
        count += 500
    return count / (time.perf_counter() - start)


def setup(
    directory: Path, store: Store | None = None, more_probes: tuple[Ed25519PrivateKey, ...] = ()
) -> tuple[Store, Ledger, Ed25519PrivateKey, Ed25519PrivateKey]:
    """A ledger with a producer, a probe (and *more_probes*) attached to a lot: in
    *directory*, or on *store*."""
    store = store or Store(directory / "bench.db")
    log_key, registrar = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ledger = Ledger.initialise(store, log_key, registrar, "bench.local/log")
    farm, probe = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    start = now_micros() - 10 * 24 * 3600 * 1_000_000
    t = format_time(start)

    def reg(seq: int, data: dict) -> None:
        result = ledger.append([sign(registrar, kind="enrol", seq=seq, time=t, data=data)])[0]
        assert result.ok, result

    reg(
        1,
        {
            "subject": did_of(farm),
            "type": "party",
            "name": "farm",
            "role": "producer",
            "gs1_company_prefixes": ["9506000"],  # the GTIN's: it may commission under it
        },
    )
    probes = (probe, *more_probes)
    for number, device in enumerate(probes):
        name = f"probe{number or ''}"
        reg(
            2 + number,
            {"subject": did_of(device), "type": "device", "name": name, "owner": did_of(farm)},
        )
    commission = {"gtin": "09506000134352", "lot": "BENCH-1", "product": "Kale"}
    for seq, kind, lots, data in (
        (0, "commission", [LOT], commission),
        *((1 + n, "attach", [LOT], {"device": did_of(p)}) for n, p in enumerate(probes)),
    ):
        result = ledger.append([sign(farm, kind=kind, seq=seq, time=t, data=data, lots=lots)])
        assert result[0].ok, result
    return store, ledger, log_key, probe


def signed_readings(probe: Ed25519PrivateKey, count: int) -> list[bytes]:
    start = now_micros() - 9 * 24 * 3600 * 1_000_000
    out = []
    for i in range(count):
        envelope = sign(
            probe,
            kind="reading",
            seq=i,
            time=format_time(start + i * 5_000_000),
            data={"temperature_c": round(3 + (i % 50) / 10, 2), "humidity_pct": 60 + i % 20},
        )
        out.append(json.dumps(envelope.to_json()).encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        store, ledger, log_key, probe = setup(directory)
        print(f"signing {args.readings} readings …", flush=True)
        wire = signed_readings(probe, args.readings)
        raw_before = raw_verify_rate()
        sodium_before = raw_verify_rate(library="libsodium")
        size_before = _db_bytes(store)

        start = time.perf_counter()
        for offset in range(0, len(wire), args.batch):
            results = ledger.append(wire[offset : offset + args.batch])
            assert all(r.status == "accepted" for r in results), results[0]
        append_seconds = time.perf_counter() - start
        append_rate = len(wire) / append_seconds

        store.checkpoint_wal()
        per_reading = (_db_bytes(store) - size_before) / len(wire)

        log_public = public_key_from_did(did_of(log_key))
        start = time.perf_counter()
        report = verify_ledger(store, log_public)
        verify_seconds = time.perf_counter() - start
        assert report.ok, report.problems[:3]
        verify_rate = report.log_size / verify_seconds
        raw_after = raw_verify_rate()
        sodium_after = raw_verify_rate(library="libsodium")
        raw = statistics.mean([raw_before, raw_after])
        sodium = statistics.mean([sodium_before, sodium_after])

        print()
        print(
            f"| measure | value | × raw verify, OpenSSL ({raw:,.0f}/s, 1 core) "
            f"| × raw verify, libsodium ({sodium:,.0f}/s) | target |"
        )
        print("|---|---|---|---|---|")
        print(
            f"| append, batches of {args.batch} | {append_rate:,.0f} readings/s | "
            f"{append_rate / raw:.2f} | {append_rate / sodium:.2f} | ≥ 0.70 |"
        )
        print(
            f"| whole-ledger verify, {report.log_size:,} events, {os.cpu_count()} cores | "
            f"{verify_rate:,.0f} events/s | {verify_rate / raw:.2f} | {verify_rate / sodium:.2f} "
            "| ≥ 1.60 |"
        )
        print(
            f"| disk per stored reading (indexes included) | {per_reading:.0f} bytes | | | ≤ 400 |"
        )
        print(
            f"\nraw verify before/after: OpenSSL {raw_before:,.0f}/s, {raw_after:,.0f}/s; "
            f"libsodium {sodium_before:,.0f}/s, {sodium_after:,.0f}/s"
        )


def _db_bytes(store: Store) -> int:
    assert store.path is not None
    return store.bytes_in_use()


if __name__ == "__main__":
    sqlite3.enable_callback_tracebacks(True)
    main()
