"""Several ingest nodes on one shared subscription and one SQLite ledger:
publisher processes → Mosquitto → `provenance ingest --shared-group bench` × N.

    .venv/bin/python bench/shared_ingest.py [--messages 20000] [--batch 1]

In one run, on bench/ingest.py's private Mosquitto and ledger: one node, then
two nodes (two processes, each with its commit worker and prep processes),
draining the same number of signed readings; the committed envelopes/s of
each, their ratio (target ≥ 1.6 where the cores allow it), and the CPU per
envelope by stage of the one-node run (publishers, broker, the node's MQTT
thread, prep processes, worker) — the inputs of the N-node model in
docs/performance.md, "Several ingest nodes".
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ingest import (  # bench/ingest.py
    Bench,
    Ingest,
)

GROUP = "bench"
ROLES = {  # Ingest.cpu()'s roles, as bench/ingest.py's Costs names them
    "mqtt": "ingest: MQTT, inbox, acks",
    "prep": "ingest: prep processes",
    "append": "ingest: worker, Ledger.append",
}


class Node(Ingest):
    """One `provenance ingest --shared-group` node as a child process."""

    def __init__(self, db: Path, keys: Path, url: str, log: Path, name: str):
        super().__init__(
            db, keys, url, log, client_id=f"bench-node-{name}", extra=("--shared-group", GROUP)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="per phase")
    parser.add_argument("--batch", type=int, default=1, help="envelopes per message")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--seconds", type=float, default=10.0, help="(bench/ingest.py's option)")
    parser.add_argument("--rate", type=float, default=0.0, help="(bench/ingest.py's option)")
    parser.add_argument("--max-readings", type=int, default=0, help="(bench/ingest.py's option)")
    args = parser.parse_args()
    envelopes = args.messages * args.batch
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as tmp:
        bench = Bench(args, Path(tmp))
        nodes: list[Node] = []
        try:
            nodes = [Node(bench.db, bench.keys, bench.broker.url, Path(tmp) / "a.log", "a")]
            one, costs = bench.ingest_rate(nodes[0], envelopes, args.batch)
            print(f"one node: {one:,.0f} envelopes/s", flush=True)
            nodes.append(Node(bench.db, bench.keys, bench.broker.url, Path(tmp) / "b.log", "b"))
            before = nodes[1].cpu()
            two, costs_two = bench.ingest_rate(nodes[0], envelopes, args.batch)
            after = nodes[1].cpu()
            for role, name in ROLES.items():
                costs_two.parts[name] += after[role] - before[role]
            print(f"two nodes: {two:,.0f} envelopes/s", flush=True)
        finally:
            for node in nodes:
                node.stop()
            bench.close()
    print()
    print(
        f"Shared-subscription ingest, {os.cpu_count()} cores, {args.publishers} publishers, "
        f"{args.messages} messages of {args.batch} envelope(s) per phase"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| one node | {one:,.0f} envelopes/s |")
    print(f"| two nodes (two processes) | {two:,.0f} envelopes/s |")
    print(f"| two ÷ one | {two / one:.2f} × (target ≥ 1.6 where the cores allow) |")
    print()
    print("| CPU per envelope (µs) | one node | two nodes (both) |")
    print("|---|---|---|")
    for (name, one_us), (_, two_us) in zip(costs.rows(), costs_two.rows(), strict=True):
        print(f"| {name} | {one_us:.0f} | {two_us:.0f} |")
    print(f"| cores busy | {costs.cores:.2f} | {costs_two.cores:.2f} |")
    print(
        f"| other processes on the machine, cores | {costs.others / costs.seconds:.2f} | "
        f"{costs_two.others / costs_two.seconds:.2f} |"
    )


if __name__ == "__main__":
    main()
