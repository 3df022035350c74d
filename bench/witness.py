"""Witness benchmark: checkpoints cosigned per second by one witness, as a ratio to
the raw single-core Ed25519 sign rate measured in the same run, with the same
library (OpenSSL through `cryptography`, which the witness signs with).

    .venv/bin/python bench/witness.py [--logs 64] [--steps 40] [--threads 2]

A witness following ``--logs`` logs receives, per log, ``--steps`` checkpoints in
order, each with the consistency proof from the previous one (logs of ~200,000
leaves growing by 97 per step): the full add-checkpoint path — parse, the log's
signature checked (libsodium), the proof checked, cosigned, the compare-and-swap
committed to the witness's SQLite file (WAL, synchronous=FULL) — measured:

- in-process (`Witness.add_checkpoint`, no HTTP), one thread, then ``--threads``
  threads (each its own logs: requests for one log are sequential by nature);
- over HTTP to `provenance witness serve`'s WSGI app under waitress on a loopback
  port, ``--threads`` keep-alive clients (client and server share the machine).

Also printed: the raw libsodium verify rate (the witness must check the log's
signature before it cosigns, so one cosignature costs a sign and a verify).
Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.checkpoint import Checkpoint, sign_checkpoint
from provenance.core.cosignature import cosigned_message
from provenance.core.ed25519 import Verifier
from provenance.core.merkle import verify_consistency
from provenance.infra.keystore import KeyStore
from provenance.witness.service import Witness
from provenance.witness.state import WitnessState

RAW_SECONDS = 2.0
START_SIZE = 200_000
STEP = 97


def raw_sign_rate(seconds: float = RAW_SECONDS) -> float:
    """Signatures/s of one thread over a cosignature-sized message (OpenSSL)."""
    key = Ed25519PrivateKey.generate()
    cp = Checkpoint("log.example/bench", START_SIZE, bytes(32), ("heads 1 x",))
    message = cosigned_message(cp, 1_790_000_000)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            key.sign(message)
        count += 200
    return count / elapsed


def raw_verify_rate(seconds: float = RAW_SECONDS) -> float:
    """libsodium verifies/s of one thread over a checkpoint-sized message."""
    key = Ed25519PrivateKey.generate()
    message = Checkpoint("log.example/bench", START_SIZE, bytes(32), ("heads 1 x",)).to_text()
    data = message.encode()
    signature = key.sign(data)
    verifier = Verifier(key.public_key().public_bytes_raw())
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            verifier.verify(signature, data)
        count += 200
    return count / elapsed


class Logs:
    """``count`` logs, each its own origin and key, over one shared tree (the same
    leaves: building one ~1M-leaf tree per log would take minutes). Sizes go
    START_SIZE, START_SIZE + STEP, …; each request carries the real consistency
    proof from the previous size."""

    def __init__(self, count: int, steps: int):
        from provenance.core.merkle import MemoryTree, hash_leaf

        self.tree = MemoryTree(hash_leaf(b"%d" % i) for i in range(START_SIZE + STEP * steps))
        self.sizes = [START_SIZE + STEP * i for i in range(steps)]
        self.keys = {f"log{i}.example/bench": Ed25519PrivateKey.generate() for i in range(count)}

    def requests(self, origin: str) -> list[bytes]:
        out, old = [], 0
        key = self.keys[origin]
        for size in self.sizes:
            cp = Checkpoint(origin, size, self.tree.root(size), ("heads 1 x",))
            note = sign_checkpoint(cp, origin, key)
            proof = self.tree.consistency_proof(old, size) if old else []
            if old:
                verify_consistency(old, size, proof, self.tree.root(old), cp.root_hash)
            lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
            out.append(("\n".join(lines) + "\n\n" + note).encode())
            old = size
        return out


def make_witness(directory: Path, logs: Logs) -> tuple[WitnessState, Witness]:
    state = WitnessState(directory / "witness.db", create=True, name="witness.bench/1")
    key = KeyStore(directory).create("witness")
    for origin, log_key in logs.keys.items():
        state.add_log(origin, origin, log_key.public_key().public_bytes_raw())
    return state, Witness(state, key)


def run_in_process(witness: Witness, work: list[list[bytes]], threads: int) -> float:
    """Cosignatures/s with ``threads`` threads, each taking whole logs in turn."""
    shares = [work[i::threads] for i in range(threads)]
    failures: list[str] = []

    def worker(share: list[list[bytes]]) -> None:
        for bodies in share:
            for body in bodies:
                reply = witness.add_checkpoint(body)
                if reply.status != 200:
                    failures.append(f"{reply.status} {reply.body}")

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    assert not failures, failures[:3]
    return sum(len(b) for b in work) / elapsed


def run_http(witness: Witness, work: list[list[bytes]], threads: int) -> float:
    import waitress.server

    from provenance.witness.http import create_app

    server = waitress.server.create_server(
        create_app(witness), host="127.0.0.1", port=0, threads=threads + 2
    )
    port = server.effective_port
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    failures: list[str] = []

    def worker(share: list[list[bytes]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for bodies in share:
            for body in bodies:
                conn.request("POST", "/add-checkpoint", body=body)
                response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    failures.append(f"{response.status} {data!r}")
        conn.close()

    shares = [work[i::threads] for i in range(threads)]
    try:
        start = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(share,)) for share in shares]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
    finally:
        server.close()
    assert not failures, failures[:3]
    return sum(len(b) for b in work) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    print(f"preparing {args.logs} logs x {args.steps} checkpoints ...", flush=True)
    logs = Logs(args.logs, args.steps)
    work = [logs.requests(origin) for origin in logs.keys]
    sign_before = raw_sign_rate()
    verify_rate = raw_verify_rate()
    results = {}
    for label, threads, over_http in (
        ("in-process, 1 thread", 1, False),
        (f"in-process, {args.threads} threads", args.threads, False),
        (f"HTTP (waitress, loopback), {args.threads} clients", args.threads, True),
    ):
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            state, witness = make_witness(Path(tmp), logs)
            try:
                run = run_http if over_http else run_in_process
                results[label] = run(witness, work, threads)
            finally:
                state.close()
    sign_after = raw_sign_rate()
    sign = (sign_before + sign_after) / 2
    print()
    print(
        f"raw Ed25519 sign (OpenSSL, 1 core): {sign_before:,.0f}/s before, "
        f"{sign_after:,.0f}/s after"
    )
    print(f"raw Ed25519 verify (libsodium, 1 core): {verify_rate:,.0f}/s")
    print(
        f"one sign + one verify, 1 core (the floor of a cosignature): "
        f"{1 / (1 / sign + 1 / verify_rate):,.0f}/s = {1 / (1 + sign / verify_rate):.2f} x sign"
    )
    print()
    print("| path | cosignatures/s | × raw sign rate |")
    print("|---|---:|---:|")
    for label, rate in results.items():
        print(f"| {label} | {rate:,.0f} | {rate / sign:.2f} |")


if __name__ == "__main__":
    main()
