"""Ingest benchmark: publisher processes → Mosquitto → `provenance ingest`.

    .venv/bin/python bench/ingest.py [--seconds 20] [--publishers 2] [--rate 2000]

In one run, on a private Mosquitto (tests/support/broker.py's configuration plus
`set_tcp_nodelay true`, as docs/ingest.md asks of deployments):

1. the raw single-core Ed25519 verify rate (bench/ledger.py's `raw_verify_rate`),
   with OpenSSL (the baseline the targets were set against) and with libsodium
   (the ledger's verifier, provenance/core/ed25519.py);
2. the raw MQTT QoS 1 pass-through: the same publishers → the broker → a
   subscriber process that only acknowledges; publishers and subscriber are
   the lean raw-socket client of bench/lean_mqtt.py (MQTT 5, TCP_NODELAY,
   packets encoded once), so the baseline is the broker's, not a client
   library's;
3. the ingest service (`provenance ingest` in its own process) draining
   (a) one signed reading per message and (b) gateway batches (arrays of 50);
   sustained committed envelopes/s = envelopes / (last commit − first publish);
4. publish→commit latency p50/p99 at a fixed message rate (default 2,000/s,
   one envelope per message) and at half the rate (a) reached, from the
   ingest's own histogram (publishers set the MQTT 5 user property
   `sent_at`), and the pass-through latency at the same rates;
5. the ingest's resident memory before and after.

Prints a Markdown table for docs/performance.md; figures are ratios to
baselines measured in the same run because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

import lean_mqtt  # noqa: E402  (bench/lean_mqtt.py)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from ledger import raw_verify_rate  # noqa: E402  (bench/ledger.py)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from provenance.core import topics  # noqa: E402
from provenance.core.envelope import Envelope  # noqa: E402
from provenance.core.jcs import MAX_DEPTH, parse_json  # noqa: E402
from provenance.core.signing import did_of, sign  # noqa: E402
from provenance.core.timefmt import format_time, now_micros  # noqa: E402
from provenance.infra.keystore import KeyStore  # noqa: E402
from provenance.infra.localbroker import Broker, free_port  # noqa: E402
from provenance.ingest.prepare import items_of, prepare  # noqa: E402
from provenance.ingest.service import MAX_BATCH  # noqa: E402
from provenance.ledger.append import Ledger  # noqa: E402
from provenance.store.db import Store  # noqa: E402

GTIN = "09506000134352"
LOT = f"https://id.gs1.org/01/{GTIN}/10/BENCH-1"
DAY_US = 24 * 3600 * 1_000_000
RECEIVE_MAXIMUM = 10_000  # what the ingest asks for (its max_pending)
# Pass-through traffic stays off the ingest's topics, so that a running ingest
# neither sees it nor slows it down: same broker work, other branch.
PASS_THROUGH_FILTER = "bench/+/+/events"
RUNNER = "from provenance.cli.main import main\nmain(prog_name='provenance')\n"
# Messages a publisher has in flight to the broker: gateways use 64
# (gateway/config.py). paho scans its whole in-flight window on every PUBACK,
# so a window of 1,000 cost the publishers ~0.1 ms per message of the CPU the
# broker and the ingest share with them.
PUBLISHER_WINDOW = 64
CONNECT_DEADLINE = 30.0
DRAIN_DEADLINE = 600.0


class BenchBroker(Broker):
    """tests/support/broker.py's Mosquitto plus `set_tcp_nodelay true`, as docs/ingest.md
    tells deployments: without it Mosquitto's Nagle delays what it sends the
    ingest (which acknowledges only after a commit) by ~10 ms here."""

    def _command(self) -> list[str]:
        command = super()._command()
        if self.kind == "mosquitto":
            config = self.directory / "mosquitto.conf"
            config.write_text(config.read_text() + "set_tcp_nodelay true\n")
        return command


# --- publishers (child processes)


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _rfc3339_us() -> str:
    now = time.time()
    seconds = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{int((now - seconds) * 1e6):06d}Z"
    )


def _payloads(spec: dict[str, Any]) -> list[bytes]:
    if spec["key"] is None:  # pass-through: any reading-shaped bytes will do
        key = Ed25519PrivateKey.generate()
        one = json.dumps(
            sign(
                key, kind="reading", seq=1, time=spec["time0"], data={"temperature_c": 4.5}
            ).to_json()
        ).encode()
        return [one] * spec["messages"]
    key = load_pem_private_key(spec["key"], password=None)
    envelopes = [
        json.dumps(
            sign(
                key,
                kind="reading",
                seq=spec["seq0"] + i,
                time=format_time(spec["time0_us"] + (spec["seq0"] + i) * 1000),
                data={"temperature_c": round(3 + i % 50 / 10, 2), "humidity_pct": 60 + i % 20},
            ).to_json()
        )
        for i in range(spec["messages"] * spec["batch"])
    ]
    if spec["batch"] == 1:
        return [e.encode() for e in envelopes]
    size = spec["batch"]
    return [
        ("[" + ",".join(envelopes[i : i + size]) + "]").encode()
        for i in range(0, len(envelopes), size)
    ]


def publisher(spec: dict[str, Any], ready: Any, go: Any, results: Any) -> None:
    """Sign (before the clock starts), connect, wait for go, publish QoS 1 with
    the lean client (bench/lean_mqtt.py): what a gateway's publishing costs the
    broker, without a Python client library's own CPU on the shared cores."""
    payloads = _payloads(spec)
    cpu = [0.0]
    start = [0.0]

    def started() -> None:
        ready.set()
        go.wait(120)
        cpu[0], start[0] = time.process_time(), time.perf_counter()

    published = lean_mqtt.publish_all(
        spec["host"],
        spec["port"],
        spec["client_id"],
        spec["topic"],
        payloads,
        window=PUBLISHER_WINDOW,
        rate=spec["rate"],
        sent_at=_rfc3339_us,
        started=started,
    )
    results.put(
        {
            "published": published,
            "seconds": time.perf_counter() - start[0],
            "cpu": time.process_time() - cpu[0],
        }
    )


