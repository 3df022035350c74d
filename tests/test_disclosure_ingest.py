"""Selective disclosure over MQTT (docs/protocol.md §14, docs/ingest.md): a v2
envelope travels as {"envelope": …, "disclosures": […]}, alone or in an array
beside plain v1 envelopes; the ingest stores the disclosures beside the log
and refuses, with its reason and published notice, a v2 envelope whose
disclosures are missing or do not match, while the service keeps running."""

from __future__ import annotations

import json

import pytest
from support.ingest import GATEWAY_TOPIC, SETTLE
from support.world import LOT, World, at

from provenance.core import disclosure, topics
from provenance.core.signing import sign_private
from provenance.store.disclosures import disclosures_of

pytestmark = pytest.mark.external

FARM_TOPIC = topics.events_topic("parties", "farm")


def notices_of(notices, events: str) -> list[dict]:
    return [payload for topic, payload in notices if topic == topics.rejects_topic(events)]


@pytest.fixture
def file_world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.ledger.close()
    world.store.close()


def private_ship(world: World, seq: int):
    return sign_private(
        world.keys["farm"],
        kind="ship",
        seq=seq,
        time=at(2),
        data={"to": world.did("dc"), "location": {"name": "Dock 3", "lat": -0.7, "lon": 36.4}},
        lots=[LOT],
        private=["location"],
    )


@pytest.mark.parametrize("worker", [False, True], ids=["thread", "worker-process"])
def test_v2_envelopes_with_their_disclosures_over_mqtt(file_world, start_ingest, publisher, worker):
    world = file_world
    service = start_ingest(world, worker=worker)
    publisher.listen_for_rejects()
    seq = world.ledger.next_seq(world.did("farm"))
    good = private_ship(world, seq)
    bare = private_ship(world, seq + 1).envelope.to_json()
    forged = {
        "envelope": private_ship(world, seq + 2).envelope.to_json(),
        "disclosures": [disclosure.encode(disclosure.new_salt(), "location", {"name": "X"})],
    }
    reading = world.reading(1, 4.0).to_json()
    publisher.publish(FARM_TOPIC, json.dumps(good.to_json()).encode())
    publisher.publish(GATEWAY_TOPIC, json.dumps([reading, bare, forged]).encode())
    notices = publisher.wait_notices(2)
    assert service.wait_for(lambda s: s.accepted == 2 and s.rejected_total == 2, SETTLE)
    refused = notices_of(notices, GATEWAY_TOPIC)
    assert [n["reason"] for n in refused] == ["disclosure", "disclosure"]
    assert "send it with every disclosure" in refused[0]["message"]
    assert "not among the envelope's signed digests" in refused[1]["message"]
    stored = world.store.find_event(bytes.fromhex(good.event_id))
    assert stored is not None and "Dock 3" not in stored.envelope.data_json
    assert disclosures_of(world.store, stored.index) == list(good.disclosures)
    assert world.store.stats()["rejects"] == {"disclosure": 2}
