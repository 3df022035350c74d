"""Signed notices (docs/protocol.md §11): a recall notice carries the
regulators' own envelopes and is checked offline; an alert notice is signed by
the rules key. Each forgery (unsigned, signed by a non-regulator, altered, a
recall dropped, a proof swapped) is refused — the attacks also over a real
Mosquitto, against what the real notifier published."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.broker import Collector, Retained
from support.lineage import commission, lot, ok_transform
from support.rules import service, vaccine_world
from support.world import GTIN, World, at

from provenance.cli.main import main
from provenance.core.envelope import Envelope
from provenance.core.errors import VerificationError
from provenance.core.notice import verify_alert_notice, verify_recall_notice
from provenance.core.signing import did_of, sign, sign_alert_notice
from provenance.infra.broker_url import BrokerURL
from provenance.services.notifier import Cursor, RecallNotifier, RetainedPublisher

RECALL = {"reason": "Listeria", "class": "I", "instructions": "Do not eat"}
RECALLS = "provenance/v1/recalls/#"


def topic(code: str) -> str:
    return f"provenance/v1/recalls/{GTIN}/{code}"


@pytest.fixture
def family(tmp_path):
    """A -> B, a ledger file; A recalled, B reached through A."""
    world = World.create(tmp_path)
    commission(world, "A")
    ok_transform(world, "farm", {"A": 10}, {"B": 10}, unit_out="KGM")
    return world


def published(world: World, tmp_path) -> dict[str, dict]:
    collector = Collector()
    RecallNotifier(world.store, collector, Cursor(tmp_path / "cursor")).poll()
    return collector.rounds[-1]


def trust(world: World, **extra):
    return {"registrar": world.did("registrar"), "log_key": world.log_public_key, **extra}


def forged_recall(world: World, who: str, code: str, data=None) -> dict:
    """A recall of *code* signed by *who*, never logged."""
    return sign(
        world.keys[who], kind="recall", seq=999, time=at(5), data=data or RECALL,
        lots=[lot(code)],
    ).to_json()  # fmt: skip


def forgeries(world: World, genuine: dict, lifted: dict) -> dict[str, dict]:
    """Named forgeries of the genuine notice of lot A (recalled) and of its
    lifted successor."""
    out = {}
    unsigned = copy.deepcopy(genuine)
    del unsigned["recalls"][0]["envelope"]
    out["unsigned recall"] = unsigned
    old = copy.deepcopy(genuine)
    old["format"] = "provenance-recall-notice/v1"
    out["old unsigned format"] = old
    by_producer = copy.deepcopy(genuine)
    envelope = forged_recall(world, "farm", "A")
    record = by_producer["recalls"][0]
    event_id = Envelope.from_json(envelope).event_id
    record.update(envelope=envelope, event_id=event_id, time=envelope["time"])
    record["regulator"]["did"] = world.did("farm")
    out["recall signed by a producer"] = by_producer
    altered = copy.deepcopy(genuine)
    altered["recalls"][0]["reason"] = "Routine check, nothing to worry about"
    out["altered reason"] = altered
    flipped = copy.deepcopy(genuine)
    flipped["recalled"] = False
    out["recalled flipped"] = flipped
    dropped = copy.deepcopy(genuine)
    dropped.update(recalled=False, recalls=[])
    out["recall dropped"] = dropped
    wrong_proof = copy.deepcopy(genuine)
    index = str(wrong_proof["recalls"][0]["log_index"])
    wrong_proof["proofs"][index] = list(reversed(wrong_proof["proofs"][index]))
    out["proof swapped"] = wrong_proof
    if not lifted["lifted"]:
        return out
    fake_lift = copy.deepcopy(lifted)
    lift = fake_lift["lifted"][0]["lifted"]
    forged = sign(
        world.keys["farm"], kind="recall-lift", seq=998, time=at(6),
        data={"reason": lift["reason"]}, lots=[lot("A")],
    ).to_json()  # fmt: skip
    lift.update(envelope=forged, event_id=Envelope.from_json(forged).event_id, time=at(6))
    lift["regulator"]["did"] = world.did("farm")
    out["lift signed by a producer"] = fake_lift
    lift_text = copy.deepcopy(lifted)
    lift_text["lifted"][0]["lifted"]["reason"] = "Cleared by the lab"
    out["altered lift"] = lift_text
    return out


def test_the_notifiers_notice_verifies_offline(family, tmp_path):
    world = family
    recall = world.ok("regulator", "recall", [lot("A")], RECALL)
    sent = published(world, tmp_path)
    for code in "AB":
        report = verify_recall_notice(sent[topic(code)], **trust(world))
        assert report.recalled and report.recalls == [recall.event_id] and report.included
    assert verify_recall_notice(sent[topic("B")], **trust(world)).indirect == [recall.event_id]
    pinned = verify_recall_notice(sent[topic("A")], regulators=[world.did("regulator")])
    assert pinned.recalled and not pinned.included
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Clean"})
    after = published(world, tmp_path)[topic("A")]
    report = verify_recall_notice(after, **trust(world), previous=sent[topic("A")])
    assert not report.recalled and report.lifted == [recall.event_id]


def test_every_forged_recall_or_lift_notice_is_refused(family, tmp_path):
    world = family
    world.ok("regulator", "recall", [lot("A")], RECALL)
    genuine = published(world, tmp_path)[topic("A")]
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Clean"})
    lifted = published(world, tmp_path)[topic("A")]
    for name, forged in forgeries(world, genuine, lifted).items():
        with pytest.raises(VerificationError):
            verify_recall_notice(forged, **trust(world), previous=genuine)
            pytest.fail(f"accepted: {name}")
    # the recall dropped is refused even without the previous notice: it says nothing
    with pytest.raises(VerificationError, match="no recall and no lift"):
        verify_recall_notice(forgeries(world, genuine, lifted)["recall dropped"], **trust(world))


def test_a_regulator_the_trusted_registrar_did_not_enrol_is_refused(family, tmp_path):
    """The operator enrols a sham 'regulator' under another registrar key (or a
    producer in the registrar's own ledger): neither counts."""
    world = family
    world.ok("regulator", "recall", [lot("A")], RECALL)
    genuine = published(world, tmp_path)[topic("A")]
    other = Ed25519PrivateKey.generate()
    with pytest.raises(VerificationError, match="not the trusted registrar"):
        verify_recall_notice(genuine, registrar=did_of(other))
    with pytest.raises(VerificationError, match="not a trusted regulator"):
        verify_recall_notice(genuine, regulators=[world.did("farm")])
    producer = copy.deepcopy(genuine)
    envelope = forged_recall(world, "farm", "A")
    record = producer["recalls"][0]
    record.update(envelope=envelope, event_id=None, time=envelope["time"])
    record["event_id"] = Envelope.from_json(envelope).event_id
    record["regulator"]["did"] = world.did("farm")
    farm_enrolment = next(
        stored for stored in world.store.chain_events(world.store.chain_by_subject(
            world.did("farm"))[0]) if stored.envelope.kind == "enrol"
    )  # fmt: skip
    producer["enrolments"] = {
        world.did("farm"): {
            "log_index": farm_enrolment.index,
            "envelope": farm_enrolment.envelope.to_json(),
        }
    }
    with pytest.raises(VerificationError, match="enrolled as a producer, not a regulator"):
        verify_recall_notice(producer, registrar=world.did("registrar"))


def test_the_cli_verifies_a_notice_file(family, tmp_path):
    world = family
    world.ok("regulator", "recall", [lot("A")], RECALL)
    genuine = published(world, tmp_path)[topic("A")]
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(genuine))
    bad.write_text(json.dumps(forgeries(world, genuine, genuine)["altered reason"]))
    runner = CliRunner()
    args = ["--db", str(tmp_path / "none.db"), "verify", "--registrar", world.did("registrar")]
    ok = runner.invoke(main, [*args, "--notice", str(good)])
    assert ok.exit_code == 0 and ok.output.startswith("OK "), ok.output
    refused = runner.invoke(main, [*args, "--notice", str(bad)])
    assert refused.exit_code == 1 and "FAILED:" in refused.output and "Listeria" in refused.output
    untrusting = runner.invoke(main, ["verify", "--notice", str(good)])
    assert untrusting.exit_code == 2 and "--registrar" in untrusting.output


