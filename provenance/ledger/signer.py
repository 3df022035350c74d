"""Signing with a held key and appending: the one way a caller that holds a
party's (or the registrar's, the rules service's, a device's) private key writes
its own events. The CLI, the rules service, the EPCIS import and the portal all
come in here; envelopes signed elsewhere (gateways, devices) go straight to
`Ledger.append`.

A `Signer` picks seqs: the first event it signs gets the signer's next seq from
the ledger (its highest stored seq plus one), every further one the seq after,
so the events of one batch never share a seq. Between that read and the append,
another writer with the same key (a gateway, another process) may store an event
with one of those seqs; the ledger then refuses ours as `replay`, and the signer
signs it again with a fresh next seq and appends it again, up to `MAX_ATTEMPTS`
times in all. It retries only when the ledger's next seq has moved past the
refused one, that is when a stored event now holds it; a clash inside the batch
(an envelope signed elsewhere with the same seq) is refused as before. The first
refusal stays in the reject log like any other. A seq that a gateway has handed
out but not yet delivered cannot be seen here: docs/gateway.md, "Seq numbers".

Signing uses `provenance.core.signing.sign`; the verifier (`core.envelope`) never
imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.disclosure import Disclosed
from provenance.core.envelope import Envelope
from provenance.core.signing import did_of, sign, sign_private
from provenance.core.timefmt import format_time
from provenance.ledger.append import Appended, Ledger
from provenance.ledger.reasons import REPLAY

MAX_ATTEMPTS = 3  # appends of one batch: the first, and re-signed ones after a seq was taken


@dataclass(frozen=True)
class Unsigned:
    """An event to sign: the signer adds its did, a seq, the time (when None) and
    the signature."""

    kind: str
    data: dict[str, Any]
    lots: list[str] | tuple[str, ...] | None = None
    time: str | None = None
    private: tuple[str, ...] = ()  # data fields kept private (docs/protocol.md §14)


class Signer:
    """Signs as the holder of *key* with its next seqs and appends through
    *ledger*. Dated by *clock* (µs; default the ledger's) unless told a time.
    Not thread-safe, like the `Ledger` it writes through."""

    def __init__(
        self,
        ledger: Ledger,
        key: Ed25519PrivateKey,
        *,
        clock: Callable[[], int] | None = None,
    ):
        self.ledger = ledger
        self.key = key
        self.did = did_of(key)
        self.clock = clock or ledger.clock
        self._next: int | None = None  # the seq the next `sign` uses; None: ask the ledger
        self._signed: dict[str, tuple[Unsigned, int]] = {}  # event id -> (event, seq)

    def now(self) -> str:
        return format_time(self.clock())

    def sign(
        self,
        kind: str,
        data: dict[str, Any],
        *,
        lots: list[str] | tuple[str, ...] | None = None,
        time: str | None = None,
    ) -> Envelope:
        """Sign one event with the next seq, dated *time* (RFC 3339 UTC) or now.
        Raises ValidationError (naming the field) and then uses no seq."""
        signed = self._sign(Unsigned(kind, data, lots, time or self.now()))
        assert isinstance(signed, Envelope)
        return signed

    def sign_private(
        self,
        kind: str,
        data: dict[str, Any],
        private: Iterable[str],
        *,
        lots: list[str] | tuple[str, ...] | None = None,
        time: str | None = None,
    ) -> Envelope | Disclosed:
        """`sign`, keeping the fields *private* of *data* private: a v2
        envelope with its disclosures (docs/protocol.md §14); `append` takes it."""
        return self._sign(Unsigned(kind, data, lots, time or self.now(), tuple(private)))

    def append(
        self, items: Iterable[Any], *, atomic: bool = False, source: str | None = None
    ) -> list[Appended]:
        """`Ledger.append` of *items* (envelopes this signer signed, and anything
        else as it is); one result per item, in order. An envelope signed here
        whose seq another writer took meanwhile is signed again with a fresh seq
        and appended again (with ``atomic=True``: all of this signer's envelopes
        of the batch, since nothing was stored). The results are the last try's."""
        batch = list(items)
        try:
            results = self.ledger.append(batch, atomic=atomic, source=source)
            for _ in range(MAX_ATTEMPTS - 1):
                taken = self._taken(batch, results)
                if not taken:
                    break
                self._next = None
                if atomic:
                    if len(taken) < sum(r.status == "rejected" for r in results):
                        break  # refused for another reason too: a new seq would not help
                    for position, item in enumerate(batch):
                        if self._mine(item):
                            batch[position] = self._sign_again(item)
                    results = self.ledger.append(batch, atomic=True, source=source)
                else:
                    again = [self._sign_again(batch[position]) for position in taken]
                    for position, envelope in zip(taken, again, strict=True):
                        batch[position] = envelope
                    for position, result in zip(
                        taken, self.ledger.append(again, source=source), strict=True
                    ):
                        results[position] = result
            return results
        finally:
            self._forget()

    def sign_and_append(
        self,
        events: Iterable[Unsigned],
        *,
        atomic: bool = False,
        source: str | None = None,
        time: str | None = None,
    ) -> list[Appended]:
        """Sign *events* with consecutive next seqs (those without a time dated
        *time*, else now: one reading of the clock for the batch) and append them."""
        events = list(events)
        when = time or (self.now() if any(event.time is None for event in events) else None)
        try:
            envelopes = [self._sign(replace(event, time=event.time or when)) for event in events]
        except BaseException:
            self._forget()
            raise
        return self.append(envelopes, atomic=atomic, source=source)

    # --- seqs

    def _sign(self, event: Unsigned) -> Envelope | Disclosed:
        if self._next is None:
            self._next = self.ledger.next_seq(self.did)
        seq = self._next
        assert event.time is not None
        envelope: Envelope | Disclosed = (
            sign(
                self.key,
                kind=event.kind,
                seq=seq,
                time=event.time,
                data=event.data,
                lots=event.lots,
            )
            if not event.private
            else sign_private(
                self.key,
                kind=event.kind,
                seq=seq,
                time=event.time,
                data=event.data,
                lots=event.lots,
                private=event.private,
            )
        )
        self._next = seq + 1
        self._signed[envelope.event_id] = (event, seq)
        return envelope

    def _mine(self, item: Any) -> bool:
        return isinstance(item, (Envelope, Disclosed)) and item.event_id in self._signed

    def _sign_again(self, envelope: Envelope | Disclosed) -> Envelope | Disclosed:
        event, _ = self._signed.pop(envelope.event_id)
        return self._sign(event)

    def _taken(self, batch: Sequence[Any], results: Sequence[Appended]) -> list[int]:
        """Positions of envelopes signed here that were refused as `replay`
        because a stored event (another writer's) now holds their seq."""
        refused = [
            position
            for position, (item, result) in enumerate(zip(batch, results, strict=True))
            if result.status == "rejected" and result.reason == REPLAY and self._mine(item)
        ]
        if not refused:
            return []
        stored_up_to = self.ledger.next_seq(self.did)
        return [position for position in refused if batch[position].seq < stored_up_to]

    def _forget(self) -> None:
        """After an append (or a failed signing) the next seq is the ledger's again."""
        self._next = None
        self._signed.clear()


__all__ = ["MAX_ATTEMPTS", "Signer", "Unsigned"]
