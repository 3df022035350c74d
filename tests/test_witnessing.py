"""Witnessing, the ledger's side (docs/protocol.md, "Witnessing"): cosignatures
collected from real witness processes on loopback, verified, stored and shown;
a witness down, a witness lying, a 409, and a log that shows two witnesses two
histories of one size."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.witness_process import ProvenanceWitness, WitnessProcess, cosignature_line, vkey_of
from support.world import World

from provenance.cli.main import main
from provenance.core.checkpoint import format_verifier_key, open_checkpoint
from provenance.core.cosignature import parse_cosigner_key
from provenance.core.errors import ValidationError
from provenance.ledger.append import Ledger
from provenance.services.witnessing import (
    WitnessError,
    WitnessingService,
    WitnessWorker,
    cosignature_of,
    parse_witness,
)
from provenance.store.cosignatures import (
    WitnessRow,
    configure_witnesses,
    configured_witnesses,
    cosignatures_of,
    record_cosignature,
    shown_checkpoint,
)
from provenance.store.db import Store
from provenance.web import create_app

ORIGIN = "test.local/log"  # tests/world.py
WAIT = 30.0  # seconds for a witnessing round on a loaded machine; a healthy one needs far less


def log_vkey(world: World) -> str:
    return format_verifier_key(ORIGIN, world.log_public_key)


def body_of(note: str) -> str:
    return note[: note.index("\n\n") + 1]


def wait_until(predicate, timeout: float = WAIT, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def witnesses(tmp_path, file_world):
    """Two witnesses (`provenance witness serve`, each its own process, folder and
    key) following file_world's log: the regulator's and a consumer
    association's. Stopped after the test."""
    started = [
        ProvenanceWitness(tmp_path / "w-regulator", "regulator.example/w", log_vkey(file_world)),
        ProvenanceWitness(tmp_path / "w-consumers", "consumers.example/w", log_vkey(file_world)),
    ]
    for witness in started:
        witness.start()
    yield started
    for witness in started:
        witness.stop()


def configure(world: World, ws: list[ProvenanceWitness], quorum: int | None = None) -> None:
    names = ["Regulator", "Consumers"]
    rows = [WitnessRow(names[i], w.url, w.vkey) for i, w in enumerate(ws)]
    configure_witnesses(world.store, rows, quorum or len(rows))


def one_round(store: Store, row: WitnessRow | None = None) -> WitnessWorker:
    """One witnessing round for *row* (the first configured witness) on *store*;
    raises what the round raises. The worker, for its stats."""
    row = row or configured_witnesses(store)[0]
    worker = WitnessWorker(store.path, row, 1, threading.Event())
    worker.error = None
    try:
        worker.round(store)
    except WitnessError as exc:
        worker.error = exc
    finally:
        worker.client.close()
    return worker


def cosigned_by(world: World, size: int) -> set[str]:
    return set(cosignatures_of(world.store, size))


# --- the store: which checkpoint is shown


def test_the_shown_checkpoint_is_the_newest_the_quorum_cosigned(file_world):
    world = file_world
    first = world.store.latest_checkpoint()
    size1 = world.store.log_size()
    assert shown_checkpoint(world.store).note == first  # no witnesses: as before witnessing

    keys = {name: Ed25519PrivateKey.generate() for name in ("a.example/w", "b.example/w")}
    rows = [
        WitnessRow(
            n.split(".")[0], "http://127.0.0.1:9", vkey_of(n, k.public_key().public_bytes_raw())
        )
        for n, k in keys.items()
    ]
    configure_witnesses(world.store, rows, 2)
    world.enrol_party("newcomer", "producer")
    newest = world.store.latest_checkpoint()
    assert shown_checkpoint(world.store).note == newest  # nothing cosigned yet: the newest

    line_a = cosignature_line("a.example/w", keys["a.example/w"], body_of(first), 1_700_000_000)
    record_cosignature(world.store, size1, "a", line_a, 1_700_000_000)
    shown = shown_checkpoint(world.store)
    assert shown.note == newest and not shown.witnessed  # one of two: no quorum yet

    line_b = cosignature_line("b.example/w", keys["b.example/w"], body_of(first), 1_700_000_001)
    record_cosignature(world.store, size1, "b", line_b, 1_700_000_001)
    shown = shown_checkpoint(world.store)
    assert shown.size == size1 and shown.witnessed and shown.cosigners == ("a", "b")
    assert shown.note == first + line_a + "\n" + line_b + "\n"
    # Still a valid signed note for the log key; the extra lines are the witnesses'.
    assert open_checkpoint(shown.note, ORIGIN, world.log_public_key).size == size1
    assert [w.cosigned_size for w in configured_witnesses(world.store)] == [size1, size1]

    # A witness with a new key: its old key's cosignatures no longer count or show.
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    rekeyed = [rows[0], WitnessRow("b", rows[1].url, vkey_of("b.example/w", other))]
    configure_witnesses(world.store, rekeyed, 2)
    assert cosignatures_of(world.store, size1) == {"a": line_a}
    assert shown_checkpoint(world.store).note == newest
    configure_witnesses(world.store, rows, 1)  # a lower quorum: one cosignature is enough
    line = cosignature_line("a.example/w", keys["a.example/w"], body_of(newest), 1_700_000_002)
    record_cosignature(world.store, size1 + 1, "a", line, 1_700_000_002)
    assert shown_checkpoint(world.store).size == size1 + 1


