"""Tile reads: a monitor fetching the whole log from C2SP tlog-tiles over HTTP, against
the same monitor through `/log/v1/entries` (issue 14's target: ≥ 10 × faster).

    .venv/bin/python bench/tiles.py [--entries 1000000] [--ledger 20000] [--clients 4]

1. A real ledger of ``--ledger`` readings (signed, appended through `Ledger.append`).
2. A tiles folder of ``--entries`` leaves written through the real writer
   (`TileDirectory.catch_up`, fsync on): the ledger's canonical envelopes cycled
   to that many leaves (entry = SHA-256 of the envelope, as an event id is),
   under a checkpoint signed for that tree. Building a real 1,000,000-event
   ledger would take most of the run and measure nothing more: the tiles are
   the same files, and a tile read never touches the database.
3. `provenance serve`'s WSGI app under waitress, in a process of its own on a
   loopback port, serves both
   (``/log/v1/*`` with its rate limit lifted, so the figure is the server's
   speed, not the limit's: the public limit, 600 requests a minute of 100
   entries, caps a client at 1,000 entries/s whatever the server does).
4. The monitor, ``--clients`` keep-alive connections, does the same work both
   ways: every envelope fetched, its event id computed from canonical bytes, the
   leaf hash of each, the tree's root from them, compared with the checkpoint's.
   Through `/log/v1/entries` (100 per request, JSON) each envelope is parsed and
   re-canonicalised; through tiles each `envelopes/<N>` bundle gives canonical
   bytes, hashed as they are.

Prints a Markdown table for docs/performance.md. Client and server share the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # support/export_ledgers.py

from support.export_ledgers import build_reading_ledger  # noqa: E402

from provenance.core.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from provenance.core.envelope import Envelope  # noqa: E402
from provenance.core.merkle import hash_leaf, root_from_leaf_hashes  # noqa: E402
from provenance.core.tiles import (  # noqa: E402
    ENVELOPE_PREFIX,
    TILE_WIDTH,
    decode_bundle,
    envelope_bundle_path,
)
from provenance.infra.tile_files import TileDirectory, note_checkpoint  # noqa: E402
from provenance.ledger.proofs import checkpoint_body  # noqa: E402
from provenance.ledger.tiles import publish_tiles  # noqa: E402

ORIGIN = "bench.example/log"
PAGE = 100  # /log/v1/entries gives at most this many per request


def write_synthetic_tiles(folder: Path, envelopes: list[bytes], entries: int) -> tuple[str, float]:
    """``entries`` leaves cycling ``envelopes``, written through the real writer;
    (the checkpoint note, seconds spent writing)."""
    ids = [hashlib.sha256(e).digest() for e in envelopes]
    n = len(envelopes)

    def leaves(begin: int, end: int) -> list[tuple[bytes, bytes]]:
        return [(ids[i % n], envelopes[i % n]) for i in range(begin, end)]

    root = root_from_leaf_hashes(hash_leaf(ids[i % n]) for i in range(entries))
    key = Ed25519PrivateKey.generate()
    note = sign_checkpoint(Checkpoint(ORIGIN, entries, root), ORIGIN, key)
    start = time.perf_counter()
    TileDirectory(folder).catch_up(note, leaves)
    return note, time.perf_counter() - start


SERVER = """\
import sys
import waitress.server
from provenance.web import create_app

app = create_app({
    "DATABASE": sys.argv[1], "TILES_DIR": sys.argv[2],
    "RATE_LIMITS": {"log": None}, "RECORD_SCANS": False,
})
server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=8)
print(server.effective_port, flush=True)
server.run()
"""


def serve(database: Path, tiles: Path) -> tuple[subprocess.Popen, int]:
    """`provenance serve`'s WSGI app under waitress in a process of its own (as a
    monitor meets it: the server's work is not on the client's interpreter)."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(database), str(tiles)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return process, int(line)


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by this process, or by process *pid*."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(server: subprocess.Popen, run) -> tuple[tuple, tuple[float, float]]:
    """run()'s result and the CPU seconds it cost (client, server)."""
    client, served = cpu_seconds(), cpu_seconds(server.pid)
    result = run()
    return result, (cpu_seconds() - client, cpu_seconds(server.pid) - served)


