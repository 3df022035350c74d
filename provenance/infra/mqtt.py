"""The one MQTT client: how every part of Provenance that talks to a broker
(the device uplink, the ingest service, the recall and rules notifiers) makes
its paho client, reconnects, and keeps its callbacks from dying.

- `Login`: the broker (`BrokerURL`, the only URL parser), client id, user name,
  password and CA file, checked once with reasons.
- `new_client`: a paho client for one connection attempt: credentials, TLS
  with certificate checks, TCP_NODELAY, and paho's own reconnecting switched
  off (``reconnect_on_failure=False``), because `Reconnector` is the only
  thing that reconnects (as in Home Assistant's MQTT client).
- `Reconnector`: the one reconnect loop. It runs a caller's *session* (one
  connection, from CONNECT until it ends) again and again with capped,
  jittered exponential `Backoff`; a connection that lasted resets the backoff;
  MQTT 5 is tried first and 3.1.1 right after when the broker does not speak
  5; a fatal outcome (refused credentials) stops it.
- `connack_verdict`: what a CONNACK reason code means for retrying.
- `guarded`: wraps a paho callback so that an exception is logged, never
  raised into (and fatal for) paho's network loop.
- `pump`: one round of paho's external loop around our own ``select``, for a
  client that runs paho in a thread of its own (the uplink).

The broker pass-through baseline in ``bench/`` deliberately does not use this
module: it measures a lean raw paho client.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from provenance.core.errors import ValidationError
from provenance.infra.broker_url import BrokerURL

log = logging.getLogger(__name__)

MQTT5 = mqtt.MQTTv5
MQTT311 = mqtt.MQTTv311
PROTOCOLS = {"5": MQTT5, "3.1.1": MQTT311}  # --mqtt-version / protocol= names
PROTOCOL_NAMES = {MQTT5: "5", MQTT311: "3.1.1"}
KEEPALIVE_S = 30
STABLE_S = 10.0  # a connection that lasted this long resets the backoff

# CONNACK reason codes (MQTT 5; paho maps 3.1.1 return codes onto them).
REFUSED_CREDENTIALS = frozenset({0x86, 0x87, 0x8C})  # bad user/password, not authorised, method
UNSUPPORTED_PROTOCOL = frozenset({0x01, 0x84})  # 3.1.1 return code 1 / MQTT 5 reason 0x84
REFUSED_CLIENT = frozenset({0x85, 0x8A})  # client identifier not valid, banned


class ConnackVerdict(Enum):
    """What a CONNACK means for the reconnect loop."""

    ACCEPTED = "accepted"
    RETRY = "retry"  # refused for now (server busy, unavailable…): back off and retry
    UNSUPPORTED = "unsupported"  # the broker does not speak this MQTT version
    CREDENTIALS = "credentials"  # user name, password or authorisation refused
    CLIENT = "client"  # client id refused or banned: retrying cannot help


def connack_verdict(reason: Any) -> ConnackVerdict:
    """Classify paho's CONNACK reason code (a ReasonCode)."""
    code = getattr(reason, "value", reason)
    if code == 0 and not getattr(reason, "is_failure", False):
        return ConnackVerdict.ACCEPTED
    if code in REFUSED_CREDENTIALS:
        return ConnackVerdict.CREDENTIALS
    if code in UNSUPPORTED_PROTOCOL:
        return ConnackVerdict.UNSUPPORTED
    if code in REFUSED_CLIENT:
        return ConnackVerdict.CLIENT
    return ConnackVerdict.RETRY


@dataclass(frozen=True)
class Login:
    """Where the broker is and who we are to it."""

    broker: BrokerURL
    client_id: str
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str) or not 1 <= len(self.client_id.encode()) <= 65535:
            raise ValidationError("client_id", "must be a non-empty string")
        if self.tls_ca is not None:
            if not self.broker.tls:
                raise ValidationError(
                    "tls_ca", f"given, but {self.broker} is plain MQTT: use mqtts://"
                )
            if not os.path.isfile(self.tls_ca):
                raise ValidationError("tls_ca", f"{self.tls_ca}: no such CA certificate file")

    def __repr__(self) -> str:  # never show the password
        return f"Login({self.broker}, {self.client_id!r}, username={self.username!r})"


def _no_delay(_client: Any, _userdata: Any, sock: Any) -> None:
    """paho leaves Nagle on, which holds back small packets (PUBACKs, publishes) 5–9 ms."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket: nothing to do
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def new_client(
    login: Login,
    protocol: int,
    *,
    persistent: bool = True,
    manual_ack: bool = False,
    logger: logging.Logger | None = None,
) -> mqtt.Client:
    """A paho client for one connection attempt. With *persistent*, an MQTT
    3.1.1 session is kept by the broker (clean session off); for MQTT 5 the
    caller passes ``clean_start`` and the session expiry at CONNECT."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=login.client_id,
        clean_session=None if protocol == MQTT5 else not persistent,
        protocol=protocol,
        reconnect_on_failure=False,  # the Reconnector alone reconnects
        manual_ack=manual_ack,
    )
    if logger is not None:
        client.enable_logger(logger)
    if login.username is not None or login.password is not None:
        client.username_pw_set(login.username, login.password)
    if login.broker.tls:
        client.tls_set(ca_certs=login.tls_ca, cert_reqs=ssl.CERT_REQUIRED)
    client.on_socket_open = _no_delay
    return client


def close_sockets_in(exc: BaseException) -> None:
    """Close sockets paho opened before a failed connect and then dropped: a
    failed TLS handshake leaves the wrapped socket only in the traceback's
    frames (closed later by the garbage collector with a ResourceWarning)."""
    trace = exc.__traceback__
    while trace is not None:
        for value in list(trace.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket):
                with contextlib.suppress(OSError):
                    value.close()
        trace = trace.tb_next


