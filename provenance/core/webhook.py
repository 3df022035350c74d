"""Signed webhook notices (pure): how the notifier signs the body of a recall
notice it POSTs to a subscriber, and how the subscriber checks it
(docs/protocol.md, "Notices by webhook and e-mail"). The scheme is Standard Webhooks
(standardwebhooks.com), so receivers can use its libraries in any language:

- headers `webhook-id` (the message id, the same on every retry: deduplicate
  on it), `webhook-timestamp` (Unix seconds of this attempt) and
  `webhook-signature` (`v1,` + base64 of HMAC-SHA256);
- the signed content is `{id}.{timestamp}.{body}`, with the secret shared with
  that one subscriber (`whsec_` + base64 of 32 random bytes);
- a receiver refuses a timestamp more than `TOLERANCE_S` from its clock (a
  replayed request) and compares signatures in constant time.

HMAC per subscriber, not a signature by one notice key: the notice itself
already carries the regulators' signed envelopes and inclusion proofs (anyone
checks what it says with `verify_recall_notice`), so the webhook signature
only has to say "this request comes from our notifier, now" — which a shared
secret does with no key distribution, and a subscriber whose secret leaks is
re-keyed alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from provenance.core.errors import VerificationError

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
TOLERANCE_S = 300  # how far a receiver accepts a timestamp from its own clock
SECRET_BYTES = 32
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)


def secret_bytes(secret: str) -> bytes:
    """The key of a `whsec_…` secret. Raises ValueError for a malformed one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a webhook secret is whsec_ and base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret holds at least 16 bytes (32 are made)")
    return key


def make_secret(random: bytes) -> str:
    """A secret from *random* bytes (give `os.urandom(SECRET_BYTES)`)."""
    return SECRET_PREFIX + base64.b64encode(random).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for *body* sent as *message_id* at *timestamp*."""
    content = f"{message_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode()}"


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, message_id, timestamp, body),
    }


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, now: int, tolerance: int = TOLERANCE_S
) -> str:
    """Check a received webhook: its signature by *secret* over the id, the
    timestamp and the exact body bytes, and a timestamp within *tolerance*
    seconds of *now*. Returns the message id; raises VerificationError."""
    lower = {name.lower(): value for name, value in headers.items()}
    message_id, stamp, signatures = (
        lower.get(ID_HEADER),
        lower.get(TIMESTAMP_HEADER),
        lower.get(SIGNATURE_HEADER),
    )
    if not message_id or not stamp or not signatures:
        raise VerificationError(f"missing {ID_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    if not stamp.isdigit():
        raise VerificationError(f"{TIMESTAMP_HEADER} is not Unix seconds: {stamp[:40]!r}")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise VerificationError(
            f"{TIMESTAMP_HEADER} {timestamp} is {abs(now - timestamp)} s from now (at most "
            f"{tolerance}): a replay, or a clock to set right"
        )
    expected = signature(secret, message_id, timestamp, body)
    for candidate in signatures.split():  # several while a secret is being rotated
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return message_id
    raise VerificationError("the webhook signature does not match (wrong secret, or body changed)")


__all__ = [
    "TOLERANCE_S",
    "make_secret",
    "secret_bytes",
    "signature",
    "signed_headers",
    "verify_webhook",
]
