"""The scan page's form of a proof bundle (docs/protocol.md §12): what a phone
can fetch and check in about a second for a lot of any size.

A `provenance-bundle/v2` (§7) carries every envelope; for a lot of 20,000
readings that is 5 MB of JSON and 20,000 Ed25519 checks, about 4 s of a
mid-range phone and more than a megabyte even compressed (each signature is 64
random bytes). `page_bundle` keeps everything of the v2 bundle but the bodies of
the lot's *readings*: the lot chain carries ``ids``, every event id of the chain
in order (32 bytes each), and in ``events`` only the events that are not
readings, each with its ``at`` (place in the chain). The phone rebuilds the
chain's head from ``ids``, so the heads-tree proof still shows the chain
complete; checks every event that is not a reading in full; and checks a sample
of readings it draws itself, after it holds the ids (`sample`: the server cannot
know in advance which it must get right). What that proves, and what it does
not, is in docs/protocol.md §12.

Pure: a bundle dict in, a dict out.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Any

from provenance.core.errors import ValidationError
from provenance.core.jcs import canonicalize

FORMAT = "provenance-page-bundle/v1"
ELIDED_KIND = "reading"
FULL_UP_TO = 500
"""A lot chain of at most this many events is sent whole (the v2 bundle as it is)."""
MAX_SAMPLE = 256


def event_id(envelope: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonicalize(envelope)).digest()


def page_bundle(bundle: dict[str, Any], *, full_up_to: int | None = None) -> dict[str, Any]:
    """The page form of a v2 bundle (its first chain is the lot's); a lot chain of
    at most ``full_up_to`` (default `FULL_UP_TO`) events gives the v2 bundle back."""
    lot, *others = bundle["chains"]
    events = lot["events"]
    if len(events) <= (FULL_UP_TO if full_up_to is None else full_up_to):
        return bundle
    ids = b"".join(event_id(item["envelope"]) for item in events)
    kept = [
        {**item, "at": at}
        for at, item in enumerate(events)
        if item["envelope"].get("kind") != ELIDED_KIND or "proof" in item
    ]
    compact = {
        "subject": lot["subject"],
        "count": len(events),
        "ids": base64.b64encode(ids).decode("ascii"),
        "events": kept,
        "heads": lot["heads"],
    }
    page = {key: value for key, value in bundle.items() if key not in ("chains", "format")}
    return {"format": FORMAT, **page, "chains": [compact, *others]}


def parse_positions(text: str, count: int) -> list[int]:
    """``at=3,17,…`` as chain positions below *count*, at most `MAX_SAMPLE`."""
    try:
        positions = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValidationError(
            "at", "must be chain positions: numbers separated by commas"
        ) from None
    if len(positions) > MAX_SAMPLE:
        raise ValidationError("at", f"at most {MAX_SAMPLE} positions")
    if any(not 0 <= p < count for p in positions):
        raise ValidationError("at", f"positions run from 0 to {count - 1}")
    return positions


def sample(events: Iterable[dict[str, Any]], positions: Iterable[int]) -> dict[str, Any]:
    """The answer to a phone's draw: the lot chain's *events* (as the v2 bundle holds
    them) at *positions*, in that order."""
    return {"events": [{"at": at, **event} for at, event in zip(positions, events, strict=True)]}
