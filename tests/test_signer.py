"""The signer (provenance/ledger/signer.py): next seqs for a batch, a seq another
writer took meanwhile, and an atomic batch that is refused leaving nothing."""

from __future__ import annotations

from typing import Any

import pytest
from support.world import LOT, World, at

from provenance.core.errors import ValidationError
from provenance.core.signing import sign
from provenance.ledger.append import Ledger
from provenance.ledger.signer import MAX_ATTEMPTS, Signer, Unsigned
from provenance.store.db import Store


def inspection(result: str = "pass", time: str | None = None) -> Unsigned:
    return Unsigned("inspect", {"result": result}, [LOT], time)


def signed_elsewhere(key: Any, seq: int, result: str = "pass") -> Any:
    """An inspection signed with the same key by another program."""
    return sign(key, kind="inspect", seq=seq, time=at(4), data={"result": result}, lots=[LOT])


def seqs_of(world: World, results: list[Any]) -> list[int]:
    return [world.store.event_at(result.index).envelope.seq for result in results]


def test_a_batch_gets_consecutive_seqs_after_the_signers_highest(world):
    highest = world.ledger.next_seq(world.did("farm")) - 1
    signer = Signer(world.ledger, world.keys["farm"])
    results = signer.sign_and_append([inspection(), inspection("fail"), inspection()])
    assert [r.status for r in results] == ["accepted"] * 3
    assert seqs_of(world, results) == [highest + 1, highest + 2, highest + 3]
    again = signer.sign_and_append([inspection()], atomic=True)  # the same signer, later
    assert seqs_of(world, again) == [highest + 4]


def test_one_clock_reading_dates_a_batch_unless_told(world):
    signer = Signer(world.ledger, world.keys["farm"])
    results = signer.sign_and_append([inspection(), inspection(time=at(2))])
    envelopes = [world.store.event_at(r.index).envelope for r in results]
    assert (envelopes[0].time_us, envelopes[1].time) == (world.now, at(2))
    given = signer.sign_and_append([inspection(), inspection()], time=at(3))
    assert {world.store.event_at(r.index).envelope.time for r in given} == {at(3)}


def test_an_event_that_does_not_validate_uses_no_seq(world):
    signer = Signer(world.ledger, world.keys["farm"])
    first = signer.sign("inspect", {"result": "pass"}, lots=[LOT])
    with pytest.raises(ValidationError):
        signer.sign("inspect", {"result": "maybe"}, lots=[LOT])
    second = signer.sign("inspect", {"result": "fail"}, lots=[LOT])
    assert second.seq == first.seq + 1
    assert [r.status for r in signer.append([first, second], atomic=True)] == ["accepted"] * 2


@pytest.mark.parametrize("atomic", [True, False])
def test_a_seq_another_writer_took_meanwhile_is_signed_again(shared_world, atomic):
    """Another process (a second Ledger on the same file) stores events with the
    seqs this signer picked, between its signing and its append."""
    world = shared_world
    signer = Signer(world.ledger, world.keys["farm"])
    mine = [
        signer.sign("inspect", {"result": "pass"}, lots=[LOT]),
        signer.sign("inspect", {"result": "fail"}, lots=[LOT]),
    ]
    other = Ledger(Store(world.store.path), world.log_key, clock=lambda: world.now)
    theirs = sign(
        world.keys["farm"],
        kind="inspect",
        seq=mine[0].seq,
        time=at(4),
        data={"result": "pass"},
        lots=[LOT],
    )
    assert other.append([theirs])[0].status == "accepted"

    results = signer.append(mine, atomic=atomic)
    assert [r.status for r in results] == ["accepted", "accepted"]
    stored = [world.store.event_at(r.index).envelope for r in results]
    assert [e.data["result"] for e in stored] == ["pass", "fail"]
    assert mine[0].seq not in {e.seq for e in stored}  # a fresh seq, not the taken one
    assert len({e.seq for e in stored}) == 2
    assert world.store.event_by_seq(world.store.identity_by_did(world.did("farm")).id, theirs.seq)
    # the other writer's event is untouched
    assert other.append([theirs])[0].status == "duplicate"


class RacingLedger(Ledger):
    """A ledger where, before every append, another writer stores an event with
    the seq the signer is about to try: the worst case for the retries."""

    def __init__(self, *args: Any, racer: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.racer = racer
        self.appends = 0

    def append(self, items: Any, **kwargs: Any) -> Any:
        items = list(items)
        self.appends += 1
        for item in items:
            competing = sign(
                self.racer,
                kind="inspect",
                seq=item.seq,
                time=at(4),
                data={"result": "pass"},
                lots=[LOT],
            )
            assert super().append([competing], atomic=True)[0].status == "accepted"
        return super().append(items, **kwargs)


def test_the_retries_are_bounded(shared_world):
    world = shared_world
    racing = RacingLedger(
        Store(world.store.path), world.log_key, clock=lambda: world.now, racer=world.keys["farm"]
    )
    signer = Signer(racing, world.keys["farm"])
    result = signer.sign_and_append([inspection()], atomic=True)[0]
    assert (result.status, result.reason) == ("rejected", "replay")
    assert racing.appends == MAX_ATTEMPTS


def test_a_clash_inside_the_batch_is_refused_not_retried(world):
    """An envelope signed elsewhere with the seq the signer picks: nothing stored
    holds it, so a new seq from the ledger would clash again; the batch is refused."""
    signer = Signer(world.ledger, world.keys["farm"])
    before = world.store.log_size()
    mine = signer.sign("inspect", {"result": "pass"}, lots=[LOT])
    elsewhere = sign(
        world.keys["farm"],
        kind="inspect",
        seq=mine.seq,
        time=at(4),
        data={"result": "fail"},
        lots=[LOT],
    )
    results = signer.append([elsewhere, mine], atomic=True)
    assert [(r.status, r.reason) for r in results] == [
        ("aborted", "aborted"),
        ("rejected", "replay"),
    ]
    assert world.store.log_size() == before


def test_a_refused_atomic_batch_stores_nothing_and_frees_its_seqs(world):
    signer = Signer(world.ledger, world.keys["farm"])
    before = world.store.log_size()
    next_seq = world.ledger.next_seq(world.did("farm"))
    results = signer.sign_and_append(
        [inspection(), Unsigned("recall", {"reason": "r", "class": "I"}, [LOT])], atomic=True
    )
    assert [(r.status, r.reason) for r in results] == [
        ("aborted", "aborted"),
        ("rejected", "unauthorised"),
    ]
    assert world.store.log_size() == before
    assert world.ledger.next_seq(world.did("farm")) == next_seq
    # the next batch uses the same seqs again: nothing held them
    again = signer.sign_and_append([inspection()], atomic=True)
    assert seqs_of(world, again) == [next_seq]


def test_not_atomic_keeps_what_passes(world):
    signer = Signer(world.ledger, world.keys["farm"])
    results = signer.sign_and_append(
        [inspection(), Unsigned("recall", {"reason": "r", "class": "I"}, [LOT]), inspection()]
    )
    assert [r.status for r in results] == ["accepted", "rejected", "accepted"]
