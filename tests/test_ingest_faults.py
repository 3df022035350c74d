"""`provenance ingest` as a real process under faults: kill -9 mid-stream,
broker restarts, SIGTERM, refused credentials. The ledger must end up with
exactly the published readings: 0 lost, 0 duplicated.

The service runs through a small runner script that registers the command on
`provenance.cli.main` (the owner registers it for real). Cross-process waits
poll the database or watch the service's log lines, always with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from support.ingest_process import READY, SETTLE, Ingest, Ledger, Stream, wait_until, wire

from provenance.core import topics
from provenance.ledger.audit import verify_ledger
from provenance.store.db import Store


def needs_redelivery(broker: Any) -> None:
    if broker.kind != "mosquitto":
        pytest.skip(
            "amqtt (the fallback broker) resumes a session without redelivering its "
            "unacknowledged or queued messages, so nothing can be guaranteed across a restart"
        )


@pytest.fixture
def ledger(tmp_path):
    made = Ledger(tmp_path)
    yield made


@pytest.fixture
def processes():
    """The ingest processes a test starts; at the end each is killed if it
    still runs, and none may have left a process of its own behind."""
    running: list[Ingest] = []
    yield running
    with contextlib.ExitStack() as closing:  # every one is closed, the first failure raised
        for ingest in running:
            closing.callback(ingest.close)


def start(processes: list[Ingest], ledger: Ledger, url: str, *extra: str, **kw: Any) -> Ingest:
    ingest = Ingest(ledger, url, *extra, **kw)
    processes.append(ingest)
    return ingest


def assert_exactly(ledger: Ledger, published: list[Any]) -> None:
    stored = ledger.stored()
    assert len(stored) == len(set(stored)), "a reading is stored twice"
    assert sorted(stored) == sorted((e.signer, e.seq) for e in published)
    store = Store(ledger.db, readonly=True)
    try:
        assert store.stats()["rejects"] == {}
        report = verify_ledger(store, ledger.log_public_key)
        assert report.ok, report.problems[:3]
    finally:
        store.close()


def stream_to_ingest(
    ledger: Ledger, broker: Any, processes: list[Ingest], count: int, *extra: str
) -> tuple[list[Any], Ingest, Stream]:
    """*count* readings, published paced (so that a fault lands mid-stream) to
    one ingest process (with *extra* options) that has subscribed; the test's
    writer is closed first."""
    published = ledger.readings(count)
    ledger.close_writer()
    ingest = start(processes, ledger, broker.url, *extra)
    ingest.wait_for_line("subscribed to")
    stream = Stream(broker, [wire(e) for e in published])
    stream.start()
    return published, ingest, stream


def assert_all_taken_in(
    ledger: Ledger, ingest: Ingest, stream: Stream, published: list[Any]
) -> None:
    """Once the broker has acknowledged the stream and *ingest* has committed
    every reading, *ingest* stops on SIGTERM with 0 and the ledger holds exactly
    the published readings."""
    stream.wait_acknowledged()
    wait_until(lambda: ledger.count() >= len(published), SETTLE, "every reading")
    # On a loaded machine the ingest killed last may have committed everything
    # already, and its successor may still be starting: a SIGTERM before its
    # handlers are in place would end it with -15, which proves nothing.
    ingest.wait_for_line("subscribed to")
    assert ingest.terminate() == 0, ingest.output
    stream.close()
    assert_exactly(ledger, published)


# --- the tests


@pytest.mark.slow
def test_kill_9_mid_stream_loses_and_duplicates_nothing(ledger, broker, processes):
    needs_redelivery(broker)
    published, ingest, stream = stream_to_ingest(ledger, broker, processes, 3000)
    for fraction in (0.15, 0.4, 0.65):
        wait_until(
            lambda f=fraction: ledger.count() >= f * len(published), SETTLE, f"{fraction:.0%}"
        )
        ingest.kill9()
        ingest = start(processes, ledger, broker.url)
    assert_all_taken_in(ledger, ingest, stream, published)


def test_kill_9_under_mqtt_3_1_1_loses_and_duplicates_nothing(ledger, broker, processes):
    """--mqtt-version 3.1.1 (cheaper per message): still acknowledged only
    after the commit, so a kill -9 mid-stream loses and duplicates nothing."""
    needs_redelivery(broker)
    published, ingest, stream = stream_to_ingest(
        ledger, broker, processes, 1500, "--mqtt-version", "3.1.1"
    )
    assert "(MQTT 3.1.1, " in ingest.output
    wait_until(lambda: ledger.count() >= 0.3 * len(published), SETTLE, "30% committed")
    ingest.kill9()
    ingest = start(processes, ledger, broker.url, "--mqtt-version", "3.1.1")
    assert_all_taken_in(ledger, ingest, stream, published)


def test_mqtt_3_1_1_with_a_shared_group_is_refused_before_connecting(ledger, processes):
    ingest = start(
        processes, ledger, "mqtt://127.0.0.1:9", "--mqtt-version", "3.1.1", "--shared-group", "g"
    )
    assert ingest.wait() == 1
    assert "Error: --shared-group needs MQTT 5" in ingest.output, ingest.output
    assert "Traceback" not in ingest.output


@pytest.mark.slow
def test_broker_restart_mid_stream_loses_and_duplicates_nothing(ledger, broker, processes):
    needs_redelivery(broker)
    published, ingest, stream = stream_to_ingest(ledger, broker, processes, 2500)
    wait_until(lambda: ledger.count() >= 0.3 * len(published), SETTLE, "30% committed")
    broker.restart()
    assert_all_taken_in(ledger, ingest, stream, published)
    assert "connection lost" in ingest.output


@pytest.mark.slow
def test_sigterm_commits_what_is_in_flight_and_exits_0(ledger, broker, processes):
    needs_redelivery(broker)
    published, ingest, stream = stream_to_ingest(ledger, broker, processes, 2000)
    wait_until(lambda: ledger.count() >= 0.3 * len(published), SETTLE, "30% committed")
    assert ingest.terminate() == 0, ingest.output
    output = ingest.output
    assert "SIGTERM: finishing what is in flight" in output
    assert " 0 in flight)" in output  # drained: nothing received was left uncommitted
    stream.wait_acknowledged()
    again = start(processes, ledger, broker.url)  # the broker kept the rest for our session
    again.wait_for_line("subscribed to")
    assert_all_taken_in(ledger, again, stream, published)


def test_refused_credentials_exit_3_quickly_with_a_clear_message(ledger, tmp_path, processes):
    from support.broker import Broker

    guarded = Broker(tmp_path / "auth-broker", users={"ingest": "s3cret"}).start()
    try:
        ledger.close_writer()
        for extra in (["--username", "ingest", "--password", "wrong"], []):
            started = time.monotonic()
            ingest = start(processes, ledger, guarded.url, *extra)
            assert ingest.wait(READY) == 3, ingest.output
            assert time.monotonic() - started < 15
            assert "refused" in ingest.output and "--password" in ingest.output
        good = start(
            processes,
            ledger,
            guarded.url,
            "--username",
            "ingest",
            env={"PROVENANCE_MQTT_PASSWORD": "s3cret"},
        )
        good.wait_for_line("subscribed to")
        assert good.terminate() == 0, good.output
    finally:
        guarded.kill()


def test_ready_file_is_written_once_subscribed_and_removed_on_exit(
    ledger, broker, processes, tmp_path
):
    ready = tmp_path / "run" / "ingest.ready"
    ready.parent.mkdir()
    ready.write_text("stale: a killed run left this")  # must not pass for ready
    ledger.close_writer()
    ingest = start(processes, ledger, broker.url, "--ready-file", str(ready))
    wait_until(lambda: _ready_content(ready) is not None, READY, "the ready file")
    content = _ready_content(ready)
    assert content == {
        "pid": ingest.process.pid,
        "broker": broker.url,
        "topics": list(topics.EVENT_FILTERS),
        "started": content["started"],
    }
    assert content["started"].endswith("Z") and "subscribed to" in ingest.output
    assert sorted(p.name for p in ready.parent.iterdir()) == ["ingest.ready"]  # no temp file
    assert ingest.terminate() == 0, ingest.output
    assert not ready.exists()


def _ready_content(path: Path) -> dict[str, Any] | None:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not there yet, or still the stale text
    return content if isinstance(content, dict) else None
