"""Why the ledger refuses an event: the stable reject reason codes that go out
with every refusal (on MQTT, in the reject log, from the CLI and the portal).
docs/protocol.md lists each one; tests/test_docs.py checks it does.
"""

from __future__ import annotations

MALFORMED = "malformed"
SCHEMA = "schema"
BAD_SIGNATURE = "bad-signature"
UNKNOWN_SIGNER = "unknown-signer"
REVOKED = "revoked"
FUTURE_TIME = "future-time"
REPLAY = "replay"
UNAUTHORISED = "unauthorised"
UNKNOWN_LOT = "unknown-lot"
UNKNOWN_PARTY = "unknown-party"
UNKNOWN_DEVICE = "unknown-device"
NOT_CUSTODIAN = "not-custodian"
NOT_ATTACHED = "not-attached"
LOT_EXISTS = "lot-exists"
CONFLICT = "conflict"
RECALLED = "recalled"
HELD = "held"
BEFORE_COMMISSION = "before-commission"
OUT_OF_ORDER = "out-of-order"
QUANTITY = "quantity"  # more than is free to ship/dispense/use, or a unit not the lot's
DISCLOSURE = "disclosure"  # a v2 envelope's disclosures missing or not matching (§14)


# Refusals an earlier event, not yet committed, would have prevented: its
# lot's commissioning, a shipment, a receipt, an attachment, the enrolment of
# a party or device it names. An ingest node on a shared subscription may see
# an event before the one it depends on, which another node holds; such an
# envelope from an enrolled signer may *wait* (docs/protocol.md §1, "Order").
# `unknown-signer` never waits: anyone can sign with a key nobody enrolled,
# and a flood of those must not hold back the acknowledgements of others.
WAITS_FOR_EARLIER = frozenset(
    {UNKNOWN_LOT, UNKNOWN_PARTY, UNKNOWN_DEVICE, NOT_CUSTODIAN, NOT_ATTACHED}
)
