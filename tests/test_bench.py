"""The benchmarks under bench/ still import: they reach into tests/support/ and
each other, and nothing else runs them in CI, so a moved helper would break them
unnoticed (bench/bundle.py did once). Importing runs no benchmark: each runs only
under `if __name__ == "__main__"`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.paths import ROOT

BENCHES = sorted(path.stem for path in (ROOT / "bench").glob("*.py"))


def test_there_are_benchmarks():
    assert {"ledger", "ingest", "bundle", "witness", "witnessing"} <= set(BENCHES)


@pytest.mark.external  # a fresh interpreter per benchmark
@pytest.mark.parametrize("name", BENCHES)
def test_a_benchmark_imports(name):
    # A fresh interpreter each: the benches put bench/ and tests/ on sys.path and
    # name modules `ledger` and `ingest`, which must not leak into this process.
    code = (
        f"import sys, runpy; sys.path.insert(0, {str(ROOT / 'bench')!r}); "
        f"runpy.run_path({str(ROOT / 'bench' / (name + '.py'))!r}, run_name='bench_import')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_lean_baseline_client_counts_and_acknowledges_every_message(broker):
    """bench/lean_mqtt.py is the pass-through baseline's client: through a real
    broker it must deliver every message once, with its payload and `sent_at`,
    and see every PUBACK (else the baseline would be a rate of nothing)."""
    import threading

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import lean_mqtt
    finally:
        sys.path.remove(str(ROOT / "bench"))
    payloads = [f"message {i}".encode() * (1 + i % 7) for i in range(3000)]
    got: list[tuple[str | None, bytes]] = []
    subscribed = threading.Event()
    counted: list[int] = []

    def receive() -> None:
        counted.append(
            lean_mqtt.receive(
                broker.host,
                broker.port,
                "lean-sub",
                "bench/+/+/events",
                len(payloads),
                subscribed=subscribed.set,
                on_message=lambda props, body: got.append((lean_mqtt.sent_at_of(props), body)),
                deadline_s=60,
            )
        )

    reader = threading.Thread(target=receive)
    reader.start()
    assert subscribed.wait(30)
    sent = lean_mqtt.publish_all(
        broker.host,
        broker.port,
        "lean-pub",
        "bench/g/1/events",
        payloads,
        window=64,
        sent_at=lambda: "2026-12-06T00:00:00.000000Z",
    )
    reader.join(90)
    assert sent == len(payloads) and counted == [len(payloads)]
    assert [body for _, body in got] == payloads  # one publisher: in order, each once
    assert {stamp for stamp, _ in got} == {"2026-12-06T00:00:00.000000Z"}
