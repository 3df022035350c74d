"""A writer process for the PostgreSQL tests: appends readings of one device
to the ledger at a --db URL, in batches, and prints one line per batch.

python pg_writer.py URL LOG_KEY_HEX DEVICE_KEY_HEX FIRST_SEQ COUNT BATCH NOW_US

Only the project's public API: what a second ingest node would do.
"""

from __future__ import annotations

import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.signing import sign
from provenance.core.timefmt import format_time
from provenance.ledger.append import Ledger
from provenance.store.db import Store

T0 = 1_790_000_000_000_000  # support.world.T0
HOUR = 3_600_000_000


def main(url: str, log_hex: str, device_hex: str, first: int, count: int, batch: int, now: int):
    log_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(log_hex))
    device = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(device_hex))
    ledger = Ledger(Store(url, create=False), log_key, clock=lambda: now)
    for start in range(first, first + count, batch):
        envelopes = [
            sign(
                device,
                kind="reading",
                seq=seq,
                time=format_time(T0 + HOUR + seq * 1_000_000),
                data={"temperature_c": 4.0},
                lots=None,
            )
            for seq in range(start, min(start + batch, first + count))
        ]
        results = ledger.append(envelopes)
        bad = [r for r in results if r.status != "accepted"]
        if bad:
            print(f"refused {bad[0]}", flush=True)
            return 1
        print(f"ok {results[-1].index}", flush=True)
    ledger.store.close()
    return 0


if __name__ == "__main__":
    url, log_hex, device_hex, *numbers = sys.argv[1:]
    sys.exit(main(url, log_hex, device_hex, *map(int, numbers)))