def null_subscriber(host: str, port: int, expected: int, ready: Any, results: Any) -> None:
    """Receive and acknowledge, nothing else: the broker's pass-through, with
    the lean client (PUBACKs of one read sent together)."""
    times: list[float] = []
    latencies: list[float] = []

    def on_message(properties: bytes, _payload: bytes) -> None:
        now = time.time()
        times.append(now)
        sent = lean_mqtt.sent_at_of(properties)
        if sent is not None:
            stamp = datetime.strptime(sent, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            latencies.append(now - stamp.timestamp())

    cpu = [0.0]

    def subscribed() -> None:
        ready.set()
        cpu[0] = time.process_time()

    lean_mqtt.receive(
        host,
        port,
        f"bench-null-{os.getpid()}",
        PASS_THROUGH_FILTER,
        expected,
        subscribed=subscribed,
        on_message=on_message,
        deadline_s=DRAIN_DEADLINE,
    )
    results.put({"times": times, "latencies": latencies, "cpu": time.process_time() - cpu[0]})


# --- the ledger and the ingest process


def make_ledger(directory: Path, publishers: int) -> tuple[Path, Path, list[bytes], int]:
    keys_dir = directory / "keys"
    keys = KeyStore(keys_dir)
    log_key, registrar = keys.create("log"), keys.create("registrar")
    db = directory / "bench.db"
    store = Store(db)
    ledger = Ledger.initialise(store, log_key, registrar, "bench.local/log")
    farm = Ed25519PrivateKey.generate()
    probes = [Ed25519PrivateKey.generate() for _ in range(publishers)]
    start = now_micros() - 10 * DAY_US
    t = format_time(start)
    enrolments = [
        {
            "subject": did_of(farm),
            "type": "party",
            "name": "farm",
            "role": "producer",
            "gs1_company_prefixes": ["9506000"],  # the GTIN's: it may commission under it
        }
    ]
    enrolments += [
        {"subject": did_of(p), "type": "device", "name": f"probe{i}", "owner": did_of(farm)}
        for i, p in enumerate(probes)
    ]
    for seq, data in enumerate(enrolments, start=1):
        envelope = sign(registrar, kind="enrol", seq=seq, time=t, data=data)
        assert ledger.append([envelope])[0].ok
    commission = {"gtin": GTIN, "lot": "BENCH-1", "product": "Kale"}
    farm_events = [("commission", commission)] + [("attach", {"device": did_of(p)}) for p in probes]
    for seq, (kind, data) in enumerate(farm_events):
        envelope = sign(farm, kind=kind, seq=seq, time=t, data=data, lots=[LOT])
        assert ledger.append([envelope])[0].ok, kind
    ledger.close()
    store.close()
    return db, keys_dir, [_pem(p) for p in probes], start + 1000


class Ingest:
    """`provenance ingest` as a child process, observed through its metrics."""

    def __init__(
        self,
        db: Path,
        keys: Path,
        url: str,
        log: Path,
        mqtt_version: str = "auto",
        *,
        client_id: str = "bench-ingest",
        extra: tuple[str, ...] = (),
    ):
        """Started, and connected (bounded by CONNECT_DEADLINE); *extra* are
        more `provenance ingest` options (bench/shared_ingest.py's group)."""
        self.port = free_port()
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-c", RUNNER, "--db", str(db), "--keys", str(keys), "ingest"),
                *("--broker", url, "--metrics-port", str(self.port), "--client-id", client_id),
                *("--mqtt-version", mqtt_version, *extra),
            ],
            stdout=self.log,
            stderr=self.log,
            cwd=ROOT,
        )
        deadline = time.monotonic() + CONNECT_DEADLINE
        while self.metrics().get("provenance_ingest_connected") != 1.0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{client_id} did not connect; see {log}")
            time.sleep(0.05)  # polling another process's endpoint, bounded by the deadline

    def metrics(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        values: dict[str, Any] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    values.setdefault(sample.name, []).append(
                        (sample.labels.get("clock"), float(sample.labels["le"]), sample.value)
                    )
                elif not sample.labels:
                    values[sample.name] = sample.value
        return values

    def accepted(self) -> float:
        return self.metrics().get("provenance_ingest_envelopes_accepted_total", 0.0)

    def rss_mib(self) -> float:
        """Resident memory of the ingest process, its commit worker and prep processes."""
        total = 0
        for pid in _tree(self.process.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
            total += int(line.split()[1])
        return total / 1024

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the ingest process (MQTT, committer), its commit
        worker (the ledger's appends) and the worker's prep processes."""
        roles = {"mqtt": _cpu_seconds(self.process.pid), "append": 0.0, "prep": 0.0}
        for worker in _children(self.process.pid):
            roles["append"] += _cpu_seconds(worker)
            for pid in _tree(worker)[1:]:
                roles["prep"] += _cpu_seconds(pid)
        return roles

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(60)
        finally:
            self.log.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _tree(pid: int) -> list[int]:
    """*pid* and all its descendants."""
    found = [pid]
    for child in _children(pid):
        found += _tree(child)
    return found


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # up to steal, no guests


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Ledgerwatch:
    """The ledger's size, read from its database (a WAL reader never blocks
    the writer): how the benchmark sees commits without asking the ingest."""

    def __init__(self, db: Path):
        self.store = Store(db, create=False, readonly=True)

    def size(self) -> int:
        return self.store.log_size()

    def wait_size(self, target: int, deadline: float, ingest: Ingest) -> float:
        """Poll until the log holds `target` events; perf_counter() when it did."""
        while True:
            if self.size() >= target:
                return time.perf_counter()
            if time.monotonic() > deadline or ingest.process.poll() is not None:
                raise RuntimeError(f"ingest stalled below a log of {target} events")
            time.sleep(0.01)  # polling another process's database, bounded by the deadline


# --- phases


class Costs:
    """CPU seconds by process during one phase, per committed envelope."""

    def __init__(self, envelopes: int, seconds: float):
        self.envelopes = envelopes
        self.seconds = seconds
        self.parts: dict[str, float] = {}
        self.others = 0.0  # CPU seconds of everything else on the machine meanwhile

    def add(self, name: str, cpu_seconds: float) -> None:
        self.parts[name] = cpu_seconds

    def rows(self) -> list[tuple[str, float]]:
        """(part, µs of CPU per envelope)."""
        return [(name, cpu / self.envelopes * 1e6) for name, cpu in self.parts.items()]

    @property
    def cores(self) -> float:
        """CPU used by the whole set-up, in cores (of os.cpu_count())."""
        return sum(self.parts.values()) / self.seconds


class Bench:
    def __init__(self, args: argparse.Namespace, directory: Path):
        self.args = args
        self.context = multiprocessing.get_context("spawn")
        self.broker = BenchBroker(directory / "broker").start()
        self.db, self.keys, self.probe_keys, self.time0 = make_ledger(directory, args.publishers)
        self.next_seq = [0] * args.publishers
        self.directory = directory
        self.ledger = Ledgerwatch(self.db)

    def publish(self, messages: int, batch: int, rate: float, signed: bool) -> float:
        """Publish `messages` messages from the publisher processes; returns
        perf_counter() at go. Signing happens before go."""
        ready, results = [], self.context.Queue()
        go = self.context.Event()
        processes = []
        count = self.args.publishers
        for i in range(count):
            share = messages // count + (1 if i < messages % count else 0)
            spec = {
                "host": self.broker.host,
                "port": self.broker.port,
                "client_id": f"bench-pub-{i}-{time.monotonic_ns()}",
                "topic": topics.events_topic("gateways", f"bench-{i}")
                if signed
                else f"bench/gateways/bench-{i}/events",
                "key": self.probe_keys[i] if signed else None,
                "seq0": self.next_seq[i],
                "time0": format_time(self.time0),
                "time0_us": self.time0,
                "messages": share,
                "batch": batch,
                "rate": rate / count if rate else 0.0,
            }
            self.next_seq[i] += share * batch
            event = self.context.Event()
            ready.append(event)
            process = self.context.Process(target=publisher, args=(spec, event, go, results))
            process.start()
            processes.append(process)
        for event in ready:
            if not event.wait(600):
                raise RuntimeError("a publisher did not get ready")
        start = time.perf_counter()
        self.go_wall = time.time()
        go.set()
        self._publishers = (processes, results)
        return start

    def join_publishers(self) -> list[dict[str, Any]]:
        processes, results = self._publishers
        out = [results.get(timeout=DRAIN_DEADLINE) for _ in processes]
        for process in processes:
            process.join(60)
        return out

    def pass_through(self, messages: int, rate: float) -> tuple[float, list[float]]:
        ready, results = self.context.Event(), self.context.Queue()
        subscriber = self.context.Process(
            target=null_subscriber,
            args=(self.broker.host, self.broker.port, messages, ready, results),
        )
        subscriber.start()
        if not ready.wait(CONNECT_DEADLINE):
            raise RuntimeError("the null subscriber did not subscribe")
        self.publish(messages, 1, rate, signed=False)
        self.join_publishers()
        got = results.get(timeout=DRAIN_DEADLINE)
        subscriber.join(60)
        times = got["times"]
        if len(times) < messages:
            raise RuntimeError(f"pass-through lost messages: {len(times)} of {messages}")
        seconds = max(times) - self.go_wall
        return messages / seconds, got["latencies"]

    def ingest_rate(self, ingest: Ingest, envelopes: int, batch: int) -> tuple[float, Costs]:
        """Committed envelopes/s from go to the last commit, and where the CPU went."""
        target = self.ledger.size() + envelopes
        start = self.publish(envelopes // batch, batch, 0.0, signed=True)  # signs, then go
        cpu_before, broker_before = ingest.cpu(), _cpu_seconds(self.broker.process.pid)
        machine_before = _machine_busy()
        done = self.ledger.wait_size(target, time.monotonic() + DRAIN_DEADLINE, ingest)
        machine_after = _machine_busy()
        cpu_after, broker_after = ingest.cpu(), _cpu_seconds(self.broker.process.pid)
        published = self.join_publishers()
        seconds = done - start
        costs = Costs(envelopes, seconds)
        costs.add("publishers (2 processes, lean client)", sum(p["cpu"] for p in published))
        costs.add("broker (Mosquitto)", broker_after - broker_before)
        costs.add("ingest: MQTT, inbox, acks", cpu_after["mqtt"] - cpu_before["mqtt"])
        costs.add("ingest: prep processes", cpu_after["prep"] - cpu_before["prep"])
        costs.add("ingest: worker, Ledger.append", cpu_after["append"] - cpu_before["append"])
        costs.others = max(0.0, machine_after - machine_before - sum(costs.parts.values()))
        return envelopes / seconds, costs

    def ingest_latency(self, ingest: Ingest, rate: float, seconds: float) -> tuple[float, float]:
        before = ingest.metrics()
        messages = int(rate * seconds)
        target = self.ledger.size() + messages
        self.publish(messages, 1, rate, signed=True)
        self.ledger.wait_size(target, time.monotonic() + DRAIN_DEADLINE, ingest)
        self.join_publishers()
        after = ingest.metrics()
        name = "provenance_ingest_publish_to_commit_seconds_bucket"
        old = {(c, le): v for c, le, v in before.get(name, [])}
        buckets = sorted(
            (le, v - old.get((c, le), 0)) for c, le, v in after[name] if c == "sent_at"
        )
        return _quantile(buckets, 0.5), _quantile(buckets, 0.99)

    def close(self) -> None:
        self.broker.kill()


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile from cumulative buckets (linear inside a bucket)."""
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            inside = count - lower_count
            fraction = (rank - lower_count) / inside if inside else 0.0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- where one envelope's CPU goes, stage by stage (one core, this process)


class _TimedConnection:
    """A sqlite3 connection whose statements add up their CPU time."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self.seconds = 0.0

    def execute(self, *args: Any) -> Any:
        start = time.process_time()
        try:
            return self._conn.execute(*args)
        finally:
            self.seconds += time.process_time() - start

    def executemany(self, *args: Any) -> Any:
        start = time.process_time()
        try:
            return self._conn.executemany(*args)
        finally:
            self.seconds += time.process_time() - start

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def stages(envelopes: int, batch: int) -> list[tuple[str, float]]:
    """(stage, µs of CPU per envelope) for gateway arrays of *batch* readings,
    each stage alone on one core: what the ingest's processes do per envelope."""
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        db, keys, probe_keys, time0 = make_ledger(Path(tmp), 1)
        spec = {"key": probe_keys[0], "seq0": 0, "time0_us": time0, "batch": batch}
        arrays = _payloads({**spec, "messages": envelopes // batch})
        n = len(arrays) * batch
        out: list[tuple[str, float]] = []

        def timed(name: str, work: Any) -> Any:
            start = time.process_time()
            result = work()
            out.append((name, (time.process_time() - start) / n * 1e6))
            return result

        values = timed(
            "decode: strict JSON parse of the array",
            lambda: [parse_json(a, max_depth=MAX_DEPTH + 1) for a in arrays],
        )
        parsed = timed(
            "schema: Envelope.from_json (fields, kind rules, JCS of data)",
            lambda: [Envelope.from_json(v) for value in values for v in value],
        )
        timed("signature: Ed25519 verify (libsodium)", lambda: _verify_all(parsed))
        records = prepare(arrays)  # what the prep processes send the worker
        timed(
            "prep → worker: pickle, unpickle, rebuild envelopes",
            lambda: [items_of(m) for m in pickle.loads(pickle.dumps(records))],
        )
        items = [items_of(message) for message in records]
        log_key = KeyStore(keys).load("log")
        store = Store(db)
        timer = _TimedConnection(store.conn)
        store.conn = timer  # type: ignore[assignment]
        ledger = Ledger(store, log_key, verify_threads=1)
        group = max(1, MAX_BATCH // batch)  # messages per group commit, as the ingest makes them
        start = time.process_time()
        for first in range(0, len(items), group):
            results = ledger.append(
                [i for message in items[first : first + group] for i in message]
            )
            assert all(r.status == "accepted" for r in results), results[0]
        append = (time.process_time() - start) / n * 1e6
        sql = timer.seconds / n * 1e6
        out.append(
            (
                f"Ledger.append, {group * batch} per call, signatures checked already: Python "
                "(event id, rules, chains, Merkle log, rows, signed checkpoint)",
                append - sql,
            )
        )
        out.append(("Ledger.append: SQLite (statements and commit)", sql))
        ledger.close()
        store.close()
        return out


def _verify_all(envelopes: list[Envelope]) -> None:
    for envelope in envelopes:
        envelope.verify_signature()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="msg/s for the fixed-rate latency phase"
    )
    parser.add_argument("--batch", type=int, default=50, help="envelopes per gateway message")
    parser.add_argument("--max-readings", type=int, default=150_000, help="cap per phase")
    parser.add_argument(
        "--stages-only", action="store_true", help="only the per-stage CPU costs (no broker)"
    )
    parser.add_argument(
        "--mqtt-version",
        choices=["auto", "5", "3.1.1"],
        default="auto",
        help="the ingest's MQTT version (provenance ingest --mqtt-version)",
    )
    parser.add_argument(
        "--single-only",
        action="store_true",
        help="only the pass-through and (a), one envelope per message (about a minute)",
    )
    args = parser.parse_args()

    verify = raw_verify_rate()
    costs = stages(10_000, args.batch)
    _print_stages(costs, verify, args.batch)
    if args.stages_only:
        return

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        bench = Bench(args, Path(tmp))
        ingest = None
        try:
            verify_before = raw_verify_rate()
            sodium_before = raw_verify_rate(library="libsodium")
            print(
                f"raw verify: OpenSSL {verify_before:,.0f}/s, libsodium {sodium_before:,.0f}/s",
                flush=True,
            )

            probe = 5000
            rate, _ = bench.pass_through(probe, 0.0)
            messages = min(args.max_readings, max(probe, int(rate * args.seconds)))
            pass_rate, _ = bench.pass_through(messages, 0.0)
            print(f"pass-through: {pass_rate:,.0f} msg/s ({messages} messages)", flush=True)
            _, pass_latencies = bench.pass_through(int(args.rate * args.seconds), args.rate)
            print(f"pass-through latency measured at {args.rate:,.0f} msg/s", flush=True)

            ingest = Ingest(
                bench.db, bench.keys, bench.broker.url, Path(tmp) / "ingest.log", args.mqtt_version
            )
            rss_start = ingest.rss_mib()
            single = min(args.max_readings, max(2000, int(0.6 * pass_rate * args.seconds)))
            rate_a, costs_a = bench.ingest_rate(ingest, single, 1)
            rss = [rss_start, ingest.rss_mib()]
            print(f"(a) {rate_a:,.0f} envelopes/s ({single} messages)", flush=True)
            if args.single_only:
                print(f"(a) = {rate_a / pass_rate:.2f} × pass-through; CPU µs per envelope:")
                for name, value in costs_a.rows():
                    print(f"  {name}: {value:,.0f}")
                others = costs_a.others / costs_a.seconds
                print(f"  cores busy {costs_a.cores:.2f}, others {others:.2f}")
                return
            batched = min(args.max_readings, max(5000, int(1.4 * verify_before * args.seconds)))
            batched -= batched % args.batch
            rate_b, costs_b = bench.ingest_rate(ingest, batched, args.batch)
            rss.append(ingest.rss_mib())
            print(f"(b) {rate_b:,.0f} envelopes/s ({batched // args.batch} messages)", flush=True)
            p50, p99 = bench.ingest_latency(ingest, args.rate, args.seconds)
            rss.append(ingest.rss_mib())
            print(f"latency at {args.rate:,.0f} msg/s: {p50 * 1000:.1f} / {p99 * 1000:.1f} ms")
            half = round(rate_a / 2, -1)
            h50, h99 = bench.ingest_latency(ingest, half, args.seconds)
            _, half_pass = bench.pass_through(int(half * args.seconds), half)
            rss.append(ingest.rss_mib())
            verify_after = raw_verify_rate()
            sodium_after = raw_verify_rate(library="libsodium")
            code = ingest.stop()
            ingest = None
        finally:
            if ingest is not None:
                ingest.stop()
            bench.close()

    raw = statistics.mean([verify_before, verify_after])
    sodium = statistics.mean([sodium_before, sodium_after])
    pt50, pt99 = _percentile(pass_latencies, 0.5), _percentile(pass_latencies, 0.99)
    cores = os.cpu_count()
    print()
    print(
        f"Ingest benchmark, {cores} cores, {args.publishers} publisher processes, "
        f"Mosquitto, {args.seconds:g} s phases"
    )
    print()
    print("| measure | value | ratio | target |")
    print("|---|---|---|---|")
    print(f"| raw Ed25519 verify, 1 core, OpenSSL (`cryptography`) | {raw:,.0f}/s | | |")
    print(f"| raw Ed25519 verify, 1 core, libsodium (the ledger's) | {sodium:,.0f}/s | | |")
    print(f"| raw MQTT QoS 1 pass-through (null subscriber) | {pass_rate:,.0f} msg/s | | |")
    print(
        f"| (a) ingest, 1 envelope per message | {rate_a:,.0f} envelopes/s | "
        f"{rate_a / pass_rate:.2f} × pass-through | ≥ 0.6 |"
    )
    print(
        f"| (b) ingest, arrays of {args.batch} | {rate_b:,.0f} envelopes/s | "
        f"{rate_b / raw:.2f} × raw OpenSSL verify; {rate_b / sodium:.2f} × raw libsodium verify "
        "| ≥ 1.4 |"
    )
    print(
        f"| publish→commit at {args.rate:,.0f} msg/s, p50 / p99 | "
        f"{p50 * 1000:.1f} / {p99 * 1000:.1f} ms | | p99 ≤ 20 ms |"
    )
    print(
        f"| pass-through at {args.rate:,.0f} msg/s, p50 / p99 | "
        f"{pt50 * 1000:.1f} / {pt99 * 1000:.1f} ms | | |"
    )
    print(
        f"| publish→commit at {half:,.0f} msg/s (half of (a)), p50 / p99 | "
        f"{h50 * 1000:.1f} / {h99 * 1000:.1f} ms | | |"
    )
    print(
        f"| pass-through at {half:,.0f} msg/s, p50 / p99 | "
        f"{_percentile(half_pass, 0.5) * 1000:.1f} / {_percentile(half_pass, 0.99) * 1000:.1f} ms"
        " | | |"
    )
    steps = " → ".join(f"{value:.0f}" for value in rss)
    print(
        "| ingest + prep + worker resident memory: start → after (a) → (b) → fixed rate → end | "
        f"{steps} MiB | | flat |"
    )
    print()
    print("Where the CPU went (µs of CPU per committed envelope, every process of the set-up):")
    print()
    print(f"| process | (a) 1 per message | (b) arrays of {args.batch} |")
    print("|---|---|---|")
    for (name, a), (_, b) in zip(costs_a.rows(), costs_b.rows(), strict=True):
        print(f"| {name} | {a:,.0f} | {b:,.0f} |")
    total_a = sum(v for _, v in costs_a.rows())
    total_b = sum(v for _, v in costs_b.rows())
    print(f"| **total** | **{total_a:,.0f}** | **{total_b:,.0f}** |")
    print(f"| cores busy (CPU ÷ wall time) | {costs_a.cores:.2f} | {costs_b.cores:.2f} |")
    print(
        "| other processes on the machine meanwhile, cores | "
        f"{costs_a.others / costs_a.seconds:.2f} | {costs_b.others / costs_b.seconds:.2f} |"
    )
    print(
        f"\nraw verify before/after: OpenSSL {verify_before:,.0f}/s, {verify_after:,.0f}/s; "
        f"libsodium {sodium_before:,.0f}/s, {sodium_after:,.0f}/s; "
        f"ingest exit status on SIGTERM: {code}"
    )


def _print_stages(costs: list[tuple[str, float]], verify: float, batch: int) -> None:
    total = sum(value for _, value in costs)
    print(f"Per-envelope CPU by stage, one core, gateway arrays of {batch} readings:")
    print()
    print("| stage | µs per envelope | share |")
    print("|---|---|---|")
    for name, value in costs:
        print(f"| {name} | {value:,.1f} | {value / total:.0%} |")
    print(f"| **total** | **{total:,.1f}** | |")
    print(
        f"\nraw OpenSSL verify {verify:,.0f}/s = {1e6 / verify:,.0f} µs each; all stages on 2 "
        f"cores at best: {2e6 / total:,.0f} envelopes/s = {2e6 / total / verify:.2f} × raw "
        "OpenSSL verify",
        flush=True,
    )
    print()


if __name__ == "__main__":
    main()
