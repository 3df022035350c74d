"""The parallel half of the ingest: decode, schema and signature checks of
whole messages, run on a pool of processes (each with a GIL of its own) by
the commit worker, while the worker's own thread appends earlier groups.

`prepare(payloads)` turns each message into records, one per item: a
verified envelope's fields, or the item itself when it is no envelope or its
signature does not verify — the ledger then refuses it with its own reason
and message, exactly as if it had come without preparation. The writer turns
records back into `Ledger.append` items with `items_of`.

Why a subclass of `Envelope`: `Ledger.append` checks the signature of every
`Envelope` it is given, and has no way to be told that this was done. A
`VerifiedEnvelope` is made only by `items_of`, from fields that a prep
process built with `Envelope.from_json` and checked with
`Envelope.verify_signature` (the ledger's own code); its `verify_signature`
is then a no-op. Everything that decides the signing bytes (kind, signer,
seq, time, batches, canonical data, sig) is carried over unchanged, and the
event id is recomputed here from them.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from . import lifeline
from .envelope import MAX_ENVELOPE_BYTES, Envelope
from .errors import ProvenanceError
from .ingest_decode import decode_message

log = logging.getLogger(__name__)

# A record: (True, fields of a verified envelope) or (False, the item as decoded).
Fields = tuple[str, str, int, str, int, tuple[str, ...] | None, str, str]
Record = tuple[bool, Any]


def prepare(payloads: Sequence[bytes]) -> list[list[Record]]:
    """Records for each message (one per item of `decode_message`); never raises."""
    return [[_prepare(item) for item in decode_message(payload)] for payload in payloads]


def _prepare(item: Any) -> Record:
    if isinstance(item, (bytes, bytearray)) and len(item) > MAX_ENVELOPE_BYTES:
        return False, item  # the ledger: `malformed`, too large
    try:
        envelope = Envelope.from_json(item)
        envelope.verify_signature()
    except ProvenanceError:
        return False, item  # no envelope, or a bad signature: the ledger says which and why
    except Exception:  # never crash on input: the ledger refuses it with its own reason
        log.exception("ingest: unexpected error preparing an item; the ledger will judge it")
        return False, item
    fields: Fields = (
        envelope.kind,
        envelope.signer,
        envelope.seq,
        envelope.time,
        envelope.time_us,
        envelope.batches,
        envelope.data_json,
        envelope.sig,
    )
    return True, fields


class VerifiedEnvelope(Envelope):
    """An envelope whose signature a prep process checked (see the module doc)."""

    __slots__ = ()

    def verify_signature(self) -> None:
        """Checked already, in the prep process, by `Envelope.verify_signature`."""


def items_of(records: Sequence[Record]) -> list[Any]:
    """`Ledger.append` items for one message's records."""
    items: list[Any] = []
    for verified, value in records:
        if verified:
            kind, signer, seq, time, time_us, batches, data_json, sig = value
            # `data` is parsed from its canonical text only if a rule reads it
            # (readings never do), as for stored events (Envelope.from_stored).
            items.append(
                VerifiedEnvelope(
                    kind,
                    signer,
                    seq,
                    time,
                    batches,
                    None,  # type: ignore[arg-type]
                    sig,
                    data_json=data_json,
                    time_us=time_us,
                )
            )
        else:
            items.append(value)
    return items


def serve(requests: Connection, results: Connection, parent: int) -> None:
    """A prep process (started by the commit worker, pid *parent*): `prepare`
    each chunk of payloads it is sent and send back the records, in order,
    until its requests pipe closes. The ingest service decides when
    everything stops, so SIGINT/SIGTERM are ignored; if the worker dies,
    whatever kills it, so does this process (provenance.lifeline)."""
    lifeline.hold(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            payloads = requests.recv()
        except (EOFError, OSError):
            return  # the worker is gone or done
        try:
            results.send(prepare(payloads))
        except OSError:
            return
