"""How the gateway's envelopes reach the outbox: `Intake` signs what keyless
sensors measured and checks what was signed at the source.

- a signed envelope is checked (`Envelope.from_json`, then its signature) and
  queued as its canonical bytes, never re-signed or altered: the signature
  stays end to end;
- a measurement becomes a ``reading`` signed with the gateway's own device key,
  ``data.sensor`` naming the probe, ``seq`` from a persistent counter that is
  never reused across restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.outbox import Outbox
from provenance.core.disclosure import Disclosed
from provenance.core.envelope import Envelope
from provenance.core.errors import ValidationError, VerificationError
from provenance.core.jcs import canonicalize, parse_json, split_items
from provenance.core.signing import did_of, sign, sign_private
from provenance.core.timefmt import format_time, now_micros


class GatewaySigner:
    """A private key with its persistent seq counter (`devices.sdk.SeqCounter`): how the
    gateway signs, as itself and as its site, with no ledger in reach."""

    def __init__(self, key: Ed25519PrivateKey, counter: Any):
        self.key = key
        self.did = did_of(key)
        self.counter = counter

    def sign(
        self,
        kind: str,
        data: dict[str, Any],
        time_us: int,
        lots: Sequence[str] | None = None,
        private: Sequence[str] = (),
    ) -> Envelope | Disclosed:
        """Validate and sign; ValidationError (naming the field) for what the
        protocol refuses. A seq is taken only once the time is known to be good.
        With *private* (fields of *data*), a v2 envelope with its disclosures
        (docs/protocol.md §14)."""
        try:
            time = format_time(time_us)
        except (OverflowError, OSError, ValueError):
            raise ValidationError(
                "time", f"{time_us} µs is not a time the protocol can carry"
            ) from None
        if private:
            return sign_private(
                self.key,
                kind=kind,
                seq=self.counter.next(),
                time=time,
                data=data,
                lots=list(lots) if lots is not None else None,
                private=private,
            )
        return sign(
            self.key,
            kind=kind,
            seq=self.counter.next(),
            time=time,
            data=data,
            lots=list(lots) if lots is not None else None,
        )


@dataclass
class Counters:
    """What the sources did since start (for the status line and tests)."""

    signed: int = 0
    passed_through: int = 0
    refused: int = 0
    by_source: dict[str, int] = field(default_factory=dict)

    def count(self, source: str, n: int) -> None:
        self.by_source[source] = self.by_source.get(source, 0) + n


class Intake:
    """Signs or checks what the sources produce and puts it in the outbox.

    Thread-safe. One lock covers seq allocation and the outbox put, so for
    every signer the outbox order is the seq order."""

    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        gateway: GatewaySigner,
        *,
        clock: Callable[[], int] = now_micros,
    ):
        self.outbox = outbox
        self.topic = topic
        self.gateway = gateway
        self.clock = clock
        self.counters = Counters()
        self._lock = threading.Lock()

    def readings(self, measurements: Sequence[Any], source: str = "") -> list[Envelope]:
        """Sign each Measurement as a reading of the gateway's key; all or nothing.

        Raises ValidationError (naming the item) if one cannot be signed."""
        with self._lock:
            envelopes = []
            for index, measurement in enumerate(measurements):
                data = {**measurement.data, "sensor": measurement.sensor}
                when = measurement.time_us if measurement.time_us is not None else self.clock()
                try:
                    reading = self.gateway.sign("reading", data, when)
                    assert isinstance(reading, Envelope)  # nothing of a reading is private
                    envelopes.append(reading)
                except ValidationError as exc:
                    self.counters.refused += 1
                    many = len(measurements) > 1
                    raise ValidationError(
                        _item_field(index if many else None, exc.field), exc.rule
                    ) from None
            self._put(envelopes)
            self.counters.signed += len(envelopes)
            self.counters.count(source, len(envelopes))
        return envelopes

    def signed(
        self,
        signer: GatewaySigner,
        kind: str,
        lots: Sequence[str],
        data: dict[str, Any],
        private: Sequence[str] = (),
    ) -> Envelope | Disclosed:
        """Sign one event now as *signer* (the site party, for dock events),
        keeping the fields *private* private, and queue it."""
        with self._lock:
            envelope = signer.sign(kind, data, self.clock(), lots, private)
            self._put([envelope])
            self.counters.signed += 1
        return envelope

    def envelopes(self, items: Sequence[Any], source: str = "") -> list[Envelope]:
        """Check envelopes signed at the source and queue them as they are; all or
        nothing. Raises ValidationError or SignatureError naming the item."""
        many = len(items) > 1
        checked = [
            check_envelope(item, index if many else None) for index, item in enumerate(items)
        ]
        return self.forward(checked, source)

    def forward(self, envelopes: Sequence[Envelope], source: str = "") -> list[Envelope]:
        """Queue envelopes that `check_envelope` already accepted, unchanged."""
        with self._lock:
            self._put(envelopes)
            self.counters.passed_through += len(envelopes)
            self.counters.count(source, len(envelopes))
        return list(envelopes)

    def _put(self, envelopes: Sequence[Envelope | Disclosed]) -> None:
        self.outbox.put_many([(self.topic, _payload(envelope)) for envelope in envelopes])


def check_envelope(item: Any, index: int | None = None) -> Envelope:
    """Parse strictly and verify the signature of an envelope signed at the source.
    With *index*, errors name the item: ``[3].data.temperature_c``."""
    try:
        envelope = Envelope.from_json(item)
    except ValidationError as exc:
        raise ValidationError(_item_field(index, exc.field), exc.rule) from None
    try:
        envelope.verify_signature()
    except VerificationError as exc:
        where = "" if index is None else f"[{index}]: "
        raise VerificationError(f"{where}{exc}") from None
    return envelope


def _item_field(index: int | None, field: str) -> str:
    if index is None:
        return field
    return f"[{index}].{field}" if field else f"[{index}]"


def split_envelopes(body: bytes) -> list[Any]:
    """A JSON envelope, a JSON array of them, or JSON lines → list of items.

    A single object comes back as its raw bytes, so `Envelope.from_json`
    applies its size limit to exactly what was sent."""
    return split_items(body)


def looks_signed(body: bytes) -> bool:
    """Whether a JSON body holds a signed envelope (or an array starting with one)."""
    try:
        value = parse_json(body)
    except ValidationError:
        return False  # the readings parser reports what is wrong with it
    if isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, dict) and "sig" in value and "signer" in value


def _payload(envelope: Envelope | Disclosed) -> bytes:
    """What the outbox sends: the envelope's canonical bytes, or for one that
    keeps fields private the envelope with its disclosures (docs/protocol.md §14)."""
    if isinstance(envelope, Disclosed):
        return canonicalize(envelope.to_json())
    return envelope.canonical_bytes()