def guarded(
    logger: logging.Logger, what: str, name: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a paho callback (or a handler called from one) so that it logs
    instead of raising: an exception in a callback would end paho's network loop,
    and with it the connection. The log says ``WHAT: NAME failed`` (*name*
    defaults to the callback's own name) with the traceback."""

    def decorate(callback: Callable[..., Any]) -> Callable[..., Any]:
        label = name or getattr(callback, "__name__", "callback")

        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                callback(*args, **kwargs)
            except Exception:
                logger.exception("%s: %s failed", what, label)

        return wrapper

    return decorate


class ConnectionLossIsNotAnError(logging.Filter):
    """paho logs a dropped socket at ERROR; our clients report it themselves and
    recover, so paho's record is demoted to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.getMessage().startswith(
            ("failed to receive on socket", "failed to send on socket")
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


class Backoff:
    """Capped exponential backoff with jitter: the n-th wait in a row is drawn
    from [d/2, d] with d = min(high, low·2ⁿ⁻¹), so a fleet does not reconnect in step."""

    def __init__(self, low: float, high: float):
        if not 0 < low <= high:
            raise ValidationError("backoff_min", "must be positive and at most backoff_max")
        self.low = low
        self.high = high
        self.failures = 0  # waits in a row since the last reset

    def reset(self) -> None:
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        delay = min(self.high, self.low * 2 ** min(self.failures - 1, 30))
        return delay * (0.5 + random.random() / 2)


class ConnectionOutcome(Enum):
    """How one session (connection) ended; it decides when the next one starts."""

    LOST = "lost"  # was connected for STABLE_S or more: reset the backoff, reconnect
    FAILED = "failed"  # never connected, or dropped soon after: back off and retry
    SWITCH = "switch"  # no MQTT session in this version: try the other version now
    FATAL = "fatal"  # retrying cannot help (refused credentials…): stop
    STOPPED = "stopped"  # the owner asked to stop


Session = Callable[[int], ConnectionOutcome]


class Reconnector:
    """The one place that reconnects. `run(session)` calls *session(protocol)*
    (one connection from CONNECT to its end) until it is FATAL or STOPPED, or
    *stop* is set; between sessions it waits `backoff.next()` seconds.

    With *protocol* None, MQTT 5 is tried first, and when a session says SWITCH
    (the broker does not speak 5), 3.1.1 at once; the version that got a CONNACK
    is then `settled` (the session sets it with `settle`) and kept.
    *on_retry(delay, reason)* is told before each wait (for logging)."""

    def __init__(
        self,
        stop: threading.Event,
        backoff: Backoff,
        *,
        protocol: str | None = None,
        on_retry: Callable[[float], None] | None = None,
    ):
        if protocol is not None and protocol not in PROTOCOLS:
            raise ValidationError(
                "mqtt_version", "must be '5', '3.1.1' or None (try 5, then 3.1.1)"
            )
        self.stop = stop
        self.backoff = backoff
        self.fixed = protocol is not None
        self.settled: int | None = PROTOCOLS.get(protocol) if protocol else None
        self.on_retry = on_retry

    @property
    def probing(self) -> bool:
        """No version has worked yet, so a session may still answer SWITCH."""
        return self.settled is None

    @property
    def protocol_name(self) -> str | None:
        return None if self.settled is None else PROTOCOL_NAMES[self.settled]

    def settle(self, protocol: int) -> None:
        self.settled = protocol

    def run(self, session: Session) -> ConnectionOutcome:
        while not self.stop.is_set():
            protocol = self.settled or MQTT5
            outcome = session(protocol)
            if (
                outcome is ConnectionOutcome.SWITCH
                and self.settled is None
                and not self.stop.is_set()
            ):
                outcome = session(MQTT311 if protocol == MQTT5 else MQTT5)
            if outcome in (ConnectionOutcome.FATAL, ConnectionOutcome.STOPPED):
                return outcome
            if self.stop.is_set():
                break
            if outcome is ConnectionOutcome.LOST:
                self.backoff.reset()
            delay = self.backoff.next()
            if self.on_retry is not None:
                self.on_retry(delay)
            if self.stop.wait(delay):
                break
        return ConnectionOutcome.STOPPED


def pump(client: mqtt.Client, wake: socket.socket | None, timeout: float) -> MQTTErrorCode:
    """One round of paho's external loop (``loop_read``, ``loop_write``,
    ``loop_misc``) around our own ``select``, which also returns when a byte
    arrives on *wake* (the owner's way to interrupt the wait)."""
    sock = client.socket()
    if sock is None:
        return MQTTErrorCode.MQTT_ERR_NO_CONN
    pending = getattr(sock, "pending", None)
    buffered = bool(pending and pending())  # TLS may hold decrypted bytes select cannot see
    writers = [sock] if client.want_write() else []
    readers = [sock] if wake is None else [sock, wake]
    try:
        readable, writable, _ = select.select(readers, writers, [], 0.0 if buffered else timeout)
    except (OSError, ValueError):
        return MQTTErrorCode.MQTT_ERR_CONN_LOST
    if wake is not None and wake in readable:
        with contextlib.suppress(OSError):
            while wake.recv(4096):
                pass
    if sock in readable or buffered:
        rc = client.loop_read()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return rc
    if client.socket() is None:
        return MQTTErrorCode.MQTT_ERR_CONN_LOST
    if sock in writable or client.want_write():
        rc = client.loop_write()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return rc
    return client.loop_misc()
