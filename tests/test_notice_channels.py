"""Recall notices by signed webhook and by e-mail (docs/lineage.md, "Webhooks
and e-mail"): the signature a receiver checks (and a replay it refuses), the
subscriptions file (only http(s) URLs), retries with back-off, a bounded queue,
every outcome recorded — against a local webhook receiver and a local SMTP
server (aiosmtpd), both on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.broker import Collector
from support.lineage import commission, lot
from support.world import World, at

from provenance.cli.context import Context
from provenance.cli.main import main
from provenance.core.errors import VerificationError
from provenance.core.notice import verify_recall_notice
from provenance.core.webhook import make_secret, signed_headers, verify_webhook
from provenance.infra.delivery_record import notified_parties
from provenance.ledger.recall_report import recall_report
from provenance.services.notice_delivery import (
    Channels,
    Delivery,
    DeliveryQueue,
    DeliveryRecord,
    channels_for,
    send_webhook,
)
from provenance.services.notifier import Cursor, RecallNotifier
from provenance.services.subscriptions import (
    SMTP,
    Subscriber,
    SubscriptionError,
    check_webhook_url,
    parse_subscriptions,
)

RECALL = {"reason": "Listeria", "class": "I", "instructions": "Do not sell; return to the farm"}
SECRET = make_secret(bytes(range(32)))
WAIT = 30.0
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def recalled(tmp_path):
    """A shipped from the farm to the store; C at the dc; A and C recalled."""
    world = World.create(tmp_path)
    commission(world, "A")
    commission(world, "C")
    world.ship_and_receive("farm", "store", [lot("A")], 2)
    world.ship_and_receive("farm", "dc", [lot("C")], 2)
    world.recall = world.ok("regulator", "recall", [lot("A"), lot("C")], RECALL, time=at(5))
    return world


# --- the signature


def test_a_receiver_checks_the_signature_and_refuses_replays_and_changes():
    body = b'{"lot":"x"}'
    headers = signed_headers(SECRET, "msg_1", 1_800_000_000, body)
    assert verify_webhook(SECRET, headers, body, now=1_800_000_010) == "msg_1"
    with pytest.raises(VerificationError, match="replay"):
        verify_webhook(SECRET, headers, body, now=1_800_000_000 + 301)
    with pytest.raises(VerificationError, match="does not match"):
        verify_webhook(SECRET, headers, body + b" ", now=1_800_000_000)
    with pytest.raises(VerificationError, match="does not match"):
        verify_webhook(make_secret(bytes(32)), headers, body, now=1_800_000_000)
    moved = dict(headers, **{"webhook-timestamp": "1800000100"})  # a new time, old signature
    with pytest.raises(VerificationError, match="does not match"):
        verify_webhook(SECRET, moved, body, now=1_800_000_100)
    with pytest.raises(VerificationError, match="missing"):
        verify_webhook(SECRET, {}, body, now=1_800_000_000)


# --- the subscriptions


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "javascript:alert(1)",
        "gopher://127.0.0.1:25/",
        "/relative/path",
        "http://",
        "http://user:pw@127.0.0.1/",
        "http://127.0.0.1/a b",
    ],
)
def test_only_http_and_https_urls_are_accepted(url):
    with pytest.raises(SubscriptionError):
        check_webhook_url(url)
    document = {"subscribers": [{"party": "did:key:z6Mk", "webhook": url, "secret": SECRET}]}
    with pytest.raises(SubscriptionError):
        parse_subscriptions(json.dumps(document))


def test_a_webhook_is_refused_at_sending_too(recalled):
    odd = Subscriber("did:key:z6Mk", "x", "file:///etc/passwd", SECRET)
    delivery = Delivery("webhook", odd, lot("A"), (), {}, b"{}")
    with pytest.raises(SubscriptionError):
        send_webhook(delivery)


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"subscribers": [{"party": "did:key:z6Mk", "webhook": "https://x.example/"}]}, "secret"),
        ({"subscribers": [{"party": "did:key:z6Mk", "email": "a@b.example"}]}, "smtp"),
        ({"subscribers": [{"party": "Shop", "email": "a@b.example"}]}, "did"),
        ({"subscribers": [{"party": "did:key:z6Mk"}]}, "webhook, an email"),
        ({"smtp": {"host": "h", "password": "x"}}, "PROVENANCE_SMTP_PASSWORD"),
        (
            {"subscribers": [{"party": "did:key:z6Mk", "email": "nope"}], "smtp": {"host": "h"}},
            "e-mail",
        ),
    ],
)
def test_an_unusable_subscriptions_file_says_what_to_fix(document, words):
    with pytest.raises(SubscriptionError, match=words):
        parse_subscriptions(json.dumps(document))


# --- delivery


def queue_for(world, receiver, mail=None, **options):
    record = DeliveryRecord(world.store.path.parent / "deliveries.jsonl")
    subscribers = (
        Subscriber(
            world.did("store"),
            "store",
            receiver.url,
            SECRET,
            "manager@store.example" if mail else None,
            "zh",
        ),
        Subscriber(world.did("dc"), "dc", receiver.url, SECRET),
        Subscriber(world.did("clinic"), "clinic", receiver.url, SECRET),  # never held either
    )
    smtp = SMTP(mail.host, mail.port, sender="recalls@operator.example") if mail else None
    options = {"first_delay": 0.05, "max_delay": 0.2, **options}
    return channels_for(subscribers, smtp, record, **options)


def run_round(world, channels: Channels, tmp_path):
    publish = Collector()
    notifier = RecallNotifier(world.store, publish, Cursor(tmp_path / "cursor"), channels)
    channels.queue.start()
    try:
        assert notifier.poll() == 2
        assert channels.queue.drain(WAIT)
    finally:
        channels.queue.stop()
    return publish, notifier


def test_each_holder_gets_its_lots_notice_signed_and_verifiable(
    recalled, webhook_receiver, tmp_path
):
    world = recalled
    channels = queue_for(world, webhook_receiver)
    _, notifier = run_round(world, channels, tmp_path)
    assert notifier.queued == 2  # A to the store, C to the dc; the clinic held neither
    requests = webhook_receiver.wait_for(2)
    assert len(requests) == 2
    now = int(time.time())
    by_lot = {}
    for request in requests:
        assert request.path == "/recalls?token=hidden"
        verify_webhook(SECRET, request.headers, request.body, now)
        notice = json.loads(request.body)
        by_lot[notice["lot"]] = notice
        # the body is the MQTT notice, byte for byte: it carries the regulator's word
        verify_recall_notice(notice, regulators=[world.did("regulator")])
    assert set(by_lot) == {lot("A"), lot("C")}
    written = (world.store.path.parent / "deliveries.jsonl").read_text()
    record = [json.loads(line) for line in written.splitlines()]
    assert {(r["name"], r["lot"], r["outcome"]) for r in record} == {
        ("store", lot("A"), "delivered"),
        ("dc", lot("C"), "delivered"),
    }
    assert all(r["target"].endswith("/recalls") for r in record)  # the query's token not kept


def test_the_email_says_it_in_the_recipients_language_with_the_notice_attached(
    recalled, webhook_receiver, mail_receiver, tmp_path
):
    world = recalled
    channels = queue_for(world, webhook_receiver, mail_receiver)
    run_round(world, channels, tmp_path)
    (message,) = mail_receiver.wait_for(1)
    assert message["To"] == "manager@store.example"
    assert message["Subject"].startswith("召回通知")
    parts = list(message.walk())
    text = next(p for p in parts if p.get_content_type() == "text/plain").get_payload(decode=True)
    body = text.decode("utf-8")
    assert "原因：Listeria" in body and "provenance recall ack" in body
    assert world.recall.event_id in body
    attached = next(p for p in parts if p.get_filename() == "recall-notice.json")
    notice = json.loads(attached.get_payload(decode=True))
    assert notice["lot"] == lot("A") and notice["recalled"]


def test_failures_are_retried_with_backoff_and_every_outcome_recorded(
    recalled, webhook_receiver, tmp_path
):
    world = recalled
    webhook_receiver.statuses[:] = [503, 429, 200, 404]  # C's first try may come first
    channels = queue_for(world, webhook_receiver, max_attempts=3)
    run_round(world, channels, tmp_path)
    outcomes = [(line["name"], line["outcome"]) for line in channels.queue.record.recent]
    assert outcomes.count(("store", "delivered")) + outcomes.count(("dc", "delivered")) >= 1
    assert sum(1 for _, o in outcomes if o == "retrying") >= 2
    ids = {r.headers["webhook-id"] for r in webhook_receiver.requests}
    assert len(ids) == 2  # a retry is the same message: a receiver deduplicates on its id
    assert len(webhook_receiver.requests) >= 4


def test_a_redirect_is_not_followed_and_a_4xx_is_not_retried(recalled, webhook_receiver, tmp_path):
    world = recalled
    webhook_receiver.statuses[:] = [302, 302]
    channels = queue_for(world, webhook_receiver)
    run_round(world, channels, tmp_path)
    outcomes = [line["outcome"] for line in channels.queue.record.recent]
    assert outcomes == ["failed", "failed"]
    assert len(webhook_receiver.requests) == 2


def test_a_dead_address_is_retried_then_given_up(recalled, tmp_path):
    world = recalled
    with __import__("socket").socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    record = DeliveryRecord(None)
    channels = channels_for(
        (Subscriber(world.did("store"), "store", dead, SECRET),),
        None,
        record,
        first_delay=0.01,
        max_delay=0.02,
        max_attempts=3,
    )
    run_round_one = RecallNotifier(world.store, Collector(), Cursor(tmp_path / "c"), channels)
    channels.queue.start()
    try:
        run_round_one.poll()
        assert channels.queue.drain(WAIT)
    finally:
        channels.queue.stop()
    assert [line["outcome"] for line in record.recent] == ["retrying", "retrying", "failed"]
    assert [line["attempt"] for line in record.recent] == [1, 2, 3]


def test_the_queue_is_bounded_and_a_dropped_delivery_is_recorded(recalled):
    world = recalled
    record = DeliveryRecord(None)
    queue = DeliveryQueue({"webhook": lambda d: "ok"}, record, max_pending=2)  # not started
    subscriber = Subscriber(world.did("store"), "store", "http://127.0.0.1:9/", SECRET)
    made = [Delivery("webhook", subscriber, lot("A"), (), {}, b"{}") for _ in range(3)]
    assert [queue.put(d) for d in made] == [True, True, False]
    assert [line["outcome"] for line in record.recent] == ["dropped"]
    assert queue.pending() == 2


def test_backoff_doubles_and_is_capped():
    queue = DeliveryQueue({}, DeliveryRecord(None), first_delay=2, max_delay=10)
    delays = [queue.backoff(n) for n in (1, 2, 3, 4, 5)]
    for delay, full in zip(delays, (2, 4, 8, 10, 10), strict=True):
        assert 0.75 * full <= delay <= full


def test_the_report_says_who_was_notified(recalled, webhook_receiver, tmp_path):
    world = recalled
    channels = queue_for(world, webhook_receiver)
    run_round(world, channels, tmp_path)
    path = world.store.path.parent / "deliveries.jsonl"
    notified = notified_parties(path, world.recall.event_id)
    assert set(notified) == {(lot("A"), world.did("store")), (lot("C"), world.did("dc"))}
    report = recall_report(world.store, world.recall.event_id, notified=notified)
    lines = {(line.party.name, each.uri): line for each in report.lots for line in each.holders}
    assert lines[("store", lot("A"))].notified is not None
    assert lines[("farm", lot("A"))].notified is None


# --- the command line


def test_subscribe_then_notify_once_delivers_and_recall_report_shows_it(
    recalled, webhook_receiver, tmp_path, broker
):
    world = recalled
    db = str(world.store.path)
    runner = CliRunner()
    obj = Context(db, str(tmp_path / "keys"))
    out = runner.invoke(
        main,
        ["--db", db, "notify", "subscribe", "store", "--webhook", webhook_receiver.url],
        obj=obj,
    )
    assert out.exit_code == 0, out.output
    secret = out.output.split("shown once): ")[1].strip()
    bad = runner.invoke(
        main, ["--db", db, "notify", "subscribe", "store", "--webhook", "file:///etc/passwd"]
    )
    assert bad.exit_code == 1 and "only http:// and https://" in bad.output
    ran = runner.invoke(main, ["--db", db, "notify", "--broker", broker.url, "--once"])
    assert ran.exit_code == 0, ran.output
    assert "1 delivered" in ran.output
    (request,) = webhook_receiver.wait_for(1)
    verify_webhook(secret, request.headers, request.body, int(time.time()))
    shown = runner.invoke(main, ["--db", db, "recall", "report", world.recall.event_id])
    assert shown.exit_code == 0, shown.output
    assert "store (retailer, holds it) · notified" in shown.output


def test_the_signature_is_the_documented_known_answer():
    """The vector of docs/protocol.md, "Notices by webhook and e-mail", and by hand with hmac."""
    import base64
    import hashlib
    import hmac

    assert SECRET == "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    headers = signed_headers(SECRET, "msg_1", 1_800_000_000, b'{"lot":"x"}')
    by_hand = hmac.new(bytes(range(32)), b'msg_1.1800000000.{"lot":"x"}', hashlib.sha256)
    expected = "v1," + base64.b64encode(by_hand.digest()).decode()
    assert headers["webhook-signature"] == expected
    assert expected == "v1,9NQ8Wzo04yAO1gOL8YxOE5I5OG1wVw7YPCWtzUuCzNY="
    assert expected in (ROOT / "docs" / "protocol.md").read_text()


def test_a_running_notifier_reads_the_subscriptions_again_when_they_change(recalled, tmp_path):
    from provenance.cli.notify_channels import channels
    from provenance.services.subscriptions import Subscriptions, save_subscriptions, subscribe

    world = recalled
    path = tmp_path / "subscriptions.json"
    ctx = Context(str(world.store.path), str(tmp_path / "keys"))
    made = channels(ctx, str(path), str(tmp_path / "deliveries.jsonl"))
    assert made.subscribers == ()
    added, _ = subscribe(Subscriptions(), world.did("store"), "store", webhook="https://s.example/")
    save_subscriptions(path, added)
    made.refresh()
    assert [s.name for s in made.subscribers] == ["store"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds the secrets
    path.write_text("{not json")  # an edit half done
    made.refresh()
    assert [s.name for s in made.subscribers] == ["store"]  # the ones already read


def test_a_product_name_cannot_add_mail_headers():
    from provenance.services.notice_mail import mail_message

    notice = {
        "lot": lot("A"),
        "lot_code": "A",
        "product": "Kale\r\nBcc: x@evil.example",
        "recalled": False,
        "lifted": [],
    }
    message = mail_message(
        notice, b"{}", sender="r@o.example", to="m@s.example", name="s", language="en"
    )
    assert message["Bcc"] is None and "\n" not in message["Subject"]
    headers = message.as_string().split("\n\n", 1)[0]
    assert not any(line.startswith("Bcc:") for line in headers.splitlines())


def test_a_broken_sender_is_recorded_and_the_queue_goes_on(recalled):
    world = recalled
    record = DeliveryRecord(None)
    calls = []

    def sender(delivery):
        calls.append(delivery)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return "ok"

    queue = DeliveryQueue({"webhook": sender}, record).start()
    try:
        subscriber = Subscriber(world.did("store"), "store", "http://127.0.0.1:9/", SECRET)
        for _ in range(2):
            queue.put(Delivery("webhook", subscriber, lot("A"), (), {}, b"{}"))
        assert queue.drain(WAIT)
    finally:
        queue.stop()
    assert [line["outcome"] for line in record.recent] == ["failed", "delivered"]
    assert "internal error" in record.recent[0]["detail"]
