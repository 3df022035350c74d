"""What one MQTT message holds, pure: bytes in, items for `Ledger.append` out.

A message is one envelope, or a JSON array of 1 to MAX_ENVELOPES_PER_MESSAGE
envelopes (a gateway batch); an envelope that keeps fields private travels as
``{"envelope": …, "disclosures": […]}`` in either place (docs/protocol.md §14).
Nothing here raises on input: whatever is no envelope goes to the ledger as
it came (or, when the message or array is over its limit, as a
`NotAnEnvelope` that says so), and the ledger refuses it with its reason and
records it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from provenance.core.envelope import MAX_ENVELOPE_BYTES, NotAnEnvelope, too_large
from provenance.core.errors import ValidationError
from provenance.core.jcs import MAX_DEPTH, parse_json
from provenance.core.timefmt import parse_time

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20  # one MQTT message: an envelope or an array of them
MAX_ENVELOPES_PER_MESSAGE = 4096  # bounds the reject records one message can cause
INTERNAL_ERROR = "internal-error"  # reject reason when handling a message raised unexpectedly
SENT_AT = "sent_at"  # MQTT 5 user property: when the publisher sent it (RFC 3339 UTC)
MALFORMED, SCHEMA = "malformed", "schema"  # the ledger's reasons (docs/protocol.md §4)


def decode_message(payload: bytes) -> list[Any]:
    """What to hand `Ledger.append` for one MQTT message; never raises.

    A single envelope goes to the ledger as the bytes it arrived as, and the
    elements of an array as parsed JSON values; the ledger refuses whatever is
    no envelope with its reason (`malformed` for bytes that are too large, not
    UTF-8, not JSON or too deep; `schema` for JSON that is no envelope),
    recording it with its raw bytes. A message over the size limit, and an
    array that is empty or too long, go as a `NotAnEnvelope` saying so; a
    message that is not a usable array goes to the ledger whole, as bytes.
    """
    try:
        return _decode(payload)
    except Exception:  # never crash on input: the ledger refuses the raw bytes
        log.exception("unexpected error decoding a message of %d bytes", len(payload))
        return [bytes(payload)]


def _decode(payload: bytes) -> list[Any]:
    if len(payload) > MAX_MESSAGE_BYTES:
        return [
            NotAnEnvelope(
                MALFORMED,
                f"message of {len(payload)} bytes is larger than the limit of "
                f"{MAX_MESSAGE_BYTES} bytes per message",
                payload,
            )
        ]
    if not is_array(payload):
        return [payload]
    try:
        value = parse_json(payload, max_depth=MAX_DEPTH + 1)  # + the array around envelopes
    except ValidationError:
        return [payload]  # the ledger says what is wrong with it, as for one envelope
    if not isinstance(value, list):
        return [payload]
    if not value:
        return [NotAnEnvelope(SCHEMA, "an empty array holds no envelope", payload)]
    if len(value) > MAX_ENVELOPES_PER_MESSAGE:
        return [
            NotAnEnvelope(
                SCHEMA,
                f"the array is too long: {len(value):,} items, limit "
                f"{MAX_ENVELOPES_PER_MESSAGE:,} envelopes per message",
                payload,
            )
        ]
    if len(payload) <= MAX_ENVELOPE_BYTES:
        return value
    items: list[Any] = []
    for index, element in enumerate(value):  # only a big message holds an envelope too big
        encoded = json.dumps(element, ensure_ascii=False).encode("utf-8")
        if len(encoded) > MAX_ENVELOPE_BYTES:
            what = f"array element {index} (an envelope)"
            items.append(NotAnEnvelope(MALFORMED, too_large(len(encoded), what), encoded))
        else:
            items.append(element)
    return items


def is_array(payload: bytes) -> bool:
    """Does the message look like a JSON array (a gateway batch)?"""
    head = payload[:1]
    if head and head in b" \t\r\n":
        head = payload.lstrip(b" \t\r\n")[:1]
    return head == b"["


def estimate_envelopes(payload: bytes) -> int:
    """Envelopes in a message, cheaply, for batching only (the worker decodes)."""
    return max(1, payload.count(b'"sig"')) if is_array(payload) else 1


def event_time(item: Any) -> int | None:
    """The `time` of an accepted item (bytes or parsed JSON), in microseconds."""
    try:
        value = json.loads(item) if isinstance(item, (bytes, str)) else item
        if isinstance(value, dict) and "envelope" in value:  # with its disclosures (§14)
            value = value["envelope"]
        return parse_time(value["time"]) if isinstance(value, dict) else None
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def sent_at_micros(text: str | None) -> int | None:
    """The publisher's send time (MQTT 5 user property), if it gave a valid one."""
    if text is None:
        return None
    try:
        return parse_time(text, SENT_AT)
    except ValidationError:
        return None


class _Refusal(Protocol):
    @property
    def event_id(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...


def reject_notice(result: _Refusal) -> dict[str, Any]:
    """The payload published on a rejects topic for one refused envelope."""
    notice: dict[str, Any] = {}
    if result.event_id:
        notice["event_id"] = result.event_id
    notice["reason"] = result.reason or INTERNAL_ERROR
    notice["message"] = result.message or ""
    return notice