def test_alert_notices_are_signed_by_the_rules_key(tmp_path):
    world = vaccine_world(tmp_path / "ledger")
    publish = Collector()
    service(world, tmp_path, publish=publish).run_once()
    (notices,) = publish.rounds
    (notice,) = notices.values()
    rules = world.did("rules")
    assert verify_alert_notice(notice, rules=[rules])["held"] is True
    unsigned = {k: v for k, v in notice.items() if k != "signature"}
    altered = {**notice, "held": False, "holds": []}
    by_other = sign_alert_notice(world.keys["farm"], unsigned)
    for forged in (unsigned, altered, by_other):
        with pytest.raises(VerificationError):
            verify_alert_notice(forged, rules=[rules])
    for path in list(_paths(notice))[1:]:  # every member, of every JSON type
        for new in (None, True, -1, "x", [], {}):
            forged = _replaced(notice, path, new)
            if json.dumps(forged, sort_keys=True) != json.dumps(notice, sort_keys=True):
                with pytest.raises(VerificationError):
                    verify_alert_notice(forged, rules={rules})
    good = tmp_path / "alert.json"
    good.write_text(json.dumps(notice))
    result = CliRunner().invoke(main, ["verify", "--notice", str(good), "--rules", rules])
    assert result.exit_code == 0 and "signed by the rules key" in result.output


