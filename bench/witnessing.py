"""Witnessing benchmark: two local witnesses under full ingest load.

    .venv/bin/python bench/witnessing.py [--seconds 8] [--rounds 3] [--every 1]

In one run, on bench/ingest.py's set-up (private Mosquitto, `provenance ingest`
in its own process, publisher processes sending gateway arrays of 50 as fast as
the ingest takes them):

1. two witnesses, each its own process on a loopback port with its own key:
   `provenance witness serve` (branch `witness`) when this tree has it, else
   tests/support/witness_process.py (the same protocol);
2. alternately, ingest phases without and with `provenance log witness --every
   E` running (the witnessing service in its own process), `--rounds` of each:
   ingest throughput (committed envelopes/s) of each, and the drop;
3. during the phases with witnessing, the time from each commit (the log's size
   seen to grow, polled every 10 ms from the database) to the first moment the
   ledger shows a checkpoint of at least that size cosigned by both witnesses:
   p50 / p99, against the cadence (target p99 ≤ 2 × cadence).

Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # support/witness_process.py, without `provenance witness`

from ingest import RUNNER, Bench, Ingest, _cpu_seconds, _percentile  # noqa: E402

from provenance.infra.localbroker import free_port  # noqa: E402
from provenance.store.cosignatures import shown_checkpoint  # noqa: E402
from provenance.store.db import Store  # noqa: E402

POLL_S = 0.01
CATCH_UP_S = 60.0  # after a phase, how long the last commits may wait for their quorum


class Witnesses:
    """Two witness processes following the bench ledger's log."""

    def __init__(self, directory: Path, log_vkey: str):
        self.processes: list[subprocess.Popen[bytes]] = []
        self.options: list[str] = []
        self._stubs = []
        real = importlib.util.find_spec("provenance.cli.witness") is not None
        self.kind = "provenance witness serve" if real else "tests/support/witness_process.py"
        for name, folder in (("Regulator", "w-regulator"), ("Consumers", "w-consumers")):
            where = directory / folder
            key_name = f"{folder}.bench.example/w"
            if real:
                vkey = self._cli("witness", "init", "--dir", str(where), "--name", key_name)
                self._cli("witness", "add-log", "--dir", str(where), "--key", log_vkey)
                port = free_port()
                log = (directory / f"{folder}.log").open("wb")
                process = subprocess.Popen(
                    [sys.executable, "-c", RUNNER, "witness", "serve", "--dir", str(where),
                     "--host", "127.0.0.1", "--port", str(port)],
                    stdout=log, stderr=log, cwd=ROOT,
                )  # fmt: skip
                self.processes.append(process)
                _wait_for_port(port, process)
                url = f"http://127.0.0.1:{port}"
            else:
                from support.witness_process import WitnessProcess

                stub = WitnessProcess(where, key_name, log_vkey).start()
                self._stubs.append(stub)
                vkey, url = stub.vkey, stub.url
            self.options += ["--witness", f"{name}={url}={vkey}"]

    @staticmethod
    def _cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, *args],
            capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def cpu(self) -> float:
        """CPU seconds of both witness processes so far."""
        pids = [p.pid for p in self.processes] + [s.process.pid for s in self._stubs if s.process]
        return sum(_cpu_seconds(pid) for pid in pids)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(30)
        for stub in self._stubs:
            stub.stop()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # another process starting; bounded by the deadline
    raise RuntimeError(f"no witness listening on {port}")


