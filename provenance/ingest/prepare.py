"""The parallel half of the ingest: decode, schema and signature checks of
whole messages, run on a pool of processes (each with a GIL of its own) by
the commit worker, while the worker's own thread appends earlier groups.

`prepare(payloads)` turns each message into records, one per item: a
verified envelope's fields, or the item itself when it is no envelope or its
signature does not verify — the ledger then refuses it with its own reason
and message, exactly as if it had come without preparation. The writer turns
records back into `Ledger.append` items with `items_of`.

Why the ledger believes a prep process: `Ledger.append` checks the signature
of every envelope that this process's verifier has not marked checked
(`envelope.signature_checked`), and a mark cannot cross a pipe. So the
worker makes one `SignatureVouchers` (a random key) and hands it to its prep
processes when it starts them; a prep process verifies each envelope with
`SignatureVouchers.check` (`Envelope.verify_signature`, then an HMAC of the
canonical bytes), and `items_of`, in the worker, rebuilds the envelope from
its fields and marks it with `SignatureVouchers.redeem` only if the voucher
is that key's for exactly those bytes. An envelope without a valid voucher
(made by other code, a record altered on the way, another worker's key) is
checked by the ledger as usual: a bad signature is refused as `bad-signature`.
The event id is recomputed here from the fields.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from provenance.core.envelope import MAX_ENVELOPE_BYTES, Envelope, NotAnEnvelope, SignatureVouchers
from provenance.core.errors import ProvenanceError
from provenance.infra import lifeline
from provenance.ingest.decode import decode_message

log = logging.getLogger(__name__)

# A record: (True, (fields of a verified envelope, voucher)) or (False, the item as decoded).
Fields = tuple[str, str, int, str, int, tuple[str, ...] | None, str, str]
Record = tuple[bool, Any]

IN_PROCESS = SignatureVouchers()  # for preparing and appending in one process


def prepare(
    payloads: Sequence[bytes], vouchers: SignatureVouchers = IN_PROCESS
) -> list[list[Record]]:
    """Records for each message (one per item of `decode_message`); never raises."""
    return [[_prepare(item, vouchers) for item in decode_message(payload)] for payload in payloads]


def _prepare(item: Any, vouchers: SignatureVouchers) -> Record:
    if isinstance(item, NotAnEnvelope):
        return False, item  # the ledger refuses it with its reason
    if isinstance(item, (bytes, bytearray)) and len(item) > MAX_ENVELOPE_BYTES:
        return False, item  # the ledger: `malformed`, too large
    try:
        envelope = Envelope.from_json(item)
        voucher = vouchers.check(envelope)
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
        envelope.lots,
        envelope.data_json,
        envelope.sig,
    )
    return True, (fields, voucher)


def items_of(records: Sequence[Record], vouchers: SignatureVouchers = IN_PROCESS) -> list[Any]:
    """`Ledger.append` items for one message's records: envelopes marked
    checked where *vouchers* vouch for them (the key the prep process used)."""
    items: list[Any] = []
    for verified, value in records:
        if verified:
            fields, voucher = value
            kind, signer, seq, time, time_us, lots, data_json, sig = fields
            # `data` is parsed from its canonical text only if a rule reads it
            # (readings never do), as for stored events (Envelope.from_stored).
            envelope = Envelope(
                kind,
                signer,
                seq,
                time,
                lots,
                None,  # type: ignore[arg-type]
                sig,
                data_json=data_json,
                time_us=time_us,
            )
            vouchers.redeem(envelope, voucher)  # if not, the ledger checks it itself
            items.append(envelope)
        else:
            items.append(value)
    return items


def serve(
    requests: Connection,
    results: Connection,
    parent: int,
    vouchers: SignatureVouchers = IN_PROCESS,
) -> None:
    """A prep process (started by the commit worker, pid *parent*, which gives
    it its *vouchers*): `prepare` each chunk of payloads it is sent and send
    back the records, in order, until its requests pipe closes. The ingest
    service decides when everything stops, so SIGINT/SIGTERM are ignored; if
    the worker dies, whatever kills it, so does this process
    (provenance.infra.lifeline)."""
    lifeline.hold(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            payloads = requests.recv()
        except (EOFError, OSError):
            return  # the worker is gone or done
        try:
            results.send(prepare(payloads, vouchers))
        except OSError:
            return
