"""Reject notices for a publisher: the ingest service tells a device or gateway,
on the ``…/rejects`` topic beside its events topic, why the ledger refused one
of its events (docs/protocol.md). A notice is read defensively (size cap, a
JSON object) and handed to the owner's handler, or logged when there is none."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from provenance.core.errors import ValidationError
from provenance.core.jcs import parse_json

log = logging.getLogger(__name__)

MAX_REJECT_BYTES = 64 * 1024

Reject = Callable[[str, dict[str, Any]], None]


def read_reject(who: str, topic: str, payload: bytes) -> dict[str, Any] | None:
    """The notice in *payload*, or None (logged with the reason) when it is
    oversized, not JSON or not an object."""
    shown = payload[:200]
    if len(payload) > MAX_REJECT_BYTES:
        log.warning("%s: oversized reject notice on %s ignored", who, topic)
        return None
    try:
        notice = parse_json(payload)
    except ValidationError as exc:
        log.warning("%s: unreadable reject on %s (%s): %r", who, topic, exc, shown)
        return None
    if not isinstance(notice, dict):
        log.warning("%s: reject on %s is not an object: %r", who, topic, shown)
        return None
    return notice


def log_reject(who: str, topic: str, notice: dict[str, Any]) -> None:
    """What a publisher without a reject handler does with a notice."""
    log.warning(
        "%s: the ledger rejected an event (%s): reason %s, event %s: %s",
        who,
        topic,
        notice.get("reason"),
        notice.get("event_id"),
        notice.get("message", ""),
    )
