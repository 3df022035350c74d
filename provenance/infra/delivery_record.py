"""The notifier's delivery record, read back: one JSON line per outcome of a
webhook or e-mail of a recall notice (provenance/services/notice_delivery.py
writes it), here turned into who was notified when, for the recall report
(the CLI's and the portal's). A torn or foreign line is skipped; only the
last `MAX_RECORD_READ` bytes are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_RECORD_READ = 8_000_000  # bytes of the delivery record read for a report


def notified_parties(path: Path, recall_event_id: str | None = None) -> dict[tuple[str, str], str]:
    """(lot URI, party did) -> when a notice of a recall in force first reached
    the party, by any channel, from the delivery record at *path* (the last
    `MAX_RECORD_READ` bytes); only notices reporting *recall_event_id* if given.
    Empty when there is no record."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - MAX_RECORD_READ))
            raw = handle.read(MAX_RECORD_READ)
    except FileNotFoundError:
        return {}
    out: dict[tuple[str, str], str] = {}
    for text in raw.decode("utf-8", "replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue  # a partial first line, or a torn write
        if not isinstance(line, dict) or line.get("outcome") != "delivered":
            continue
        if not line.get("recalled"):
            continue
        if recall_event_id is not None and recall_event_id not in (line.get("recalls") or ()):
            continue
        key = (str(line.get("lot")), str(line.get("party")))
        when = str(line.get("time"))
        if key not in out or when < out[key]:
            out[key] = when
    return out


def default_delivery_log(db_path: Any) -> Path:
    """`DB.notify-deliveries.jsonl`, beside the ledger database."""
    return Path(str(db_path) + ".notify-deliveries.jsonl")