# --- the service against real witness processes


@pytest.mark.external
def test_cosignatures_are_collected_verified_and_served(file_world, witnesses):
    world = file_world
    configure(world, witnesses)
    service = WitnessingService(world.store.path, cadence=0.2, timeout=5).start()
    try:
        size = world.store.log_size()
        wait_until(lambda: cosigned_by(world, size) == {"Regulator", "Consumers"}, what="both")
        # More events: the next round proves consistency from the size each cosigned.
        for i in range(5):
            world.enrol_party(f"late{i}", "carrier")
        size2 = world.store.log_size()
        service.nudge()
        wait_until(lambda: cosigned_by(world, size2) == {"Regulator", "Consumers"}, what="next")
    finally:
        service.stop()
    assert all(w.cosigned_size == size2 for w in witnesses)
    shown = shown_checkpoint(world.store)
    assert shown.size == size2 and shown.cosigners == ("Consumers", "Regulator")
    body = body_of(shown.note)
    for witness in witnesses:
        cosignature_of(
            shown.note[shown.note.index("\n\n") + 2 :].split("\n", 1)[1],
            *parse_cosigner_key(witness.vkey),
            body,
        )

    app = create_app({"DATABASE": str(world.store.path)})
    note = app.test_client().get("/log/v1/checkpoint").get_data(as_text=True)
    assert note == shown.note
    # The CLI prints what the log shows; --latest the newest log-signed note alone.
    printed = CliRunner().invoke(main, ["--db", str(world.store.path), "log", "checkpoint"])
    assert printed.exit_code == 0 and printed.output == shown.note
    latest = CliRunner().invoke(
        main, ["--db", str(world.store.path), "log", "checkpoint", "--latest"]
    )
    assert latest.exit_code == 0 and latest.output == world.store.latest_checkpoint()
    # What is served satisfies a policy that requires both witnesses (and the one
    # the split-view test below holds against the notes of two histories).
    from provenance.core.policy import parse_policy, require_quorum

    regulator, consumers = witnesses
    policy = parse_policy(
        f"log {log_vkey(world)}\nwitness regulator {regulator.vkey}\n"
        f"witness consumers {consumers.vkey}\ngroup both all regulator consumers\nquorum both\n"
    )
    assert set(require_quorum(note, policy).cosigned) == {"regulator", "consumers"}
    assert open_checkpoint(note, ORIGIN, world.log_public_key).size == size2
    lines = note.split("\n\n", 1)[1].splitlines()
    assert len(lines) == 3 and {ln.split()[1] for ln in lines[1:]} == {
        "regulator.example/w",
        "consumers.example/w",
    }


@pytest.mark.external
def test_a_witness_down_delays_only_its_cosignature_and_it_catches_up(file_world, witnesses):
    world = file_world
    configure(world, witnesses)
    consumers = witnesses[1]
    service = WitnessingService(world.store.path, cadence=0.2, timeout=2).start()
    try:
        size1 = world.store.log_size()
        wait_until(lambda: len(cosigned_by(world, size1)) == 2, what="both cosign")
        consumers.stop()
        for i in range(10):  # the ledger keeps taking events while a witness is down
            world.enrol_party(f"while-down{i}", "carrier")
        size2 = world.store.log_size()
        service.nudge()
        wait_until(lambda: cosigned_by(world, size2) == {"Regulator"}, what="the one up")
        worker = next(w for w in service.workers if w.row.name == "Consumers")
        wait_until(lambda: worker.stats.failures >= 1, what="a failure")
        assert shown_checkpoint(world.store).size == size1  # the quorum is not met for size2
        consumers.start()  # back, on the same port, with its state
        wait_until(lambda: len(cosigned_by(world, size2)) == 2, what="the catch-up")
    finally:
        service.stop()
    assert shown_checkpoint(world.store).size == size2
    assert consumers.cosigned_size == size2