# --- over a real broker


def test_forged_notices_on_the_broker_are_refused_by_a_subscriber(family, broker, tmp_path):
    """The real notifier publishes retained notices; an attacker with publish
    rights then replaces the retained notice with each forgery in turn; the
    subscriber, checking each payload as it arrives, refuses every one."""
    world = family
    world.ok("regulator", "recall", [lot("A")], RECALL)
    publisher = RetainedPublisher(BrokerURL.parse(broker.url), "test-notifier").start()
    subscriber = Retained(broker, "shop", RECALLS)
    attacker = RetainedPublisher(BrokerURL.parse(broker.url), "test-attacker").start()
    try:
        notifier = RecallNotifier(world.store, publisher, Cursor(tmp_path / "cursor"))
        assert notifier.poll() == 2
        assert subscriber.wait_for(lambda got: topic("A") in got and topic("B") in got)
        genuine = subscriber.latest[topic("A")]
        assert verify_recall_notice(genuine, **trust(world)).recalled
        for name, forged in forgeries(world, genuine, genuine).items():  # no lift yet
            payload = json.dumps(forged).encode()
            assert attacker([(topic("A"), payload)])
            assert subscriber.wait_for(lambda got, f=forged: got.get(topic("A")) == f)
            with pytest.raises(VerificationError):
                verify_recall_notice(
                    subscriber.latest[topic("A")], **trust(world), previous=genuine
                )
                pytest.fail(f"accepted over MQTT: {name}")
        world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Clean"})
        assert notifier.poll() == 2
        assert subscriber.wait_for(lambda got: got[topic("A")]["recalled"] is False)
        lifted = subscriber.latest[topic("A")]
        assert not verify_recall_notice(lifted, **trust(world), previous=genuine).recalled
        for name in ("lift signed by a producer", "altered lift"):
            forged = forgeries(world, genuine, lifted)[name]
            assert attacker([(topic("A"), json.dumps(forged).encode())])
            assert subscriber.wait_for(lambda got, f=forged: got.get(topic("A")) == f)
            with pytest.raises(VerificationError):
                verify_recall_notice(
                    subscriber.latest[topic("A")], **trust(world), previous=genuine
                )
                pytest.fail(f"accepted over MQTT: {name}")
    finally:
        attacker.stop()
        subscriber.close()
        publisher.stop()


def test_a_forged_alert_on_the_broker_is_refused(tmp_path, broker):
    world = vaccine_world(tmp_path / "ledger")
    publisher = RetainedPublisher(BrokerURL.parse(broker.url), "test-rules").start()
    alerts = Retained(broker, "clinic", "provenance/v1/alerts/#")
    try:
        service(world, tmp_path, publish=publisher).run_once()
        assert alerts.wait_for(lambda got: len(got) == 1)
        ((where, notice),) = alerts.latest.items()
        rules = world.did("rules")
        assert verify_alert_notice(notice, rules=[rules])
        cleared = sign_alert_notice(
            world.keys["farm"],
            {k: v for k, v in notice.items() if k != "signature"} | {"held": False, "holds": []},
        )
        assert publisher([(where, json.dumps(cleared).encode())])
        assert alerts.wait_for(lambda got: got[where]["held"] is False)
        with pytest.raises(VerificationError, match="not a trusted rules key"):
            verify_alert_notice(alerts.latest[where], rules=[rules])
    finally:
        alerts.close()
        publisher.stop()


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _paths(item, (*path, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _replaced(value, path, new):
    copied = copy.deepcopy(value)
    target = copied
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return copied


def test_a_malformed_notice_is_refused_never_a_crash(family, tmp_path):
    """Every member of a genuine recall notice and of a lifted one, replaced by
    a value of each JSON type: the verifier either accepts (a member that is
    description, not evidence) or raises VerificationError — never another
    exception."""
    world = family
    world.ok("regulator", "recall", [lot("A")], RECALL)
    genuine = published(world, tmp_path)[topic("A")]
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Clean"})
    lifted = published(world, tmp_path)[topic("A")]
    accepted = set()
    for notice in (genuine, lifted):
        for path in list(_paths(notice))[1:]:
            for new in (None, True, -1, "x", [], {}):
                forged = _replaced(notice, path, new)
                if json.dumps(forged, sort_keys=True) == json.dumps(notice, sort_keys=True):
                    continue  # the same value: not a change
                try:
                    verify_recall_notice(forged, **trust(world), previous=genuine)
                except VerificationError:
                    continue
                accepted.add(path[0])
    # what the verifier may ignore: the operator's description of the lot
    assert accepted <= {"custodian", "location", "held", "product"}
    for payload in (b"", b"[]", b"null", b"{", "é".encode("latin-1"), b"{}" * 3_000_000):
        with pytest.raises(VerificationError):
            verify_recall_notice(payload, **trust(world))
