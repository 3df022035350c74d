"""Ingest memory soak: the simulated fleet at full rate through a local broker
into `provenance ingest` for N minutes, sampling the resident memory of the
ingest process and its worker every few seconds.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 2000] [--sample 15]

"Flat" means: after warm-up (the first 20 % of the run), the last quarter's
median RSS is within 10 % of the second quarter's. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance.infra.localbroker import Broker, describe


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children, in KiB (0 once gone)."""
    total = 0
    for one in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    found = [int(child) for child in text.split()]
    return found + [grand for child in found for grand in children(child)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="readings/s the fleet aims at")
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between samples")
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "PROVENANCE_DB": str(work / "soak.db"),
            "PROVENANCE_KEYS": str(work / "keys"),
        }
        run = [sys.executable, "-m", "provenance"]
        subprocess.run([*run, "init"], env=env, check=True, capture_output=True)
        broker = Broker(work / "broker").start()
        ready = work / "ingest.ready"
        ingest = subprocess.Popen(
            [*run, "ingest", "--broker", broker.url, "--ready-file", str(ready)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(work / "ingest.log").open("wb"),
        )
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and ingest.poll() is None:
            time.sleep(0.1)  # bounded wait for the ingest's subscriptions
        fleet = subprocess.Popen(
            [
                *run,
                "simulate",
                "--broker",
                broker.url,
                "--scenario",
                "vaccine",
                "--gateways",
                "8",
                "--devices",
                "64",
                "--rate",
                str(args.rate),
                "--duration",
                str(seconds),
                "--accelerate",
                "3600",
            ],
            env=env,
            stdout=(work / "fleet.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        samples: list[tuple[float, int]] = []
        began = time.monotonic()
        try:
            while fleet.poll() is None and time.monotonic() - began < seconds + 120:
                samples.append((time.monotonic() - began, rss_kib(ingest.pid)))
                time.sleep(args.sample)
        finally:
            fleet.send_signal(signal.SIGTERM)
            fleet.wait(timeout=60)
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(timeout=120)
            broker.stop()
        stats = subprocess.run(
            [*run, "stats"], env=env, check=True, capture_output=True, text=True
        ).stdout
    readings = next((line for line in stats.splitlines() if line.startswith("events")), "")
    steady = [kib for t, kib in samples if t >= 0.2 * seconds]
    quarter = max(1, len(steady) // 4)
    second, last = steady[quarter : 2 * quarter] or steady, steady[-quarter:]
    growth = statistics.median(last) / statistics.median(second) - 1
    print(describe())
    print("| minute | ingest RSS (process + worker) |")
    print("|---|---|")
    for t, kib in samples[:: max(1, len(samples) // 20)]:
        print(f"| {t / 60:.1f} | {kib / 1024:.0f} MiB |")
    print(
        f"\nsteady state: second quarter median {statistics.median(second) / 1024:.0f} MiB, "
        f"last quarter median {statistics.median(last) / 1024:.0f} MiB ({growth:+.1%}); "
        f"flat: {'yes' if abs(growth) <= 0.10 else 'no'}"
    )
    print(readings)


if __name__ == "__main__":
    main()
