"""The gateway signs dock events keeping the site's location private when its
configuration says so (`site.location_private`, docs/gateway.md,
docs/protocol.md §14): the outbox holds the envelope with its disclosures,
which the ledger accepts and keeps beside the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.world import LOT

from devices.outbox import Outbox
from devices.sdk import SeqCounter
from gateway.config import ConfigError, parse_config
from gateway.intake import GatewaySigner, Intake
from provenance.store.disclosures import disclosures_of

PLACE = {"name": "Green Valley packhouse", "lat": -0.61, "lon": 36.52}
SITE = {"party": "farm", "key_file": "site.pem", "location": PLACE}
DOCUMENT = {
    "gateway": {"id": "gw1", "key_file": "gw.pem"},
    "broker": {"url": "mqtt://127.0.0.1:1883"},
}


def test_location_private_needs_a_location_and_is_read(tmp_path: Path):
    config = parse_config({**DOCUMENT, "site": {**SITE, "location_private": True}}, base=tmp_path)
    assert config.site_location_private is True
    assert parse_config({**DOCUMENT, "site": SITE}, base=tmp_path).site_location_private is False
    without = {"party": "farm", "key_file": "site.pem", "location_private": True}
    with pytest.raises(ConfigError, match=r"give a site\.location"):
        parse_config({**DOCUMENT, "site": without}, base=tmp_path)
    with pytest.raises(ConfigError):
        parse_config({**DOCUMENT, "site": {**SITE, "location_private": "yes"}}, base=tmp_path)


def test_a_dock_ship_with_its_location_kept_private_reaches_the_ledger(world, tmp_path):
    outbox = Outbox(None)
    gateway = GatewaySigner(Ed25519PrivateKey.generate(), SeqCounter(tmp_path / "seq-gw"))
    site = GatewaySigner(world.keys["farm"], SeqCounter(tmp_path / "seq-site"))
    site.counter.take(1_000)  # the farm signed seqs 0… before (World did)
    intake = Intake(outbox, "provenance/v1/gateways/gw1/events", gateway, clock=lambda: world.now)
    data = {"to": world.did("dc"), "location": PLACE}
    signed = intake.signed(site, "ship", [LOT], data, ("location",))
    (entry,) = outbox.peek(10)
    payload = json.loads(entry.payload)
    assert set(payload) == {"envelope", "disclosures"}
    assert "location" not in payload["envelope"]["data"] and payload["envelope"]["v"] == 2
    (result,) = world.ledger.append([entry.payload])
    assert result.status == "accepted", result
    assert result.event_id == signed.event_id
    assert disclosures_of(world.store, result.index) == payload["disclosures"]
    plain = intake.signed(site, "attach", [LOT], {"device": world.did("probe")})
    assert json.loads(outbox.peek(10)[1].payload)["sig"] == plain.sig  # v1 as before
    gateway.counter.close()
    site.counter.close()
    outbox.close()
