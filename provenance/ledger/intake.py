"""What arrives, made ready for the ledger's rules: parsed into an envelope
(or the reason it is not one), its signature checked in chunks on a thread
pool or inline, and the raw bytes kept with a refusal (at most MAX_REJECT_RAW).
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from provenance.core.disclosure import (
    Disclosed,
    Disclosure,
    DisclosureError,
    is_wrapped,
    open_disclosures,
    unwrap,
)
from provenance.core.envelope import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    NotAnEnvelope,
    plain,
    too_large,
    verify_signatures,
)
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.jcs import parse_json
from provenance.ledger.reasons import DISCLOSURE, MALFORMED, SCHEMA
from provenance.store.state import MAX_REJECT_RAW


class Verification:
    """Signature checks of a chunk of envelopes, on a thread pool or inline.
    `verify_signatures` skips only envelopes the verifier itself marked
    checked (`envelope.signature_checked`) and checks every other one with
    `Envelope.verify_signature`, whatever its class says."""

    def __init__(self, items: list[tuple[int, Envelope]], pool: ThreadPoolExecutor | None):
        self.items = items
        envelopes = [envelope for _, envelope in items]
        self._future: Future[list[str | None]] | None = None
        self._failures: list[str | None] | None = None
        if pool is None:
            self._failures = verify_signatures(envelopes)
        else:
            self._future = pool.submit(verify_signatures, envelopes)

    def failures(self) -> list[str | None]:
        """None for each valid signature, else why not."""
        if self._failures is None:
            assert self._future is not None
            self._failures = self._future.result()
        return self._failures


def parse(item: Any) -> tuple[Envelope | None, tuple[str, str] | None]:
    """The envelope in *item*, or why there is none: (reason, message)."""
    envelope, _opened, failure = parse_disclosed(item)
    return envelope, failure


def parse_disclosed(
    item: Any,
) -> tuple[Envelope | None, list[Disclosure] | None, tuple[str, str] | None]:
    """The envelope in *item* with its checked disclosures (None for a v1
    envelope), or why there is none: (reason, message). A v2 envelope must
    come with every disclosure (`{"envelope": …, "disclosures": […]}`), each
    matching a signed digest, naming a field the kind may keep private and
    passing its schema (docs/protocol.md §14); else it is refused as
    `disclosure`."""
    if isinstance(item, (bytes, bytearray, str)):
        try:
            size = len(item) if not isinstance(item, str) else _utf8_size(item)
            if size > MAX_ENVELOPE_BYTES:
                raise ValidationError("", too_large(size))
            item = parse_json(bytes(item) if isinstance(item, bytearray) else item)
        except ValidationError as exc:
            return None, None, (MALFORMED, str(exc))
    disclosures: list[Any] | None = None
    if isinstance(item, Disclosed):
        item, disclosures = item.envelope, list(item.disclosures)
    elif is_wrapped(item):
        try:
            item, disclosures = unwrap(item)
        except ValidationError as exc:
            return None, None, (SCHEMA, str(exc))
    envelope, failure = _parse(item)
    if envelope is None:
        return None, None, failure
    if envelope.version == 1:
        if disclosures:
            return None, None, (DISCLOSURE, "a v1 envelope keeps nothing private: no disclosures")
        return envelope, None, None
    if disclosures is None:
        return (
            None,
            None,
            (
                DISCLOSURE,
                "a v2 envelope keeps fields private: send it with every disclosure, as "
                '{"envelope": …, "disclosures": […]} (docs/protocol.md §14)',
            ),
        )
    try:
        opened = open_disclosures(
            envelope.kind, envelope.data, envelope.lots, disclosures, complete=True
        )
    except DisclosureError as exc:
        return None, None, (DISCLOSURE, str(exc))
    return envelope, opened, None


def _parse(item: Any) -> tuple[Envelope | None, tuple[str, str] | None]:
    if isinstance(item, Envelope):
        return plain(item), None  # a subclass's overrides decide nothing
    if isinstance(item, NotAnEnvelope):
        return None, (item.reason, item.message)
    try:  # parsed JSON (parse_disclosed parsed the bytes)
        return Envelope.from_json(item), None
    except ValidationError as exc:
        return None, (SCHEMA, str(exc))
    except ProvenanceError as exc:  # pragma: no cover - defensive: never crash on input
        return None, (SCHEMA, str(exc))


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _text_bytes(text: str) -> bytes:
    """Text as the bytes it was (surrogateescape), or with unencodable characters escaped."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def raw_bytes(raw: Any) -> bytes | None:
    """The input as stored with its reject: at most MAX_REJECT_RAW bytes (the
    store cuts them), never more work than that for a big one."""
    if isinstance(raw, NotAnEnvelope):
        raw = raw.raw
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw[:MAX_REJECT_RAW])
    if isinstance(raw, str):
        return _text_bytes(raw[:MAX_REJECT_RAW])[:MAX_REJECT_RAW]
    if isinstance(raw, Envelope):
        return plain(raw).canonical_bytes()[:MAX_REJECT_RAW]
    try:
        return json.dumps(raw, default=str).encode("utf-8", "backslashreplace")[:MAX_REJECT_RAW]
    except (TypeError, ValueError, RecursionError):
        return repr(raw).encode("utf-8", "backslashreplace")[:MAX_REJECT_RAW]
