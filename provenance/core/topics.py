"""MQTT topics of protocol v1 (docs/protocol.md §9), pure.

provenance/v1/{gateways|devices|parties}/{id}/events   publisher → ingest   QoS 1
provenance/v1/{gateways|devices|parties}/{id}/rejects  ingest → publisher   QoS 1
provenance/v1/recalls/{gtin}/{lot}                     ledger → anyone      QoS 1, retained
provenance/v1/checkpoint                               ledger → witnesses   QoS 1, retained
"""

from __future__ import annotations

import re

from provenance.core.errors import ValidationError

ROOT = "provenance/v1"
PUBLISHERS = ("gateways", "devices", "parties")
CHECKPOINT = f"{ROOT}/checkpoint"
# One filter per publisher kind, so a broker ACL can grant each its own branch.
EVENT_FILTERS = tuple(f"{ROOT}/{kind}/+/events" for kind in PUBLISHERS)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _check_id(publisher_id: str) -> str:
    if not _ID.fullmatch(publisher_id):
        raise ValidationError(
            "id", f"{publisher_id!r} cannot be a topic level: letters, digits and . _ : - only"
        )
    return publisher_id


def events_topic(kind: str, publisher_id: str) -> str:
    """Where a gateway, device or party publishes its envelopes."""
    if kind not in PUBLISHERS:
        raise ValidationError("kind", f"must be one of {', '.join(PUBLISHERS)}")
    return f"{ROOT}/{kind}/{_check_id(publisher_id)}/events"


def rejects_topic(events: str) -> str:
    """The rejects topic that answers an events topic."""
    return events.removesuffix("/events") + "/rejects"


def parse_events_topic(topic: str) -> tuple[str, str] | None:
    """(publisher kind, id) of an events topic, or None if it is not one."""
    parts = topic.split("/")
    if (
        len(parts) == 5
        and f"{parts[0]}/{parts[1]}" == ROOT
        and parts[2] in PUBLISHERS
        and parts[4] == "events"
        and _ID.fullmatch(parts[3])
    ):
        return parts[2], parts[3]
    return None


def recall_topic(gtin: str, lot: str) -> str:
    return f"{ROOT}/recalls/{gtin}/{lot}"


def shared(filter_: str, group: str | None) -> str:
    """An MQTT 5 shared subscription of *filter_* for *group* (load sharing)."""
    return filter_ if not group else f"$share/{_check_id(group)}/{filter_}"
