"""Large ledgers for the export benchmarks (bench/exports.py) and the tests
that keep their harness honest: many readings for EPCIS, many CTE events for
FSMA 204, and the timed exports themselves.
"""

from __future__ import annotations

import tempfile
import time as clock
import tracemalloc
from pathlib import Path

from provenance.core import gs1
from provenance.core.timefmt import format_time
from provenance.exchange.epcis import write_ledger_document
from provenance.exchange.fsma204 import store_rows, write_csv, write_xlsx
from support.world import GTIN, HOUR, T0, World

CREATED = "2026-10-21T00:00:00.000Z"


def build_reading_ledger(directory: Path | None, readings: int) -> World:
    """A ledger with LOT42, its probe and *readings* readings, one every 10 s."""
    world = World.create(directory)
    batch = []
    for i in range(readings):
        time = format_time(T0 + HOUR + i * 10_000_000)
        data = {"temperature_c": 4 + i % 20 / 10}
        batch.append(world.sign("probe", "reading", None, data, time=time))
        if len(batch) == 500 or i == readings - 1:
            assert {r.status for r in world.ledger.append(batch)} == {"accepted"}
            batch = []
    return world


def time_epcis_export(world: World, *, memory: bool = False) -> dict[str, float]:
    """Seconds (and with *memory*, the peak of Python allocations in MiB, measured in a
    second run under tracemalloc) to export the whole ledger as EPCIS to a file."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        start = clock.perf_counter()
        count = write_ledger_document(world.store, out, created=CREATED)
        figures = {"seconds": clock.perf_counter() - start, "events": count, "bytes": out.tell()}
    if memory:
        tracemalloc.start()
        with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
            write_ledger_document(world.store, out, created=CREATED)
        figures["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return figures


def build_cte_ledger(directory: Path | None, events: int) -> World:
    """A ledger of about *events* CTE events: lots commissioned (with origin and quantity)
    by the farm, each shipped to the packer and received there."""
    world = World.create(directory)
    lots = max(1, events // 3)
    start = T0 + 3600 * 10**6

    def flush(batch: list) -> list:
        results = world.ledger.append(batch)
        assert {r.status for r in results} == {"accepted"}, results[0]
        return results

    origin = {"name": "Field 4", "lat": -0.42, "lon": 36.95, "country": "KE"}
    for first in range(0, lots, 500):
        names = [f"L{i}" for i in range(first, min(first + 500, lots))]
        uris = [gs1.lot_uri(GTIN, name) for name in names]
        data = {"gtin": GTIN, "product": "Kale", "origin": origin}
        flush([
            world.sign("farm", "commission", [uri], data | {"lot": name, "quantity": {"value": 100, "unit": "KGM"}}, time=format_time(start))  # noqa: E501
            for name, uri in zip(names, uris, strict=True)
        ])  # fmt: skip
        to = {"to": world.did("packer"), "location": {"name": "Dock", "gln": "4012345000115"}}
        ships = flush([world.sign("farm", "ship", [uri], to, time=format_time(start + 10**6)) for uri in uris])  # noqa: E501  # fmt: skip
        flush([
            world.sign("packer", "receive", [uri], {"shipment": s.event_id, "location": {"name": "Plant"}}, time=format_time(start + 2 * 10**6))  # noqa: E501
            for uri, s in zip(uris, ships, strict=True)
        ])  # fmt: skip
    return world


def time_fsma_export(world: World) -> dict[str, float]:
    """Seconds to export the whole ledger's spreadsheet as CSV and as XLSX (to files)."""
    figures: dict[str, float] = {}
    for name, writer in (("csv", write_csv), ("xlsx", write_xlsx)):
        mode = "w+" if name == "csv" else "w+b"
        kwargs = {"encoding": "utf-8", "newline": ""} if name == "csv" else {}
        with tempfile.TemporaryFile(mode, **kwargs) as out:
            start = clock.perf_counter()
            figures["rows"] = writer(store_rows(world.store), out)
            figures[f"{name}_seconds"] = clock.perf_counter() - start
            figures[f"{name}_bytes"] = out.tell()
    return figures


# --- FSMA 204 rows/s as a ratio to raw Ed25519 verifies/s (bench/fsma.py, tests)

VERIFY_MESSAGE = (
    b'{"data":{"humidity_pct":61.5,"temperature_c":4.25},"kind":"reading","seq":4211,'
    b'"signer":"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",'
    b'"time":"2026-11-22T10:15:00.123Z","v":1}'
)  # the reading-sized message bench/ledger.py's raw_verify_rate verifies


def cpu_verify_rate(seconds: float = 1.0) -> float:
    """Raw Ed25519 verifies per CPU second on one core, by the verifier the ledger uses
    (`provenance.core.ed25519.Verifier`, libsodium), of a reading-sized message. CPU time
    of this process, not wall time: on a shared machine the wall clock counts other
    people's work, and the export it is compared with is timed the same way."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from provenance.core.ed25519 import Verifier

    key = Ed25519PrivateKey.generate()
    verifier = Verifier(key.public_key().public_bytes_raw())
    signature = key.sign(VERIFY_MESSAGE)
    count, start = 0, clock.process_time()
    while clock.process_time() - start < seconds:
        for _ in range(200):
            verifier.verify(signature, VERIFY_MESSAGE)
        count += 200
    return count / (clock.process_time() - start)


def fsma_ratio(world: World, runs: int = 3, verify_seconds: float = 1.0) -> dict[str, float]:
    """Each format's export of the whole ledger (to a file), best of *runs*, in wall and
    CPU seconds, and its rows per CPU second as a ratio to `cpu_verify_rate` (the mean of
    a measure before and one after the exports)."""
    before = cpu_verify_rate(verify_seconds)
    figures: dict[str, float] = {}
    for name, writer in (("csv", write_csv), ("xlsx", write_xlsx)):
        mode = "w+" if name == "csv" else "w+b"
        kwargs = {"encoding": "utf-8", "newline": ""} if name == "csv" else {}
        walls, cpus = [], []
        for _ in range(runs):
            with tempfile.TemporaryFile(mode, **kwargs) as out:
                wall, cpu = clock.perf_counter(), clock.process_time()
                figures["rows"] = writer(store_rows(world.store), out)
                cpus.append(clock.process_time() - cpu)
                walls.append(clock.perf_counter() - wall)
                figures[f"{name}_bytes"] = out.tell()
        figures[f"{name}_seconds"], figures[f"{name}_cpu_seconds"] = min(walls), min(cpus)
    after = cpu_verify_rate(verify_seconds)
    figures["verifies_per_s"] = (before + after) / 2
    for name in ("csv", "xlsx"):
        rate = figures["rows"] / figures[f"{name}_cpu_seconds"]
        figures[f"{name}_rows_per_s"] = rate
        figures[f"{name}_ratio"] = rate / figures["verifies_per_s"]
    return figures