def fetch(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {data[:200]!r}")
    return data


def in_parallel(port: int, clients: int, jobs: list, work) -> list:
    """Run work(conn, job) for each job on ``clients`` keep-alive connections;
    results in job order."""
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for i in range(offset, len(jobs), clients):
                results[i] = work(conn, jobs[i])
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            conn.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return results


def monitor_entries_api(port: int, clients: int) -> tuple[int, float]:
    """The whole log through /log/v1/entries: (entries, seconds)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    note = fetch(conn, "/log/v1/checkpoint").decode()
    conn.close()
    cp = checkpoint_body(note)

    def page(conn: http.client.HTTPConnection, begin: int) -> list[bytes]:
        end = min(cp.size, begin + PAGE)
        body = json.loads(fetch(conn, f"/log/v1/entries?start={begin}&end={end}"))
        got = [Envelope.from_json(e["envelope"]).id_bytes for e in body["entries"]]
        assert len(got) == end - begin
        return [hash_leaf(i) for i in got]

    pages = in_parallel(port, clients, list(range(0, cp.size, PAGE)), page)
    root = root_from_leaf_hashes(h for p in pages for h in p)
    assert root == cp.root_hash, "the entries do not give the checkpoint's root"
    return cp.size, time.perf_counter() - start


def monitor_tiles(port: int, clients: int) -> tuple[int, float, int]:
    """The whole log through /log/tiles/: (entries, seconds, bytes fetched)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    cp = note_checkpoint(fetch(conn, "/log/tiles/checkpoint").decode())
    conn.close()
    fetched = [0]

    def bundle(conn: http.client.HTTPConnection, index: int) -> list[bytes]:
        width = min(TILE_WIDTH, cp.size - index * TILE_WIDTH)
        data = fetch(conn, "/log/tiles/" + envelope_bundle_path(index, width))
        fetched[0] += len(data)
        envelopes = decode_bundle(data, ENVELOPE_PREFIX)
        assert len(envelopes) == width
        sha = hashlib.sha256
        return [hash_leaf(sha(e).digest()) for e in envelopes]

    bundles = -(-cp.size // TILE_WIDTH)
    leaves = in_parallel(port, clients, list(range(bundles)), bundle)
    root = root_from_leaf_hashes(h for b in leaves for h in b)
    assert root == cp.root_hash, "the tiles do not give the checkpoint's root"
    return cp.size, time.perf_counter() - start, fetched[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="leaves in the tiles")
    parser.add_argument("--ledger", type=int, default=20_000, help="readings in the real ledger")
    parser.add_argument("--clients", type=int, default=4, help="keep-alive connections")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    try:
        t = time.perf_counter()
        world = build_reading_ledger(work, args.ledger)
        publish_start = time.perf_counter()
        publish_tiles(world.store, TileDirectory(work / "real-tiles"))
        publish_s = time.perf_counter() - publish_start
        envelopes = [e.envelope.canonical_bytes() for e in world.store.events()]
        print(f"ledger of {len(envelopes)} events in {time.perf_counter() - t:.1f} s", flush=True)
        note, write_s = write_synthetic_tiles(work / "tiles", envelopes, args.entries)
        size = note_checkpoint(note).size
        on_disk = sum(f.stat().st_size for f in (work / "tiles").rglob("*") if f.is_file())
        print(f"{size} leaves of tiles written in {write_s:.1f} s", flush=True)
        real, real_port = serve(world.store.path, work / "real-tiles")
        big, big_port = serve(world.store.path, work / "tiles")
        try:
            # The same ledger both ways, interleaved (the machine's load moves): best of
            # each, in wall-clock seconds and in CPU seconds (client + server).
            api_s = tile_small_s = tile_s = float("inf")
            worst = (float("inf"), float("inf"))
            api_cpu = small_cpu = tile_cpu = worst
            for _ in range(args.rounds):
                (api_n, seconds), cpu = measured(
                    real, lambda: monitor_entries_api(real_port, args.clients)
                )
                api_s, api_cpu = min(api_s, seconds), min(api_cpu, cpu, key=sum)
                (small_n, seconds, _), cpu = measured(
                    real, lambda: monitor_tiles(real_port, args.clients)
                )
                tile_small_s, small_cpu = min(tile_small_s, seconds), min(small_cpu, cpu, key=sum)
                (tile_n, seconds, tile_bytes), cpu = measured(
                    big, lambda: monitor_tiles(big_port, args.clients)
                )
                tile_s, tile_cpu = min(tile_s, seconds), min(tile_cpu, cpu, key=sum)
                print(
                    f"round: {api_n / api_s:,.0f} / {small_n / tile_small_s:,.0f} / "
                    f"{tile_n / tile_s:,.0f} entries/s",
                    flush=True,
                )
        finally:
            for server in (real, big):
                server.terminate()
                server.wait(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    api_rate, small_rate, tile_rate = api_n / api_s, small_n / tile_small_s, tile_n / tile_s
    print()
    print("| what | entries | seconds | entries/s |")
    print("|---|---:|---:|---:|")
    api = f"{api_rate:,.0f}"
    print(f"| ledger via `/log/v1/entries` (limit lifted) | {api_n:,} | {api_s:.2f} | {api} |")
    print(
        f"| ledger via tiles (`envelopes/` bundles) | {small_n:,} | {tile_small_s:.2f} | "
        f"{small_rate:,.0f} |"
    )
    tiles = f"{tile_rate:,.0f}"
    print(f"| {tile_n:,} leaves via tiles | {tile_n:,} | {tile_s:.1f} | {tiles} |")
    print(
        f"| {tile_n:,} via `/log/v1/entries`, at the ledger's rate | {tile_n:,} | "
        f"{tile_n / api_rate:.0f} | {api} |"
    )
    print(
        f"| {tile_n:,} under the public limit (600 req/min × {PAGE}) | {tile_n:,} | "
        f"{tile_n / 1000:.0f} | 1,000 |"
    )
    print()
    print(
        f"- whole log of {tile_n:,}: tiles / entries API **{tile_rate / api_rate:.1f} ×** "
        f"(target ≥ 10 ×); the same ledger both ways: {small_rate / api_rate:.1f} ×"
    )
    api_us, small_us, tile_us = (
        [1e6 * c / n for c in cpu]
        for cpu, n in ((api_cpu, api_n), (small_cpu, small_n), (tile_cpu, tile_n))
    )
    print(
        f"- CPU per entry, client + server: entries API {api_us[0]:.1f} + {api_us[1]:.1f} µs, "
        f"tiles {small_us[0]:.1f} + {small_us[1]:.1f} µs (same ledger), "
        f"{tile_us[0]:.1f} + {tile_us[1]:.1f} µs (whole log): "
        f"**{sum(api_us) / sum(tile_us):.1f} ×** less (a ratio load moves little)"
    )
    print(f"- tiles / the public limit: {tile_rate / 1000:.0f} ×")
    print(
        f"- writer: {size:,} leaves in {write_s:.1f} s ({size / write_s:,.0f} leaves/s, fsync on), "
        f"{on_disk / 2**20:.0f} MiB on disk, {tile_bytes / tile_n:.0f} bytes fetched per entry"
    )
    print(
        f"- from the ledger (`publish_tiles`, envelopes re-read from SQLite): "
        f"{args.ledger:,} events in {publish_s:.2f} s ({len(envelopes) / publish_s:,.0f}/s)"
    )
    print(
        f"- {args.clients} client connections; server: waitress, 8 threads, its own process; "
        f"best of {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