class QuorumWatch:
    """Polls the ledger: when each size was first seen committed, and when a
    checkpoint of at least that size was first shown cosigned by the quorum."""

    def __init__(self, db: Path):
        self.db = db
        self.latencies: list[float] = []
        self._pending: list[tuple[int, float]] = []  # (size, first seen) not yet cosigned
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.last_size = 0
        self.shown_size = 0

    def start(self) -> QuorumWatch:
        self._thread.start()
        return self

    def _main(self) -> None:
        store = Store(self.db, create=False, readonly=True)
        try:
            while not self._stop.wait(POLL_S):
                now = time.perf_counter()
                size = store.log_size()
                if size > self.last_size:
                    self._pending.append((size, now))
                    self.last_size = size
                shown = shown_checkpoint(store)
                if shown is not None and shown.witnessed and shown.cosigners:
                    self.shown_size = shown.size
                    while self._pending and self._pending[0][0] <= shown.size:
                        self.latencies.append(now - self._pending.pop(0)[1])
        finally:
            store.close()

    def caught_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pending and self.shown_size >= self.last_size:
                return True
            time.sleep(0.05)  # the next witnessing round; bounded by the deadline
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="phases of each kind")
    parser.add_argument("--every", type=float, default=1.0, help="witnessing cadence, seconds")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--batch", type=int, default=50, help="envelopes per gateway message")
    parser.add_argument("--rate", type=float, default=0.0)  # bench/ingest.py's Bench reads it
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-witnessing-") as tmp:
        directory = Path(tmp)
        bench = Bench(args, directory)
        store = Store(bench.db, create=False, readonly=True)
        log_vkey = store.get_meta("log_verifier_key") or ""
        store.close()
        witnesses = Witnesses(directory, log_vkey)
        ingest = Ingest(bench.db, bench.keys, bench.broker.url, directory / "ingest.log")
        watch = QuorumWatch(bench.db).start()
        without: list[float] = []
        with_: list[float] = []
        all_latencies: list[float] = []
        cores: list[float] = []  # CPU of the witnessing service and witnesses, in cores
        setup_cores: list[float] = []  # CPU of the ingest set-up meanwhile, in cores
        try:
            # A first phase to warm up, and to size the phases to --seconds.
            envelopes = 5000
            rate, _ = bench.ingest_rate(ingest, envelopes, args.batch)
            envelopes = max(5000, int(rate * args.seconds))
            envelopes -= envelopes % args.batch
            print(f"warm-up: {rate:,.0f} envelopes/s; phases of {envelopes}", flush=True)
            for round_ in range(args.rounds):
                rate, _ = bench.ingest_rate(ingest, envelopes, args.batch)
                without.append(rate)
                print(f"round {round_ + 1}: without witnessing {rate:,.0f}/s", flush=True)
                service = subprocess.Popen(
                    [sys.executable, "-c", RUNNER, "--db", str(bench.db), "--keys",
                     str(bench.keys), "log", "witness", "--every", f"{args.every:g}",
                     *witnesses.options],
                    stdout=subprocess.DEVNULL,
                    stderr=(directory / "witnessing.log").open("ab"),
                    cwd=ROOT,
                )  # fmt: skip
                try:
                    if not watch.caught_up(CATCH_UP_S):  # the first quorum before the clock
                        raise RuntimeError(f"no quorum; see {directory}/witnessing.log")
                    watch.latencies.clear()
                    cpu0 = _cpu_seconds(service.pid) + witnesses.cpu()
                    clock = time.perf_counter()
                    rate, costs = bench.ingest_rate(ingest, envelopes, args.batch)
                    cores.append(
                        (_cpu_seconds(service.pid) + witnesses.cpu() - cpu0)
                        / (time.perf_counter() - clock)
                    )
                    setup_cores.append(costs.cores)
                    with_.append(rate)
                    if not watch.caught_up(CATCH_UP_S):
                        raise RuntimeError("the witnesses fell behind for good")
                finally:
                    service.terminate()
                    service.wait(30)
                latencies = list(watch.latencies)
                all_latencies += latencies
                print(
                    f"round {round_ + 1}: with witnessing {rate:,.0f}/s; commit→quorum "
                    f"p50 {_percentile(latencies, 0.5):.2f} s, "
                    f"p99 {_percentile(latencies, 0.99):.2f} s ({len(latencies)} commits)",
                    flush=True,
                )
        finally:
            watch.stop()
            ingest.stop()
            witnesses.stop()
            bench.close()

    p50, p99 = _percentile(all_latencies, 0.5), _percentile(all_latencies, 0.99)
    rate0, rate1 = statistics.median(without), statistics.median(with_)
    drop = 1 - rate1 / rate0
    print()
    print(
        f"Witnessing benchmark: two witnesses ({witnesses.kind}), cadence {args.every:g} s, "
        f"{args.rounds} phases of each kind alternated, {envelopes} envelopes each "
        f"(gateway arrays of {args.batch})"
    )
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(
        f"| commit → quorum-cosigned checkpoint, p50 / p99 | {p50:.2f} / {p99:.2f} s = "
        f"{p50 / args.every:.2f} / **{p99 / args.every:.2f}** × cadence | p99 ≤ 2 × cadence |"
    )
    print(
        f"| ingest without witnessing (median of {args.rounds}) | {rate0:,.0f} envelopes/s "
        f"({', '.join(f'{r:,.0f}' for r in without)}) | |"
    )
    print(
        f"| ingest with witnessing (median of {args.rounds}) | {rate1:,.0f} envelopes/s "
        f"({', '.join(f'{r:,.0f}' for r in with_)}) | |"
    )
    print(f"| throughput drop (median with ÷ median without) | **{drop * 100:.1f} %** | ≤ 5 % |")
    share = statistics.mean(cores) / (statistics.mean(cores) + statistics.mean(setup_cores))
    print(
        f"| CPU of the witnessing service + both witnesses during the phases | "
        f"{statistics.mean(cores):.3f} cores = {share * 100:.1f} % of the CPU the ingest "
        f"set-up used ({statistics.mean(setup_cores):.2f} cores) | |"
    )


if __name__ == "__main__":
    main()
