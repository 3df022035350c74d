"""The witness (`provenance witness`, C2SP tlog-witness) against a real server on a
loopback port: the API as the spec words it, and every attack on it refused —
rollback, fork, bad proof, unknown key, forged and missing cosignatures."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import threading
import time

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.witnesses import FakeLog, WitnessServer, origin_hash

from provenance.cli.main import main
from provenance.core.checkpoint import Checkpoint, open_checkpoint, parse_verifier_key
from provenance.core.cosignature import parse_cosigner_key, verify_cosignature
from provenance.core.merkle import EMPTY_ROOT
from provenance.core.policy import parse_policy, require_quorum
from provenance.infra.keystore import KeyStore
from provenance.witness.service import Witness
from provenance.witness.state import WitnessState

NAME = "witness.regulator.example/1"


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


@pytest.fixture
def log() -> FakeLog:
    return FakeLog().grow(20)


@pytest.fixture
def witness_dir(tmp_path, log):
    directory = tmp_path / "witness"
    vkey = run("witness", "init", "--dir", str(directory), "--name", NAME).strip()
    assert parse_cosigner_key(vkey)[0] == NAME
    assert run("witness", "add-log", "--dir", str(directory), "--key", log.vkey) == (
        f"following {log.origin}\n"
    )
    return directory


@pytest.fixture
def server(witness_dir):
    server = WitnessServer(witness_dir).start()
    yield server
    server.stop()


def witness_key(directory) -> tuple[str, bytes]:
    return parse_cosigner_key(run("witness", "key", "--dir", str(directory)).strip())


def cosigned(server, log, old, new, **kwargs) -> str:
    status, _ctype, body = server.add(log.request(old, new, **kwargs))
    assert status == 200, body
    return body.decode()


# --- the API ---------------------------------------------------------------------------------


def test_cosigns_a_consistent_history(server, log, witness_dir):
    name, public_key = witness_key(witness_dir)
    line = cosigned(server, log, 0, 5)
    assert line.startswith(f"— {name} ") and line.endswith("\n") and line.count("\n") == 1
    assert verify_cosignature(log.checkpoint(5), line, name, public_key) > 1_700_000_000
    line = cosigned(server, log, 5, 12)
    verify_cosignature(log.checkpoint(12), line, name, public_key)
    cosigned(server, log, 12, 12)  # the same checkpoint again
    # Monitors read the last cosigned checkpoint, with the log's signature and ours.
    status, _ctype, body = server.get(f"/{origin_hash(log.origin)}/checkpoint")
    assert status == 200
    note = body.decode()
    cp = open_checkpoint(note, *parse_verifier_key(log.vkey), origin=log.origin)
    assert cp == log.checkpoint(12)
    policy = parse_policy(
        f"log {log.vkey}\nwitness w {run('witness', 'key', '--dir', str(witness_dir))}quorum w\n"
    )
    assert require_quorum(note, policy).cosigned.keys() == {"w"}


def test_the_state_survives_a_restart(server, log, witness_dir):
    cosigned(server, log, 0, 7)
    server.stop()
    server.start()
    status, ctype, body = server.add(log.request(0, 9))
    assert (status, ctype, body) == (409, "text/x.tlog.size", b"7\n")
    cosigned(server, log, 7, 9)


def test_monitoring_path_404s(server, log):
    assert server.get(f"/{origin_hash(log.origin)}/checkpoint")[0] == 404  # nothing cosigned yet
    assert server.get(f"/{origin_hash('other.example/log')}/checkpoint")[0] == 404
    assert server.get(f"/{origin_hash(log.origin).upper()}/checkpoint")[0] == 404
    assert server.get("/nothing")[0] == 404
    status, _, _ = server.request("GET", "/add-checkpoint")
    assert status == 405
    status, _, _ = server.request("POST", f"/{origin_hash(log.origin)}/checkpoint", b"")
    assert status == 405


# --- attacks ---------------------------------------------------------------------------------


def test_a_rollback_is_refused(server, log):
    cosigned(server, log, 0, 10)
    # Presented as if fresh, or from an older size: 409 with the size the witness holds.
    for old in (0, 5):
        status, ctype, body = server.add(log.request(old, 6))
        assert (status, ctype, body) == (409, "text/x.tlog.size", b"10\n")
    # Claiming the witness's size but going back: old size above the checkpoint's, 400.
    status, _, body = server.add(log.request(10, 6, proof=[]))
    assert status == 400 and b"larger" in body
    # The witness still holds 10: a consistent 10 -> 11 is cosigned.
    cosigned(server, log, 10, 11)


def test_a_fork_of_one_size_is_refused(server, log):
    """Two different checkpoints of size 8: the second is refused, whichever old size
    the log claims (409 from 0, 422 from 8); and a fork that grows on is refused too."""
    cosigned(server, log, 0, 8)
    fork = FakeLog(origin=log.origin, key=log.key, salt=b"rewritten ").grow(20)
    assert fork.checkpoint(8).root_hash != log.checkpoint(8).root_hash
    status, ctype, body = server.add(fork.request(0, 8))
    assert (status, ctype, body) == (409, "text/x.tlog.size", b"8\n")
    status, _, body = server.add(fork.request(8, 8))
    assert status == 422 and b"fork" in body
    # A bigger forked tree, with the fork's own (valid for it) proof from 8: 422.
    status, _, body = server.add(fork.request(8, 15))
    assert status == 422 and b"does not verify" in body
    # The honest log still moves on.
    cosigned(server, log, 8, 15)


def test_a_fork_is_kept_as_evidence_anyone_can_check(server, log, witness_dir):
    """A refused fork was signed by the log: the witness keeps it, once, with
    what it had cosigned, and serves both — two notes by the log's key, one
    size, two roots: proof that the log showed two histories."""
    assert run("witness", "evidence", "--dir", str(witness_dir)).startswith("no evidence")
    cosigned(server, log, 0, 8)
    fork = FakeLog(origin=log.origin, key=log.key, salt=b"rewritten ").grow(20)
    for _ in range(2):  # the same refused request twice is kept once
        assert server.add(fork.request(8, 8))[0] == 422
    assert server.add(fork.request(8, 15))[0] == 422  # a bigger fork: its proof fails
    # Refusals before the log's signature is known are no evidence of anything.
    stranger = FakeLog(origin=log.origin, salt=b"stranger ").grow(20)
    assert server.add(stranger.request(8, 8))[0] == 403
    status, ctype, body = server.get(f"/{origin_hash(log.origin)}/evidence")
    assert status == 200 and ctype == "application/json"
    kept = json.loads(body)
    assert kept["origin"] == log.origin and len(kept["evidence"]) == 2
    first, second = kept["evidence"]
    assert "fork" in first["reason"] and "does not verify" in second["reason"]
    assert first["old_size"] == 8 and first["proof"] == []
    key = parse_verifier_key(log.vkey)
    theirs = open_checkpoint(first["refused"], *key, origin=log.origin)
    ours = open_checkpoint(first["cosigned"], *key, origin=log.origin)
    assert theirs.size == ours.size == 8 and theirs.root_hash != ours.root_hash
    assert second["proof"] == [base64.b64encode(p).decode() for p in fork.proof(8, 15)]
    # The operator's copy: listed, and a non-zero exit for a monitoring script.
    listed = run("witness", "evidence", "--dir", str(witness_dir), code=1)
    assert listed.count(log.origin) == 2 and "refused size 8 (from old size 8)" in listed
    assert (
        len(json.loads(run("witness", "evidence", "--dir", str(witness_dir), "--json", code=1)))
        == 2
    )
    assert server.get(f"/{origin_hash('other.example/log')}/evidence")[0] == 404
    assert server.request("POST", f"/{origin_hash(log.origin)}/evidence", b"")[0] == 405


def test_evidence_is_bounded_per_log(witness_dir, log, monkeypatch):
    from provenance.witness import state as witness_state

    monkeypatch.setattr(witness_state, "MAX_EVIDENCE", 2)
    state = WitnessState(witness_dir / "witness.db")
    witness = Witness(state, KeyStore(witness_dir).load("witness"))
    try:
        assert witness.add_checkpoint(log.request(0, 8)).status == 200
        for n in range(4):
            fork = FakeLog(origin=log.origin, key=log.key, salt=b"fork %d " % n).grow(20)
            assert witness.add_checkpoint(fork.request(8, 8)).status == 422
        assert len(state.evidence(log.origin)) == 2
    finally:
        state.close()


def test_a_version_1_witness_database_gains_the_evidence_table(witness_dir, server, log):
    server.stop()
    conn = sqlite3.connect(witness_dir / "witness.db")
    conn.execute("DROP TABLE evidence")
    conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema'")
    conn.commit()
    conn.close()
    server.start()
    cosigned(server, log, 0, 8)
    fork = FakeLog(origin=log.origin, key=log.key, salt=b"rewritten ").grow(20)
    assert server.add(fork.request(8, 8))[0] == 422
    assert len(json.loads(server.get(f"/{origin_hash(log.origin)}/evidence")[2])["evidence"]) == 1


def test_a_bad_consistency_proof_is_refused(server, log):
    cosigned(server, log, 0, 6)
    good = log.proof(6, 13)
    for i in range(len(good)):
        for bit in (0, 77, 255):
            bad = list(good)
            flipped = bytearray(bad[i])
            flipped[bit // 8] ^= 1 << (bit % 8)
            bad[i] = bytes(flipped)
            status, _, body = server.add(log.request(6, 13, proof=bad))
            assert status == 422, (i, bit, body)
    for bad in (good[:-1], [*good, good[0]], [], log.proof(5, 13)):
        assert server.add(log.request(6, 13, proof=bad))[0] == 422
    cosigned(server, log, 6, 13)


def test_proof_rules_around_size_zero(server, log):
    status, _, body = server.add(log.request(0, 4, proof=log.tree.consistency_proof(2, 4)))
    assert status == 422 and b"empty" in body
    empty = FakeLog(origin=log.origin, key=log.key)
    bad_root = Checkpoint(log.origin, 0, bytes(32))
    from provenance.core.checkpoint import sign_checkpoint

    status, _, body = server.add(
        empty.request(0, 0, note=sign_checkpoint(bad_root, log.origin, log.key))
    )
    assert status == 422 and b"empty tree" in body
    good_empty = sign_checkpoint(Checkpoint(log.origin, 0, EMPTY_ROOT), log.origin, log.key)
    assert server.add(empty.request(0, 0, note=good_empty))[0] == 200


def test_a_checkpoint_signed_by_an_unknown_key_is_forbidden(server, log):
    stranger = Ed25519PrivateKey.generate()
    status, _, body = server.add(log.request(0, 5, note=log.note(5, key=stranger)))
    assert status == 403, body
    # The trusted key's line tampered with (a bit of its signature): 403 too.
    note = log.note(5)
    sig = note.rstrip("\n").rpartition(" ")[2]
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    forged = note.replace(sig, base64.b64encode(bytes(raw)).decode())
    assert server.add(log.request(0, 5, note=forged))[0] == 403
    # The text altered under a good signature: 403.
    altered = note.replace("\nheads 5 x\n", "\nheads 6 x\n")
    assert server.add(log.request(0, 5, note=altered))[0] == 403
    # An unknown line beside the trusted signature is ignored: cosigned.
    extra = note + f"— other.example/key {base64.b64encode(bytes(68)).decode()}\n"
    assert server.add(log.request(0, 5, note=extra))[0] == 200


def test_an_unknown_origin_is_404(server):
    other = FakeLog(origin="other.example/log").grow(3)
    status, _, body = server.add(other.request(0, 3))
    assert status == 404 and b"does not follow" in body


def hostile_bodies(log: FakeLog) -> dict[str, bytes]:
    good = log.request(0, 5)
    _head, _, note = good.partition(b"\n\n")
    h = base64.b64encode(bytes(32))
    return {
        "empty": b"",
        "no blank line": good.replace(b"\n\n", b"\n"),
        "old with leading zero": good.replace(b"old 0", b"old 00"),
        "old negative": good.replace(b"old 0", b"old -1"),
        "old huge": good.replace(b"old 0", b"old " + b"9" * 30),
        "old missing": b"\n\n" + note,
        "OLD upper case": good.replace(b"old", b"OLD"),
        "two spaces": good.replace(b"old 0", b"old  0"),
        "64 proof lines": b"old 0\n" + b"\n".join([h] * 64) + b"\n\n" + note,
        "proof line not base64": b"old 0\n!!!\n\n" + note,
        "proof line 31 bytes": b"old 0\n" + base64.b64encode(bytes(31)) + b"\n\n" + note,
        "proof line non-canonical": b"old 0\n" + b"A" * 42 + b"B=\n\n" + note,
        "not UTF-8": good.replace(b"old 0", b"old 0\xff"),
        "CRLF": good.replace(b"\n", b"\r\n"),
        "note not a checkpoint": b"old 0\n\nhello\n\n- x y\n",
        "note without signatures": b"old 0\n\n" + note.rpartition(b"\n\n")[0] + b"\n",
        "signature line malformed": good + b"not a signature\n",
        "NUL in note": good.replace(b"heads", b"he\x00ds"),
    }


def test_bad_requests_are_4xx_never_5xx(server, log):
    for desc, body in hostile_bodies(log).items():
        status, _ctype, reply = server.add(body)
        assert 400 <= status < 500, (desc, status, reply)
        assert status in (400, 403, 404, 422), (desc, status, reply)
        assert reply.endswith(b"\n") and len(reply) > 1, desc
    status, _, _ = server.add(b"x" * (300 * 1024))
    assert status == 413
    cosigned(server, log, 0, 5)  # and it still works


# --- concurrency: compare-and-swap -----------------------------------------------------------


def test_concurrent_requests_cannot_both_advance(witness_dir, log):
    """Eight requests from the same old size to different sizes, at once: exactly one
    is cosigned, the others get 409 with the winner's size (the spec's race)."""
    state = WitnessState(witness_dir / "witness.db")
    witness = Witness(state, KeyStore(witness_dir).load("witness"))
    try:
        assert witness.add_checkpoint(log.request(0, 4)).status == 200
        bodies = [log.request(4, size) for size in range(5, 13)]
        replies = [None] * len(bodies)
        barrier = threading.Barrier(len(bodies))

        def submit(i: int) -> None:
            barrier.wait(timeout=10)
            replies[i] = witness.add_checkpoint(bodies[i])

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        statuses = [r.status for r in replies]
        assert statuses.count(200) == 1, statuses
        winner = 5 + statuses.index(200)
        assert all(r.status == 409 and r.body == f"{winner}\n" for r in replies if r.status != 200)
        assert state.log(log.origin).size == winner
        assert {r.body for r in replies if r.status == 409} == {f"{winner}\n"}
    finally:
        state.close()


# --- the CLI ---------------------------------------------------------------------------------


def test_init_makes_a_private_key_and_refuses_to_replace_it(tmp_path):
    directory = tmp_path / "w"
    vkey = run("witness", "init", "--dir", str(directory), "--name", NAME).strip()
    mode = stat.S_IMODE(os.stat(directory / "witness.pem").st_mode)
    assert mode == 0o600
    assert run("witness", "key", "--dir", str(directory)).strip() == vkey
    out = run("witness", "init", "--dir", str(directory), "--name", NAME, code=1)
    assert out.startswith("Error: ") and "refusing" in out
    assert run("witness", "key", "--dir", str(directory)).strip() == vkey


@pytest.mark.parametrize(
    "args, message",
    [
        (("witness", "init", "--dir", "{d}/x", "--name", "has space"), "--name"),
        (("witness", "init", "--dir", "{d}/x", "--name", "a+b"), "--name"),
        (("witness", "key", "--dir", "{d}/none"), "witness init"),
        (("witness", "serve", "--dir", "{d}/none"), "witness init"),
        (("witness", "add-log", "--dir", "{d}/none", "--key", "{vkey}"), "witness init"),
        (("witness", "add-log", "--dir", "{d}/w", "--key", "garbage"), "--key"),
        (("witness", "add-log", "--dir", "{d}/w", "--key", "{wkey}"), "0x04"),
        (("witness", "add-log", "--dir", "{d}/w", "--key", "{vkey}", "--origin", "x"), "--origin"),
    ],
)
def test_cli_errors_say_what_to_do(tmp_path, log, args, message):
    wkey = run("witness", "init", "--dir", str(tmp_path / "w"), "--name", NAME).strip()
    args = [a.format(d=tmp_path, vkey=log.vkey, wkey=wkey) for a in args]
    out = run(*args, code=1)
    assert out.startswith("Error: ") and message in out, out
    assert "Traceback" not in out


# --- any bytes: a 4xx with a reason, never an exception --------------------------------------


@pytest.fixture
def in_process(witness_dir):
    state = WitnessState(witness_dir / "witness.db")
    yield Witness(state, KeyStore(witness_dir).load("witness"))
    state.close()


def mutations(body: bytes) -> list[bytes]:
    """Every single-byte deletion, and a few replacements, of the lines' framing."""
    out = []
    for i in range(0, len(body), 5):
        out.append(body[:i] + body[i + 1 :])
        for byte in (b"\n", b" ", b"\x00", b"\xff", b"="):
            out.append(body[:i] + byte + body[i + 1 :])
    return out


