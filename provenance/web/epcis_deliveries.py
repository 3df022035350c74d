"""Deliveries of EPCIS query subscriptions (docs/epcis.md, "Named queries and
subscriptions"): a webhook ``dest`` gets each answer as an EPCISQueryDocument,
POSTed with ``GS1-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with
the subscription's signatureToken>``.

- **Which destinations**: http or https only, no user name or password in the
  URL; a host that resolves to a private, loopback, link-local, multicast or
  reserved address is refused (at subscription time and again before each
  delivery) unless the operator allows private destinations
  (``PROVENANCE_EPCIS_PRIVATE_DESTINATIONS=1``, or the app setting
  ``EPCIS_PRIVATE_DESTINATIONS``: for tests and closed networks). Redirects
  are not followed. A plain-http delivery connects to the address that was
  checked; https connects by name and the certificate pins it.
- **When**: a ``stream`` subscription gets the events appended since its last
  delivery (polled every `POLL_SECONDS`, or at once when a capture wakes the
  worker); a ``schedule`` one, its query's events appended since the last
  delivery, at the times the schedule names (minute resolution, UTC).
- **Bounded**: one worker thread per app, at most `MAX_EVENTS_PER_DELIVERY`
  events per POST (more go in further POSTs), `TIMEOUT_SECONDS` per POST; a
  failed delivery is retried after `RETRY_BASE_SECONDS` × 2^failures (at most
  an hour) and the subscription stops after `MAX_FAILURES` in a row (its
  ``lastError`` says why). A revoked token's subscriptions stop delivering.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from provenance.core.timefmt import format_time, now_micros

from .params import parse_int

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
TIMEOUT_SECONDS = 5.0
MAX_EVENTS_PER_DELIVERY = 500
MAX_FAILURES = 10
RETRY_BASE_SECONDS = 10
MAX_RETRY_SECONDS = 3600
MAX_DEST_LENGTH = 2000
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256
SCHEDULE_FIELDS = {  # name -> (lowest, highest)
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "dayOfMonth": (1, 31),
    "month": (1, 12),
    "dayOfWeek": (1, 7),  # 1 = Monday … 7 = Sunday (ISO 8601, as EPCIS 1.2 §8.2.5.3)
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ELEMENT = re.compile(r"([0-9]{1,2})|\[([0-9]{1,2})-([0-9]{1,2})\]")


class DestinationRefused(ValueError):
    """A webhook destination this server will not call, with why."""


def check_destination(dest: Any, *, allow_private: bool) -> str:
    """*dest* if this server may POST to it, else `DestinationRefused`."""
    if not isinstance(dest, str) or not dest or len(dest) > MAX_DEST_LENGTH:
        raise DestinationRefused(
            f"dest must be an http(s) URL of at most {MAX_DEST_LENGTH} characters"
        )
    parts = urlsplit(dest)
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused(
            f"dest must be an http or https URL, not {parts.scheme or 'none'}:"
        )
    if not parts.hostname:
        raise DestinationRefused("dest names no host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("dest must not carry a user name or password")
    try:
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        raise DestinationRefused("dest has a bad port") from None
    resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), allow_private)
    return dest


def resolve(host: str, port: int, allow_private: bool) -> str:
    """An address of *host* to connect to, every address it has checked."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise DestinationRefused(f"dest host {host[:80]} does not resolve: {exc}") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise DestinationRefused(f"dest host {host[:80]} has no address")
    if not allow_private:
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if not address.is_global or address.is_multicast:
                raise DestinationRefused(
                    f"dest host {host[:80]} is at {text}, a private, loopback or reserved "
                    "address: this server calls only public destinations (the operator may "
                    "allow private ones: PROVENANCE_EPCIS_PRIVATE_DESTINATIONS=1)"
                )
    return addresses[0]


# --- schedules


def parse_schedule(schedule: Any) -> dict[str, str]:
    """The binding's query schedule (query-schedule.json): each field a number,
    a range ``[a-b]`` or a comma list of them; `ValueError` saying what is wrong."""
    if not isinstance(schedule, dict) or not schedule:
        raise ValueError('schedule must be an object such as {"hour": "1", "minute": "5"}')
    for name, value in schedule.items():
        if name not in SCHEDULE_FIELDS:
            raise ValueError(
                f"schedule.{str(name)[:40]} is not one of {', '.join(SCHEDULE_FIELDS)}"
            )
        _values(name, value)
    if schedule.get("second", "0") != "0":
        raise ValueError(
            "schedule.second: deliveries run at whole minutes here; give 0 or leave it out"
        )
    return {name: str(value) for name, value in schedule.items()}