@pytest.mark.external
def test_a_bad_cosignature_is_not_stored_and_is_logged(tmp_path, file_world, caplog):
    world = file_world
    liar = WitnessProcess(tmp_path / "liar", "liar.example/w", log_vkey(world), bad=True).start()
    try:
        configure_witnesses(world.store, [WitnessRow("Liar", liar.url, liar.vkey)], 1)
        with caplog.at_level(logging.ERROR):
            worker = one_round(world.store)
        assert "does not verify" in str(worker.error)
    finally:
        liar.stop()
    assert cosignatures_of(world.store, world.store.log_size()) == {}
    assert worker.stats.bad_cosignatures == 1
    assert "cosignature refused, not stored" in caplog.text
    assert shown_checkpoint(world.store).cosigners == ()


def test_cosignature_of_ignores_other_keys_and_refuses_what_does_not_verify(file_world):
    note = file_world.store.latest_checkpoint()
    body = body_of(note)
    mine, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    key = ("w.example/w", mine.public_key().public_bytes_raw())
    good = cosignature_line("w.example/w", mine, body, 1_700_000_000)
    foreign = cosignature_line("x.example/w", other, body, 1_700_000_000)
    assert cosignature_of(f"{foreign}\n{good}\n", *key, body) == (good, 1_700_000_000)
    with pytest.raises(WitnessError, match="no cosignature by"):
        cosignature_of(f"{foreign}\n", *key, body)
    with pytest.raises(WitnessError, match="does not verify"):  # over another checkpoint
        cosignature_of(good + "\n", *key, body.replace(ORIGIN, ORIGIN + "x"))
    impostor = cosignature_line("w.example/w", other, body, 1_700_000_000)  # name, not key
    with pytest.raises(WitnessError, match="no cosignature by"):
        cosignature_of(impostor + "\n", *key, body)
    zero = cosignature_line("w.example/w", mine, body, 0)
    with pytest.raises(WitnessError, match="timestamp 0"):
        cosignature_of(zero + "\n", *key, body)
    for garbage in ("", "not a signature\n", f"{good}", "— w.example/w !!!\n"):
        with pytest.raises(WitnessError):
            cosignature_of(garbage, *key, body)


@pytest.mark.external
def test_a_409_teaches_the_size_the_witness_cosigned(file_world, witnesses):
    world = file_world
    regulator = witnesses[0]
    configure_witnesses(world.store, [WitnessRow("Regulator", regulator.url, regulator.vkey)], 1)
    assert one_round(world.store).error is None
    size1 = world.store.log_size()
    assert regulator.cosigned_size == size1
    # The ledger forgets (the witness removed, then added again): it sends old 0.
    row = configured_witnesses(world.store)[0]
    configure_witnesses(world.store, [], 0)
    configure_witnesses(world.store, [row], 1)
    assert configured_witnesses(world.store)[0].cosigned_size is None
    world.enrol_party("after", "carrier")
    worker = one_round(world.store)
    assert worker.error is None
    assert worker.stats.conflicts == 1  # the 409, then the request again with old = size1
    assert regulator.cosigned_size == size1 + 1
    assert configured_witnesses(world.store)[0].cosigned_size == size1 + 1


# --- the split view: two histories of one size


def forked_world(directory: Path, original: World) -> World:
    """Another history under the same log key and origin (the operator's fork)."""
    directory.mkdir()
    store = Store(directory / "ledger.db")
    registrar = Ed25519PrivateKey.generate()
    fork = World(store, None, original.log_key, registrar)  # type: ignore[arg-type]
    fork.ledger = Ledger.initialise(
        store, original.log_key, registrar, ORIGIN, clock=lambda: fork.now
    )
    fork.keys["registrar"] = registrar
    fork.seqs["registrar"] = 1
    while fork.store.log_size() < original.store.log_size():
        fork.enrol_party(f"fork{fork.store.log_size()}", "carrier")
    while original.store.log_size() < fork.store.log_size():
        original.enrol_party(f"pad{original.store.log_size()}", "carrier")
    return fork