def test_every_mutation_of_a_request_is_refused_or_cosigned_never_an_error(in_process, log):
    """Each mutated request gets a status from the spec with a reason, and the
    witness's state never moves but to the one checkpoint the log signed."""
    good = log.request(0, 6)
    allowed = {200, 400, 403, 404, 409, 422}
    for body in mutations(good):
        reply = in_process.add_checkpoint(body)
        assert reply.status in allowed, (body, reply)
        assert reply.body.endswith("\n") and len(reply.body) > 1
        if reply.status == 200:
            # Only a request for the same checkpoint can pass (e.g. a changed byte in
            # an ignored part); then the witness holds size 6 and later ones 409.
            assert in_process.state.log(log.origin).size == 6
    assert in_process.state.log(log.origin).size in (0, 6)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(in_process, data):
    reply = in_process.add_checkpoint(data)
    assert reply.status in (400, 403, 404, 422), reply


def test_a_log_added_while_serving_is_followed(server, witness_dir):
    other = FakeLog(origin="other.example/log").grow(3)
    assert server.add(other.request(0, 3))[0] == 404
    run("witness", "add-log", "--dir", str(witness_dir), "--key", other.vkey)
    deadline = time.monotonic() + 10
    while (status := server.add(other.request(0, 3))[0]) == 404:
        assert time.monotonic() < deadline, "the new log was not picked up"
        time.sleep(0.2)  # polling the server with a deadline: it re-reads once a second
    assert status == 200
