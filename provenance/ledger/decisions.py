"""What the rules key (and regulators) decided about lots, as records for the
scan page, the regulator's pages and the notices: holds with their releases,
and flags (docs/rules.md). Reads only, inside the caller's snapshot where one
is named."""

from __future__ import annotations

from dataclasses import dataclass

from provenance.core.errors import NotFound
from provenance.domain.custody import Party, unknown_party
from provenance.domain.rule_decisions import Flag, Hold, Release
from provenance.store import queries as ask
from provenance.store.db import Store
from provenance.store.rows import Lot, StoredEvent


def lot_holds(store: Store, lot_uri: str, *, include_released: bool = False) -> list[Hold]:
    """The holds in force on a lot, oldest first (with *include_released*, every hold,
    each with its release). Raises NotFound for an unknown lot."""
    with store.snapshot():
        return hold_records(store, _lot(store, lot_uri).id, lot_uri, include_released)


def hold_records(
    store: Store, lot_id: int, lot_uri: str, include_released: bool = False
) -> list[Hold]:
    """`lot_holds` inside the caller's snapshot (the scan page reads it with the
    rest of the lot)."""
    cache = _Cache(store)
    return [
        cache.hold(lot_uri, event, release)
        for event, _rule, release in store.hold_rows(lot_id)
        if include_released or release is None
    ]


def lot_flags(store: Store, lot_uri: str) -> list[Flag]:
    """Every flag raised about a lot, oldest first. Raises NotFound for an unknown lot."""
    with store.snapshot():
        return flag_records(store, _lot(store, lot_uri).id, lot_uri)


def flag_records(store: Store, lot_id: int, lot_uri: str) -> list[Flag]:
    """`lot_flags` inside the caller's snapshot."""
    cache = _Cache(store)
    return [cache.flag(lot_uri, event) for event, *_ in store.flag_rows(lot_id)]


def active_holds(store: Store) -> list[Hold]:
    """Every hold in force, on every lot, oldest first (the regulator's list)."""
    with store.snapshot():
        cache = _Cache(store)
        return [cache.hold(store.subject(lot), event, None) for lot, event in store.held_lots()]


def recent_flags(store: Store, limit: int = 100) -> list[Flag]:
    """The newest flags on any lot, newest first."""
    with store.snapshot():
        cache = _Cache(store)
        return [cache.flag(store.subject(lot), event) for lot, event in store.recent_flags(limit)]


@dataclass(frozen=True)
class OpenDecision:
    """A hold in force or a flag, on the lot with store id *lot_id*."""

    lot_id: int
    decision: Hold | Flag

    @property
    def kind(self) -> str:
        return "hold" if isinstance(self.decision, Hold) else "flag"

    @property
    def excursion(self) -> bool:
        """A cold-chain excursion: a coldchain flag, or a hold whose evidence has excursions."""
        if isinstance(self.decision, Flag):
            return self.decision.signal == "coldchain"
        return bool(self.decision.evidence.get("excursions"))


def open_decisions(store: Store, *, limit: int, offset: int = 0) -> tuple[list[OpenDecision], int]:
    """Holds in force and flags on every lot, newest first (a page of them), and
    how many there are: the regulator's overview."""
    with store.snapshot():
        rows, total = ask.open_decisions(store, limit=limit, offset=offset)
        cache = _Cache(store)
        found = [
            OpenDecision(
                lot,
                cache.hold(store.subject(lot), event, None)
                if kind == "hold"
                else cache.flag(store.subject(lot), event),
            )
            for kind, lot, event in rows
        ]
    return found, total


def _lot(store: Store, lot_uri: str) -> Lot:
    lot = store.lot_by_uri(lot_uri)
    if lot is None:
        raise NotFound(f"no lot {lot_uri} in this ledger")
    return lot


class _Cache:
    """Events and signers read once per snapshot."""

    def __init__(self, store: Store):
        self.store = store
        self.events: dict[int, StoredEvent] = {}
        self.people: dict[str, Party] = {}

    def event(self, index: int) -> StoredEvent:
        if index not in self.events:
            stored = self.store.event_at(index)
            if stored is None:
                raise NotFound(f"event at log index {index} is missing")
            self.events[index] = stored
        return self.events[index]

    def who(self, did: str) -> Party:
        if did not in self.people:
            identity = self.store.identity_by_did(did)
            self.people[did] = (
                Party(did, identity.name, identity.role or identity.type)
                if identity
                else unknown_party(did)
            )
        return self.people[did]

    def hold(self, lot_uri: str, index: int, release_index: int | None) -> Hold:
        envelope = self.event(index).envelope
        release = None
        if release_index is not None:
            ended = self.event(release_index).envelope
            release = Release(
                release_index,
                ended.event_id,
                ended.time,
                self.who(ended.signer),
                ended.data["reason"],
            )
        data = envelope.data
        return Hold(
            lot_uri,
            data["rule"],
            data["reason"],
            data.get("evidence", {}),
            envelope.time,
            index,
            envelope.event_id,
            self.who(envelope.signer),
            release,
        )

    def flag(self, lot_uri: str, index: int) -> Flag:
        envelope = self.event(index).envelope
        data = envelope.data
        return Flag(
            lot_uri,
            data["rule"],
            data["signal"],
            data["key"],
            data["reason"],
            data.get("evidence", {}),
            envelope.time,
            index,
            envelope.event_id,
            self.who(envelope.signer),
        )