@pytest.mark.external
def test_a_split_view_is_refused_by_the_witness_that_saw_the_other_history(
    tmp_path, file_world, witnesses
):
    world = file_world
    fork = forked_world(tmp_path / "fork", world)
    size = world.store.log_size()
    assert fork.store.log_size() == size
    assert body_of(fork.store.latest_checkpoint()) != body_of(world.store.latest_checkpoint())
    regulator, consumers = witnesses

    # The operator shows the regulator's witness the real history...
    configure(world, witnesses)
    for row in configured_witnesses(world.store):
        assert one_round(world.store, row).error is None
    assert cosigned_by(world, size) == {"Regulator", "Consumers"}

    # ...and then the fork, of the same size, to the same witnesses: both refuse it.
    configure(fork, witnesses)
    for row in configured_witnesses(fork.store):
        worker = one_round(fork.store, row)
        assert "422" in str(worker.error)  # after the 409 (its size): same size, another root
    assert cosigned_by(fork, size) == set()
    assert shown_checkpoint(fork.store).cosigners == ()

    # Growing the fork does not help: no consistency proof leads from the cosigned root.
    fork.enrol_party("more", "carrier")
    assert "422" in str(one_round(fork.store).error)
    assert cosigned_by(fork, size + 1) == set()
    assert regulator.cosigned_size == consumers.cosigned_size == size


@pytest.mark.external
def test_two_witnesses_shown_two_histories_of_one_size_give_neither_a_quorum(
    tmp_path, file_world, witnesses
):
    """The operator shows the regulator's witness one history and the consumers'
    witness another, of the same size: each cosigns what it saw, but no checkpoint
    gets both, so a policy requiring both refuses each; and the log's next round
    is refused by the witness that saw the other history (the conflict surfaces)."""
    from provenance.core.policy import PolicyError, parse_policy, require_quorum

    world = file_world
    fork = forked_world(tmp_path / "fork", world)
    size = world.store.log_size()
    regulator, consumers = witnesses
    configure(world, witnesses)
    configure(fork, witnesses)
    real_rows = {row.name: row for row in configured_witnesses(world.store)}
    fork_rows = {row.name: row for row in configured_witnesses(fork.store)}
    assert one_round(world.store, real_rows["Regulator"]).error is None
    assert one_round(fork.store, fork_rows["Consumers"]).error is None
    assert cosigned_by(world, size) == {"Regulator"} and cosigned_by(fork, size) == {"Consumers"}
    assert not shown_checkpoint(world.store).witnessed
    assert not shown_checkpoint(fork.store).witnessed

    policy = parse_policy(
        f"log {log_vkey(world)}\nwitness regulator {regulator.vkey}\n"
        f"witness consumers {consumers.vkey}\ngroup both all regulator consumers\nquorum both\n"
    )
    for store in (world.store, fork.store):
        note = store.latest_checkpoint() + "".join(
            line + "\n" for line in cosignatures_of(store, size).values()
        )
        with pytest.raises(PolicyError):
            require_quorum(note, policy)
    # The honest log cannot get the consumers' witness either: it saw the fork.
    assert "422" in str(one_round(world.store, real_rows["Consumers"]).error)
    assert cosigned_by(world, size) == {"Regulator"}


@pytest.mark.external
def test_a_witness_ahead_of_the_log_is_a_conflict_not_a_rollback(tmp_path, file_world, witnesses):
    world = file_world
    regulator = witnesses[0]
    configure_witnesses(world.store, [WitnessRow("Regulator", regulator.url, regulator.vkey)], 1)
    store = world.store
    # The witness says it cosigned more of this log than we have: another history, or
    # a rollback of ours. Never answered by submitting an older checkpoint.
    from provenance.store.cosignatures import set_cosigned_size

    set_cosigned_size(store, "Regulator", store.log_size() + 10)
    assert "larger than our newest" in str(one_round(store).error)
    assert regulator.cosigned_size == 0


# --- the command


@pytest.mark.parametrize(
    "option, message",
    [
        ("Regulator=ftp://127.0.0.1:1=x", "not an http:// or https:// URL"),
        ("Regulator=http://127.0.0.1:1=nokey", "must look like <name>+<8 hex key id>"),
        (f"Regulator=http://127.0.0.1:1=w.example+00000000+BA{'A' * 42}", "key id"),
        (f"Regulator=http://127.0.0.1:1=w.example+00000000+AQ{'A' * 42}", "a log's note key"),
        ("http://127.0.0.1:1", "NAME=URL=VKEY"),
    ],
)  # fmt: skip
def test_log_witness_refuses_bad_options(tmp_path, option, message):
    runner = CliRunner()
    base = ["--db", str(tmp_path / "l.db"), "--keys", str(tmp_path / "keys")]
    assert runner.invoke(main, [*base, "init"]).exit_code == 0
    result = runner.invoke(main, [*base, "log", "witness", "--witness", option])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_parse_witness_takes_name_url_and_key():
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    vkey = vkey_of("w.example/w", key)
    row = parse_witness("Regulator=https://witness.example/api/=" + vkey)
    assert row == WitnessRow("Regulator", "https://witness.example/api", vkey)
    with pytest.raises(ValidationError):
        parse_witness(f"Regulator=https://witness.example/?a=b={vkey}")


