"""Order on a shared subscription: an envelope refused for want of an earlier
event (its lot's commissioning, its device's attach…) that another node holds
waits for it, up to the service's dependency wait, instead of being refused;
one with nothing to wait for is refused once, after the wait; PUBACKs go out
in arrival order all the same (docs/ingest.md, "Several ingest nodes")."""

from __future__ import annotations

import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.ingest import SETTLE, readings, wire, wrap_append
from support.world import GTIN, at

from provenance.core import topics
from provenance.core.signing import sign
from provenance.ingest.acks import AckOrder, Waiting
from provenance.ingest.inbox import Message

FARM_TOPIC = topics.events_topic("parties", "farm")
NEW_LOT = f"https://id.gs1.org/01/{GTIN}/10/SHARED1"


def test_the_ledger_lets_only_an_enrolled_signers_missing_dependency_wait(world):
    attach = world.sign("farm", "attach", [NEW_LOT], {"device": world.did("probe")}, time=at(1))
    stranger = sign(
        Ed25519PrivateKey.generate(), kind="reading", seq=0, time=at(1), data={"temperature_c": 4}
    )
    size = world.store.log_size()
    waiting, refused = world.ledger.append([attach, stranger], may_wait=[True, True])
    assert (waiting.status, waiting.reason) == ("waiting", "unknown-lot")
    assert (refused.status, refused.reason) == ("rejected", "unknown-signer")
    assert not waiting.ok
    assert world.store.stats()["rejects"] == {"unknown-signer": 1}  # a wait is no refusal
    assert world.store.log_size() == size
    final = world.ledger.append([attach], may_wait=[False])[0]
    assert (final.status, final.reason) == ("rejected", "unknown-lot")
    assert world.store.stats()["rejects"] == {"unknown-signer": 1, "unknown-lot": 1}
    with pytest.raises(ValueError, match="may_wait"):
        world.ledger.append([attach], may_wait=[True], atomic=True)
    with pytest.raises(ValueError, match="may_wait"):
        world.ledger.append([attach], may_wait=[])


def test_acks_leave_in_arrival_order_whatever_order_messages_settle_in():
    order = AckOrder()
    messages = [Message("t", b"x", mid, 1, 1, None) for mid in range(5)]
    order.received(messages)
    assert order.done([messages[1], messages[2]]) == []  # 0 still waits
    assert [m.mid for m, _ in order.done([messages[0]])] == [0, 1, 2]
    assert order.done([messages[4]], ack=False) == []
    assert [(m.mid, ack) for m, ack in order.done([messages[3]])] == [(3, True), (4, False)]
    assert len(order) == 0


def test_waiting_messages_are_due_after_a_growing_delay_then_for_good():
    waiting = Waiting()
    message = Message("t", b"x", 1, 1, 1, None, wait_until=10.0)
    waiting.park(message, 0.0)
    assert waiting.due(0.0, 10) == []
    assert waiting.due(1.0, 10) == [message] and message.may_wait
    waiting.park(message, 11.0)
    assert waiting.due(12.0, 10) == [message] and not message.may_wait  # its wait is over
    waiting.park(message, 0.0)
    assert waiting.due(0.0, 10, everything=True) == [message] and not message.may_wait
    assert len(waiting) == 0
    many = [Message("t", b"x", mid, 1, 1, None, envelopes=3) for mid in range(4)]
    for one in many:
        waiting.park(one, 0.0)
    assert waiting.due(1.0, 5) == many[:2]  # up to a group's worth of envelopes
    assert len(waiting) == 2


def test_an_attach_that_reaches_the_other_node_first_waits_for_its_lot(
    file_world, start_ingest, publisher, broker
):
    """Round-robin gives the commissioning to one node and the attach to the
    other; the first holds its commit until the second has tried the attach.
    Before, the attach was refused as `unknown-lot`."""
    if not broker.mqtt5:
        pytest.skip("shared subscriptions need MQTT 5 (amqtt fallback in use)")
    world = file_world
    nodes: list = []
    tried = threading.Event()

    def hold_the_commission(items) -> None:
        if any(b"commission" in item if isinstance(item, bytes) else False for item in items):
            deadline = time.monotonic() + 10
            while not any(n.stats().waited for n in nodes) and time.monotonic() < deadline:
                tried.wait(0.02)

    for name in ("a", "b"):
        nodes.append(
            start_ingest(
                world,
                shared_group="ledger",
                client_id=f"order-{name}",
                wrap=lambda ledger: wrap_append(ledger, hold_the_commission),
            )
        )
    commission = world.sign(
        "farm",
        "commission",
        [NEW_LOT],
        {"gtin": GTIN, "lot": "SHARED1", "product": "Kale"},
        time=at(0),
    )
    attach = world.sign("farm", "attach", [NEW_LOT], {"device": world.did("probe")}, time=at(1))
    publisher.publish(FARM_TOPIC, wire(commission))
    publisher.publish(FARM_TOPIC, wire(attach))
    publisher.wait_published()

    def accepted() -> int:
        return sum(n.stats().accepted for n in nodes)

    deadline = time.monotonic() + SETTLE
    while accepted() < 2:
        assert time.monotonic() < deadline, [n.stats() for n in nodes]
        nodes[0].wait_for(lambda s: accepted() >= 2, 0.5)
    assert sum(n.stats().waited for n in nodes) >= 1  # the attach did wait
    assert sum(n.stats().rejected_total for n in nodes) == 0
    assert world.store.stats()["rejects"] == {}


@pytest.mark.parametrize("worker", [False, True], ids=["thread", "worker-process"])
def test_nothing_to_wait_for_is_refused_once_after_the_wait_and_later_messages_flow(
    file_world, start_ingest, publisher, broker, worker
):
    if not broker.mqtt5:
        pytest.skip("shared subscriptions need MQTT 5 (amqtt fallback in use)")
    world = file_world
    world.ledger.close()
    node = start_ingest(
        world, shared_group="ledger", client_id="alone", dependency_wait=0.3, worker=worker
    )
    orphan = world.sign("farm", "attach", [NEW_LOT], {"device": world.did("probe")}, time=at(1))
    batch = readings(world, 20)
    started = time.monotonic()
    publisher.publish(FARM_TOPIC, wire(orphan))
    for envelope in batch:
        publisher.publish(FARM_TOPIC, wire(envelope))
    publisher.wait_published()
    assert node.wait_for(lambda s: s.messages >= 21, SETTLE), node.stats()
    assert time.monotonic() - started >= 0.3
    stats = node.stats()
    assert stats.accepted == 20 and stats.rejected == {"unknown-lot": 1}
    assert stats.waited >= 1 and stats.in_flight == 0
    assert world.store.stats()["rejects"] == {"unknown-lot": 1}  # recorded once, not per try