def _values(name: str, text: Any) -> set[int]:
    low, high = SCHEDULE_FIELDS[name]
    if not isinstance(text, str) or not text or len(text) > 200:
        raise ValueError(f'schedule.{name} must be a string such as "5", "[1-5]" or "0,30"')
    found: set[int] = set()
    for part in text.split(","):
        match = _ELEMENT.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"schedule.{name}: {part[:20]!r} is not a number or a range [a-b]")
        first = parse_int(match[1] or match[2], f"schedule.{name}", high=99)
        last = parse_int(match[1] or match[3], f"schedule.{name}", high=99)
        if not low <= first <= last <= high:
            raise ValueError(f"schedule.{name}: {part[:20]!r} is outside {low}-{high}")
        found.update(range(first, last + 1))
    return found


def next_due(schedule: dict[str, str], after_us: int) -> int | None:
    """The first whole minute after *after_us* (UTC) the schedule names, within
    about a year; None if it names none (e.g. 31 February)."""
    every = {name: set(range(low, high + 1)) for name, (low, high) in SCHEDULE_FIELDS.items()}
    wanted = {
        name: _values(name, schedule[name]) if name in schedule else every[name] for name in every
    }
    start = datetime.fromtimestamp(after_us / 1e6, UTC).replace(second=0, microsecond=0)
    start += timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for _ in range(400):
        if (
            day.month in wanted["month"]
            and day.day in wanted["dayOfMonth"]
            and day.isoweekday() in wanted["dayOfWeek"]
        ):
            for hour in sorted(wanted["hour"]):
                for minute in sorted(wanted["minute"]):
                    moment = day.replace(hour=hour, minute=minute)
                    if moment >= start:
                        return (moment - EPOCH) // timedelta(microseconds=1)
        day += timedelta(days=1)
    return None


def retry_delay_us(failures: int) -> int:
    return min(RETRY_BASE_SECONDS * 2 ** min(failures, 20), MAX_RETRY_SECONDS) * 1_000_000


# --- one delivery


def signature(secret: str, body: bytes) -> str:
    """The ``GS1-Signature`` header of *body*: ``sha256=`` and the hex HMAC-SHA256
    keyed with the subscription's signatureToken (UTF-8)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post(dest: str, body: bytes, headers: dict[str, str], *, allow_private: bool) -> None:
    """POST *body* to *dest*, checked again first; `OSError` or `SubscriptionDeliveryFailed`
    when it did not get a 2xx."""
    parts = urlsplit(dest)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname or ""
    address = resolve(host, port, allow_private)
    connection: http.client.HTTPConnection
    if https:
        connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT_SECONDS)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=TIMEOUT_SECONDS)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": parts.netloc.rpartition("@")[2]},
        )
        response = connection.getresponse()
        response.read(64 * 1024)
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise SubscriptionDeliveryFailed(f"{dest[:200]} answered {response.status}")


class SubscriptionDeliveryFailed(Exception):
    pass


# --- the worker


class Deliveries:
    """One background thread per app that delivers due subscriptions. `wake()`
    after an append makes stream subscriptions go at once; `run_once()` is one
    pass (the thread's body, and what tests call)."""

    def __init__(self, deliver_pass: Callable[[], None], poll_seconds: float = POLL_SECONDS):
        self._pass = deliver_pass
        self._poll = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.passes = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="epcis-deliveries", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> None:
        try:
            self._pass()
        except Exception:  # one bad pass must not end the worker
            log.exception("EPCIS subscription deliveries: the pass failed")
        self.passes += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self._poll)
            self._wake.clear()


def query_document(
    events: list[dict[str, Any]], query_name: str, sub_id: str, context: Any
) -> bytes:
    from provenance.exchange.epcis_vocabulary import SCHEMA_VERSION

    document = {
        "@context": context,
        "type": "EPCISQueryDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": format_time(now_micros()),
        "epcisBody": {
            "queryResults": {
                "queryName": "SimpleEventQuery",
                "subscriptionID": sub_id,
                "resultsBody": {"eventList": events},
            }
        },
    }
    del query_name  # the binding's queryName is the query language's, not ours
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
