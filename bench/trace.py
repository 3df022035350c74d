"""Lineage benchmark: trace latency and recall-cascade latency on a large ledger.

    .venv/bin/python bench/trace.py [--events 1000000] [--lots 100000] [--samples 300]

Generates a valid ledger through the public API only (every event signed and
appended through `Ledger.append` in batches; no rows are written directly):
farms commission raw lots, processors receive them and transform 2–3 (now and
then one more, left over from their previous batch) into 1–4 products, split
half of those into 2–3 shipment lots, and ship the rest to distributors; every
raw and shipped lot carries a probe for a few readings. Readings fill the log
up to `--events`. One extra family — a lot made into 20 lots, each made into
49 — gives a recall with 1,000 downstream lots.

Then it measures, on a read connection of its own:
- `lineage.trace(store, uri, "both")` for `--samples` random lots: p50/p95/max;
- the recall of the family's root: `Ledger.append` until committed, and until
  a separate reader sees all 1,000 downstream lots recalled.

Prints a Markdown table (for docs/performance.md) with the raw single-core
Ed25519 verify rate of the same run for scale.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.envelope import Envelope
from provenance.core.signing import did_of, sign
from provenance.core.timefmt import format_time, now_micros
from provenance.ledger.append import Ledger
from provenance.ledger.lineage import trace
from provenance.services.notifier import Cursor, RecallNotifier
from provenance.store.db import Store

GTIN = "09506000134352"
PARTIES = 10  # farms, processors and distributors each
PROBES = 1000
BATCH = 2000  # envelopes per Ledger.append
FAMILY = (20, 49)  # the recall family: root -> 20 lots -> 49 lots each = 1,000 downstream


def lot_uri(code: str) -> str:
    return f"https://id.gs1.org/01/{GTIN}/10/{code}"


class Generator:
    """Signed envelopes of a plausible supply chain, in an order the ledger accepts."""

    def __init__(self, events: int, lots: int, seed: int = 7):
        self.target_events, self.target_lots = events, lots
        self.rng = random.Random(seed)
        self.registrar = Ed25519PrivateKey.generate()
        self.log_key = Ed25519PrivateKey.generate()
        new = Ed25519PrivateKey.generate
        self.farms = [new() for _ in range(PARTIES)]
        self.processors = [new() for _ in range(PARTIES)]
        self.distributors = [new() for _ in range(PARTIES)]
        self.regulator = new()
        self.probes = [new() for _ in range(PROBES)]
        self.seqs: dict[Ed25519PrivateKey, int] = {}
        self.clock = now_micros() - 40 * 24 * 3600 * 1_000_000
        self.emitted = 0
        self.lots_made = 0
        self.family_root = ""
        self.family: list[str] = []
        self._probe = 0

    # --- one event

    def sign(
        self, key: Ed25519PrivateKey, kind: str, lots: list[str] | None, data: dict[str, Any]
    ) -> Envelope:
        seq = self.seqs.get(key, 1 if key is self.registrar else 0)
        self.seqs[key] = seq + 1
        self.clock += 1000
        self.emitted += 1
        return sign(key, kind=kind, seq=seq, time=format_time(self.clock), data=data, lots=lots)

    def new_lot(self, prefix: str) -> str:
        self.lots_made += 1
        return lot_uri(f"{prefix}{self.lots_made}")

    # --- the supply chain

    def events(self) -> Iterator[Envelope]:
        yield from self._enrolments()
        yield from self._family()
        group = 0
        leftover: dict[int, str] = {}
        while self.lots_made < self.target_lots:
            yield from self._group(group, leftover)
            group += 1
        if self.emitted < self.target_events:  # readings fill the rest
            yield from self._readings(self.target_events - self.emitted)

    def _enrolments(self) -> Iterator[Envelope]:
        def enrol(key: Ed25519PrivateKey, name: str, **extra: Any) -> Envelope:
            data = {"subject": did_of(key), "name": name, **extra}
            return self.sign(self.registrar, "enrol", None, data)

        for role, keys in (
            ("producer", self.farms),
            ("processor", self.processors),
            ("distributor", self.distributors),
        ):
            for number, key in enumerate(keys):
                if role == "distributor":
                    yield enrol(key, f"{role}-{number}", type="party", role=role)
                else:  # they commission under the GTIN's company prefix
                    yield enrol(
                        key,
                        f"{role}-{number}",
                        type="party",
                        role=role,
                        gs1_company_prefixes=[GTIN[1:8]],
                    )
        yield enrol(self.regulator, "regulator", type="party", role="regulator")
        for number, key in enumerate(self.probes):
            owner = did_of(self.processors[number % PARTIES])
            yield enrol(key, f"probe-{number}", type="device", owner=owner)

    def _family(self) -> Iterator[Envelope]:
        processor = self.processors[0]
        root = self.family_root = self.new_lot("F")
        yield self._commission(processor, root)
        middle = [self.new_lot("F") for _ in range(FAMILY[0])]
        yield self._transform(processor, [root], middle)
        self.family = list(middle)
        for lot in middle:
            leaves = [self.new_lot("F") for _ in range(FAMILY[1])]
            yield self._transform(processor, [lot], leaves)
            self.family.extend(leaves)

    def _group(self, group: int, leftover: dict[int, str]) -> Iterator[Envelope]:
        rng = self.rng
        index = group % PARTIES
        farm, processor = self.farms[index], self.processors[index]
        distributor = self.distributors[rng.randrange(PARTIES)]
        raw = [self.new_lot("A") for _ in range(rng.choice((2, 3)))]
        for lot in raw:
            yield self._commission(farm, lot)
            yield from self._carried(farm, lot)
            yield from self._hand_over(farm, processor, lot)
        inputs = list(raw)
        if index in leftover:
            inputs.append(leftover.pop(index))
        products = [self.new_lot("B") for _ in range(rng.randint(1, 4))]
        yield self._transform(processor, inputs, products)
        if rng.random() < 0.2 and len(products) > 1:
            leftover[index] = products.pop()  # goes into this processor's next batch
        for product in products:
            shipped = [product]
            if rng.random() < 0.5:
                shipped = [self.new_lot("C") for _ in range(rng.choice((2, 3)))]
                yield self._transform(processor, [product], shipped)
            for lot in shipped:
                yield from self._carried(processor, lot)
                yield from self._hand_over(processor, distributor, lot)

    def _commission(self, key: Ed25519PrivateKey, uri: str) -> Envelope:
        code = uri.rsplit("/", 1)[1]
        data = {
            "gtin": GTIN,
            "lot": code,
            "product": "Wheat",
            "quantity": {"value": 1000, "unit": "KGM"},
            "origin": {"name": "Field 7", "country": "KE"},
        }
        return self.sign(key, "commission", [uri], data)

    def _transform(self, key: Ed25519PrivateKey, inputs: list[str], outputs: list[str]) -> Envelope:
        data = {
            "inputs": [{"batch": b, "quantity": {"value": 100, "unit": "KGM"}} for b in inputs],
            "outputs": [
                {"batch": b, "quantity": {"value": 40, "unit": "KGM"}, "product": "Flour"}
                for b in outputs
            ],
            "location": {"name": "Mill 3", "country": "KE"},
        }
        return self.sign(key, "transform", [*inputs, *outputs], data)

    def _carried(self, custodian: Ed25519PrivateKey, lot: str) -> Iterator[Envelope]:
        """A probe rides with the lot for a few readings (how many: what keeps
        the log on course for --events at --lots)."""
        probe = self.probes[self._probe % PROBES]
        self._probe += 1
        lots_left = max(1, self.target_lots - self.lots_made)
        budget = (self.target_events - self.emitted) / lots_left
        count = max(0, int(budget - 4.6 + self.rng.random()))
        yield self.sign(custodian, "attach", [lot], {"device": did_of(probe)})
        for _ in range(count):
            temperature = round(self.rng.gauss(4.0, 0.8), 2)
            yield self.sign(probe, "reading", [lot], {"temperature_c": temperature})
        yield self.sign(custodian, "detach", [lot], {"device": did_of(probe)})

    def _readings(self, count: int) -> Iterator[Envelope]:
        lot = self.family[-1]  # a lot the first processor still holds
        probe = self.probes[0]
        holder = self.processors[0]
        yield self.sign(holder, "attach", [lot], {"device": did_of(probe)})
        for _ in range(max(0, count - 2)):
            yield self.sign(probe, "reading", [lot], {"temperature_c": 4.0})
        yield self.sign(holder, "detach", [lot], {"device": did_of(probe)})

    def _hand_over(
        self, sender: Ed25519PrivateKey, receiver: Ed25519PrivateKey, lot: str
    ) -> Iterator[Envelope]:
        ship = self.sign(
            sender, "ship", [lot], {"to": did_of(receiver), "location": {"name": "Dock"}}
        )
        yield ship
        yield self.sign(
            receiver, "receive", [lot], {"shipment": ship.event_id, "location": {"name": "Bay"}}
        )


def raw_verify_rate(seconds: float = 1.0) -> float:
    key = Ed25519PrivateKey.generate()
    public, message = key.public_key(), b"x" * 200
    signature = key.sign(message)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            public.verify(signature, message)
        count += 200
    return count / (time.perf_counter() - start)


def generate(directory: Path, events: int, lots: int) -> tuple[Generator, Store, Ledger, float]:
    generator = Generator(events, lots)
    store = Store(directory / "trace.db")
    ledger = Ledger.initialise(store, generator.log_key, generator.registrar, "bench.local/trace")
    start = time.perf_counter()
    batch: list[Envelope] = []
    last_report = start

    def flush() -> None:
        results = ledger.append(batch)
        bad = next((r for r in results if r.status != "accepted"), None)
        assert bad is None, bad
        batch.clear()

    for envelope in generator.events():
        batch.append(envelope)
        if len(batch) == BATCH:
            flush()
            if time.perf_counter() - last_report > 30:
                last_report = time.perf_counter()
                rate = generator.emitted / (last_report - start)
                print(
                    f"  … {generator.emitted:,} events, {generator.lots_made:,} lots "
                    f"({rate:,.0f} events/s)",
                    flush=True,
                )
    if batch:
        flush()
    return generator, store, ledger, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lots", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--dir", type=Path, help="Keep the ledger here (default: a temp dir).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        raw_before = raw_verify_rate()
        print(f"generating {args.events:,} events, {args.lots:,} lots …", flush=True)
        generator, store, ledger, seconds = generate(directory, args.events, args.lots)
        size = store.log_size()
        lots = store.stats()["lots"]
        edges = store.lineage_edge_count()
        store.checkpoint_wal()
        db_mb = os.path.getsize(directory / "trace.db") / 1e6
        print(f"generated {size:,} events, {lots:,} lots, {edges:,} edges in {seconds:,.0f} s")

        # Traces, from a connection of their own (as the web app or the CLI would).
        reader = Store(directory / "trace.db", create=False, readonly=True)
        uris = [lot.uri for lot in reader.lots()]
        sample = random.Random(11).sample(uris, min(args.samples, len(uris)))
        times, sizes = [], []
        for uri in sample:
            start = time.perf_counter()
            result = trace(reader, uri, "both")
            times.append((time.perf_counter() - start) * 1000)
            sizes.append(len(result.upstream) + len(result.downstream))
        start = time.perf_counter()
        family = trace(reader, generator.family_root, "forward")
        family_ms = (time.perf_counter() - start) * 1000
        assert len(family.downstream) == len(generator.family)

        # The recall of the family's root, and how soon a reader sees all of it.
        ids = [reader.lot_by_uri(uri).id for uri in generator.family]  # type: ignore[union-attr]
        recall = generator.sign(
            generator.regulator,
            "recall",
            [generator.family_root],
            {"reason": "Aflatoxin above limit", "class": "I"},
        )
        start = time.perf_counter()
        (result,) = ledger.append([recall])
        commit_ms = (time.perf_counter() - start) * 1000
        assert result.status == "accepted", result
        while reader.recalled_count(ids) < len(ids):
            pass
        visible_ms = (time.perf_counter() - start) * 1000
        notifier = RecallNotifier(reader, lambda notices: True, Cursor(directory / "cursor"))
        notifier.cursor.save(size)
        start = time.perf_counter()
        notices, _ = notifier.pending()
        notices_ms = (time.perf_counter() - start) * 1000
        raw_after = raw_verify_rate()
        raw = statistics.mean([raw_before, raw_after])

        print()
        print(
            f"Ledger: {size:,} events, {lots:,} lots, {edges:,} lineage edges, {db_mb:,.0f} MB; "
            f"raw Ed25519 verify {raw:,.0f}/s (1 core)."
        )
        print()
        print("| measure | value | target |")
        print("|---|---|---|")
        print(
            f"| generate (sign + `Ledger.append`, batches of {BATCH}) | {seconds:,.0f} s, "
            f"{size / seconds:,.0f} events/s ({size / seconds / raw:.2f} × raw verify) | |"
        )
        print(
            f"| trace back + forward, {len(sample)} random lots "
            f"(median {statistics.median(sizes):.0f}, max {max(sizes)} lots each) | "
            f"p50 {percentile(times, 0.5):.1f} ms, "
            f"p95 {percentile(times, 0.95):.1f} ms, max {max(times):.1f} ms | ≤ 50 ms |"
        )
        print(
            f"| trace forward of the recall root ({len(family.downstream):,} lots) | "
            f"{family_ms:.0f} ms | |"
        )
        print(
            f"| recall of a lot with {len(ids):,} downstream lots: committed | "
            f"{commit_ms:.0f} ms | |"
        )
        print(
            f"| … and all {len(ids) + 1:,} lots recalled for another reader | "
            f"{visible_ms:.0f} ms | ≤ 1 s |"
        )
        print(f"| recall notices for those {len(notices):,} lots built | {notices_ms:.0f} ms | |")
        print(f"\nraw verify before/after: {raw_before:,.0f}/s, {raw_after:,.0f}/s")
        ledger.close()
        reader.close()
        store.close()


if __name__ == "__main__":
    main()
