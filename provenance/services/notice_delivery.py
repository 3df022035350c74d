"""Recall notices by webhook and e-mail: each subscriber (a party,
provenance/services/subscriptions.py) gets the notice of every lot a recall
reached that it holds, held or has on its way, as a signed POST
(provenance/core/webhook.py) and as an e-mail in plain words.

Deliveries wait in a bounded queue (`MAX_PENDING`; one more is refused and
recorded `dropped`); one worker thread sends them, and a failure that may pass
(a network error, a timeout, HTTP 408, 429 or 5xx, an SMTP 4xx) is retried
with capped exponential back-off and jitter, up to `MAX_ATTEMPTS`. Redirects
are not followed. Every outcome — delivered, retrying, failed, dropped — is
one JSON line in the delivery record (default `DB.notify-deliveries.jsonl`),
which `provenance recall report` reads to say who was notified when.
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provenance.core.timefmt import format_time
from provenance.core.webhook import signed_headers
from provenance.services.notice_mail import mail_message
from provenance.services.subscriptions import SMTP, Subscriber, check_webhook_url

log = logging.getLogger(__name__)

MAX_PENDING = 1000  # deliveries waiting (first tries and retries)
MAX_ATTEMPTS = 6
BACKOFF_FIRST_S, BACKOFF_MAX_S = 2.0, 300.0  # 2, 4, 8, 16, 32 s … capped
HTTP_TIMEOUT_S = 10.0
SMTP_TIMEOUT_S = 20.0
RETRY_HTTP = frozenset({408, 425, 429})


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.retry = retry


@dataclass
class Delivery:
    """One notice to one subscriber by one channel."""

    channel: str  # "webhook" | "email"
    subscriber: Subscriber
    lot: str
    recalls: tuple[str, ...]  # event ids of the recalls in force the notice reports
    notice: dict[str, Any]
    payload: bytes  # the notice's canonical JSON, exactly as on MQTT
    message_id: str = field(default_factory=lambda: "msg_" + uuid.uuid4().hex)
    attempts: int = 0

    @property
    def target(self) -> str:
        if self.channel == "email":
            return self.subscriber.email or ""
        parts = urllib.parse.urlsplit(self.subscriber.webhook or "")
        return f"{parts.scheme}://{parts.netloc}{parts.path}"  # no query: it may hold a token


class DeliveryRecord:
    """The delivery record: one JSON line per outcome, and the last few in memory."""

    def __init__(self, path: Path | None, now: Callable[[], int] = lambda: time.time_ns() // 1000):
        self.path = path
        self.now = now
        self.recent: deque[dict[str, Any]] = deque(maxlen=1000)
        self._lock = threading.Lock()

    def write(self, delivery: Delivery, outcome: str, detail: str = "") -> None:
        line = {
            "time": format_time(self.now()),
            "outcome": outcome,
            "channel": delivery.channel,
            "party": delivery.subscriber.party,
            "name": delivery.subscriber.name,
            "target": delivery.target,
            "lot": delivery.lot,
            "recalls": list(delivery.recalls),
            "recalled": bool(delivery.notice.get("recalled")),
            "message_id": delivery.message_id,
            "attempt": delivery.attempts,
            "detail": detail[:300],
        }
        with self._lock:
            self.recent.append(line)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        level = logging.INFO if outcome == "delivered" else logging.WARNING
        log.log(
            level,
            "notify: %s %s to %s (%s) %s",
            outcome,
            delivery.channel,
            delivery.subscriber.name,
            delivery.target,
            detail[:200],
        )


# --- the channels


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer, not somewhere else to send the notice


def send_webhook(delivery: Delivery, *, timeout: float = HTTP_TIMEOUT_S) -> str:
    """POST the notice, signed for this attempt; raises DeliveryFailed."""
    subscriber = delivery.subscriber
    assert subscriber.webhook and subscriber.secret
    url = check_webhook_url(subscriber.webhook)
    headers = signed_headers(
        subscriber.secret, delivery.message_id, int(time.time()), delivery.payload
    )
    headers |= {"Content-Type": "application/json", "User-Agent": "provenance-notify"}
    request = urllib.request.Request(url, data=delivery.payload, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(65536)
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
        retry = code >= 500 or code in RETRY_HTTP
        raise DeliveryFailed(f"HTTP {code}", retry=retry) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"cannot reach {delivery.target}: {reason}", retry=True) from None


def send_mail(delivery: Delivery, smtp: SMTP, *, timeout: float = SMTP_TIMEOUT_S) -> str:
    """Send the e-mail through the configured SMTP host; raises DeliveryFailed."""
    subscriber = delivery.subscriber
    assert subscriber.email
    try:
        message = mail_message(
            delivery.notice,
            delivery.payload,
            sender=smtp.sender,
            to=subscriber.email,
            name=subscriber.name,
            language=subscriber.language,
        )
    except (ValueError, KeyError, TypeError) as exc:  # a notice the e-mail cannot say
        raise DeliveryFailed(f"cannot write the e-mail: {exc}", retry=False) from None
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            refused = client.send_message(message)
    except smtplib.SMTPResponseException as exc:
        retry = 400 <= exc.smtp_code < 500
        raise DeliveryFailed(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", retry=retry) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryFailed(f"recipient refused: {exc.recipients}", retry=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"SMTP {smtp.host}:{smtp.port}: {exc}", retry=True) from None
    if refused:
        raise DeliveryFailed(f"recipient refused: {refused}", retry=False)
    return "accepted by SMTP"


# --- the queue


class DeliveryQueue:
    """A bounded queue of deliveries with one sending thread, retries with
    capped exponential back-off, and an outcome recorded for each try."""

    def __init__(
        self,
        senders: Mapping[str, Callable[[Delivery], str]],
        record: DeliveryRecord,
        *,
        max_pending: int = MAX_PENDING,
        max_attempts: int = MAX_ATTEMPTS,
        first_delay: float = BACKOFF_FIRST_S,
        max_delay: float = BACKOFF_MAX_S,
    ):
        self.senders = dict(senders)
        self.record = record
        self.max_pending, self.max_attempts = max_pending, max_attempts
        self.first_delay, self.max_delay = first_delay, max_delay
        self._due: list[tuple[float, int, Delivery]] = []  # (when, order, delivery)
        self._order = 0
        self._busy = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-deliver", daemon=True)

    def start(self) -> DeliveryQueue:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)

    def put(self, delivery: Delivery) -> bool:
        """Queue a first try; False (and recorded `dropped`) when the queue is full."""
        with self._cond:
            if len(self._due) + self._busy >= self.max_pending:
                full = True
            else:
                full = False
                self._push(delivery, time.monotonic())
        if full:
            self.record.write(delivery, "dropped", f"queue full ({self.max_pending} waiting)")
        return not full

    def pending(self) -> int:
        with self._cond:
            return len(self._due) + self._busy

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is waiting or being sent (True), or *timeout* passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._due or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _push(self, delivery: Delivery, when: float) -> None:
        self._order += 1
        heapq.heappush(self._due, (when, self._order, delivery))
        self._cond.notify_all()

    def backoff(self, attempts: int) -> float:
        """Seconds before retry number *attempts* (1, 2, …): doubling from the
        first delay, capped, with up to 25 % jitter so retries do not bunch."""
        delay = min(self.max_delay, self.first_delay * 2 ** (attempts - 1))
        return delay * (0.75 + random.random() / 4)

    def _next(self) -> Delivery | None:
        with self._cond:
            while not self._stop.is_set():
                if self._due:
                    when = self._due[0][0]
                    wait = when - time.monotonic()
                    if wait <= 0:
                        delivery = heapq.heappop(self._due)[2]
                        self._busy += 1
                        return delivery
                    self._cond.wait(min(wait, 1.0))
                else:
                    self._cond.wait(1.0)
        return None

    def _run(self) -> None:
        while True:
            delivery = self._next()
            if delivery is None:
                return
            try:
                self._send(delivery)
            except Exception as exc:  # a bug in a sender: say so, keep the queue running
                log.exception("notify: delivery to %s failed", delivery.subscriber.name)
                self.record.write(delivery, "failed", f"internal error: {exc!r}")
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _send(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        try:
            detail = self.senders[delivery.channel](delivery)
        except DeliveryFailed as exc:
            if exc.retry and delivery.attempts < self.max_attempts:
                delay = self.backoff(delivery.attempts)
                self.record.write(delivery, "retrying", f"{exc}; again in {delay:.1f} s")
                with self._cond:
                    self._push(delivery, time.monotonic() + delay)
            else:
                self.record.write(delivery, "failed", str(exc))
            return
        self.record.write(delivery, "delivered", detail)


@dataclass
class Channels:
    """What the notifier hands its notices to: the subscriptions and the queue."""

    subscribers: tuple[Subscriber, ...]
    queue: DeliveryQueue
    # Reads the subscribers again (the operator may subscribe a party while the
    # notifier runs); None: they are fixed.
    reload: Callable[[], tuple[Subscriber, ...]] | None = None

    def refresh(self) -> None:
        """The subscribers as the file says now; on trouble, the ones held."""
        if self.reload is None:
            return
        try:
            self.subscribers = self.reload()
        except (OSError, ValueError) as exc:  # a file being edited, a bad edit
            log.warning("notify: keeping the subscribers already read: %s", exc)

    def deliver(self, notice: dict[str, Any], payload: bytes, holders: set[str]) -> int:
        """Queue *notice* (of one lot) to every subscriber among *holders* (dids),
        by each channel it has; returns how many were queued."""
        recalls = tuple(record["event_id"] for record in notice.get("recalls", []))
        queued = 0
        for subscriber in self.subscribers:
            if subscriber.party not in holders:
                continue
            for channel, wanted in (("webhook", subscriber.webhook), ("email", subscriber.email)):
                if wanted:
                    delivery = Delivery(
                        channel, subscriber, notice["lot"], recalls, notice, payload
                    )
                    queued += self.queue.put(delivery)
        return queued


def channels_for(
    subscribers: tuple[Subscriber, ...], smtp: SMTP | None, record: DeliveryRecord, **queue: Any
) -> Channels:
    """The channels of a notifier: webhooks, and e-mail through *smtp* when set."""
    senders: dict[str, Callable[[Delivery], str]] = {"webhook": send_webhook}
    if smtp is not None:
        senders["email"] = lambda delivery: send_mail(delivery, smtp)
    return Channels(subscribers, DeliveryQueue(senders, record, **queue))


__all__ = [
    "Channels",
    "Delivery",
    "DeliveryFailed",
    "DeliveryQueue",
    "DeliveryRecord",
    "channels_for",
    "send_mail",
    "send_webhook",
]