@pytest.mark.external
def test_log_witness_runs_until_sigterm(tmp_path, witnesses, file_world):
    """The command as a process: configures, collects, stops cleanly on SIGTERM."""
    import signal
    import subprocess
    import sys

    world = file_world
    keys = tmp_path / "keys"
    keys.mkdir()
    command = [
        sys.executable, "-m", "provenance", "--db", str(world.store.path), "--keys", str(keys),
        "log", "witness", "--every", "0.2",
        "--witness", witnesses[0].witness_option("Regulator"),
        "--witness", witnesses[1].witness_option("Consumers"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        size = world.store.log_size()
        wait_until(lambda: len(cosigned_by(world, size)) == 2, what="the command's round")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped; 2 cosignatures collected" in err
    assert json.loads(json.dumps(shown_checkpoint(world.store).cosigners)) == [
        "Consumers",
        "Regulator",
    ]


# --- the retained MQTT checkpoint


@pytest.mark.external
def test_the_retained_checkpoint_carries_the_cosignatures(file_world, witnesses, broker):
    from support.ingest import CheckpointWatcher, Publisher, readings, wire

    from provenance.core import topics
    from provenance.ingest.service import IngestService

    world = file_world
    configure(world, witnesses)
    service = IngestService(
        broker=broker.url, db_path=world.store.path, log_key=world.log_key, worker=True,
        client_id="ingest-witnessed", backoff=(0.05, 0.5),
    ).start()  # fmt: skip
    witnessing = WitnessingService(world.store.path, cadence=0.2, timeout=5).start()
    publisher = Publisher(broker)
    watcher = None
    try:
        assert service.ready.wait(WAIT)
        batch = readings(world, 50)
        for envelope in batch:
            publisher.publish(topics.events_topic("devices", "probe"), wire(envelope))
        publisher.wait_published()
        assert service.wait_for(lambda s: s.accepted == len(batch), WAIT), service.stats()
        size = world.store.log_size()
        witnessing.nudge()
        wait_until(lambda: len(cosigned_by(world, size)) == 2, what="both cosign")
        # No commit follows the cosignatures: the publisher still reads them out.
        watcher = CheckpointWatcher(broker, "scanner")

        def cosigned_note():
            with watcher._changed:
                for _retained, note in watcher.notes:
                    if note.split("\n")[1] == str(size) and note.count("\n— ") == 3:
                        return note
                watcher._changed.wait(0.2)
            return None

        note = wait_until(cosigned_note, what="the cosigned checkpoint on MQTT")
    finally:
        if watcher is not None:
            watcher.close()
        witnessing.stop()
        publisher.close()
        service.stop(15)
        service.join(15)
    assert note == shown_checkpoint(world.store).note
    assert open_checkpoint(note, ORIGIN, world.log_public_key).size == size


# --- the scan page


def test_the_scan_page_names_the_cosigners(file_world):
    world = file_world
    keys = {name: Ed25519PrivateKey.generate() for name in ("r.example/w", "c.example/w")}
    names = {"r.example/w": "Health Authority", "c.example/w": "Consumers' Association"}
    rows = [
        WitnessRow(names[n], "http://127.0.0.1:9", vkey_of(n, k.public_key().public_bytes_raw()))
        for n, k in keys.items()
    ]
    configure_witnesses(world.store, rows, 2)
    app = create_app({"DATABASE": str(world.store.path)})
    client = app.test_client()
    page = "/01/09506000134352/10/LOT42"
    before = client.get(page).get_data(as_text=True)
    assert "cosigned by independent witnesses" not in before
    note, size = world.store.latest_checkpoint(), world.store.log_size()
    for n, key in keys.items():
        line = cosignature_line(n, key, body_of(note), 1_700_000_000)
        record_cosignature(world.store, size, names[n], line, 1_700_000_000)
    after = client.get(page).get_data(as_text=True)  # the page is rebuilt, not cached
    assert f"Log checkpoint {size} cosigned by independent witnesses" in after
    assert "Consumers&#39; Association, Health Authority" in after
