"""What a scan of a lot shows: its status, custody, cold chain and integrity.

`Scanner.view(store, lot_uri)` reads the lot's chain from the store and returns
a `LotView` for the consumer page and its JSON twin. Reading a lot with 20,000
readings and re-checking every signature takes seconds, so each lot's history
is kept in memory and only the events appended since the last scan are read
and checked again (`_History`). A view is rebuilt when the chain grows, the
signed checkpoint moves, or the clock crosses a minute.

Integrity is checked here, not taken from the database's word: every event's
signature, the hash chain recomputed from its genesis and compared with the
stored head, and an RFC 9162 inclusion proof of the newest event against the
latest checkpoint, whose signature is checked with the log key. The proof
bundle (`provenance.ledger.proofs.build_bundle`) lets anyone repeat the check offline.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from provenance.core import chain as chains
from provenance.core.checkpoint import open_checkpoint
from provenance.core.envelope import Envelope, verify_signatures
from provenance.core.errors import NotFound, ProvenanceError, SignatureError, ValidationError
from provenance.core.identity import public_key_from_did
from provenance.core.kinds import stability_chain
from provenance.core.merkle import inclusion_proof, verify_inclusion
from provenance.core.timefmt import now_micros, parse_date
from provenance.domain import coldchain, coldchain_downsample, coldchain_status
from provenance.domain.custody import (
    NOTE_BEFORE_ORIGIN,
    NOTE_OUT_OF_ORDER,
    Custody,
    Leg,
    Party,
    read_custody,
    unknown_party,
)
from provenance.domain.rule_decisions import Flag, Hold
from provenance.ledger.decisions import flag_records, hold_records
from provenance.ledger.lineage import RecallRecord, recall_records
from provenance.ledger.proofs import checkpoint_body
from provenance.ledger.stability import LotStability, lot_budget, profile_in_force
from provenance.store.db import Store
from provenance.store.rows import Lot

VERIFY_CHUNK = 500  # signatures per task on the verify threads
CHART_BUCKETS = 160  # chart columns per leg: ~2 px each on a phone, peaks kept (M4)
MINUTE = 60_000_000
DAY = 86_400_000_000

# Page states, most severe first: the first that applies is the headline.
RECALLED = "recalled"
HELD = "held"  # a rule stopped it (e.g. a vaccine out of its band too long) until released
UNVERIFIED = "unverified"  # the record does not check out
DISCARD = "discard"  # its stability budget is spent (docs/coldchain.md, "Stability budget")
EXCURSION = "excursion"  # the cold chain broke (within or beyond tolerance)
EXPIRED = "expired"
GAP = "gap"  # loggers fell silent: not known to be fine
OK = "ok"
STATES = (RECALLED, HELD, UNVERIFIED, DISCARD, EXCURSION, EXPIRED, GAP, OK)

# Notes on what a page could not place plainly (codes; the page words them,
# these are the words of the JSON twin).
NOTE_READINGS_BEFORE_ORIGIN = "readings-before-origin"
NOTES = {
    NOTE_BEFORE_ORIGIN: "Some events are dated before the lot was registered; they are listed "
    "by their dates.",
    NOTE_OUT_OF_ORDER: "Some handoffs are dated out of the order in which they happened, so the "
    "times of the journey are approximate.",
    NOTE_READINGS_BEFORE_ORIGIN: "Some temperature readings are dated before the lot was "
    "registered; they are shown with its first leg.",
}

# A lot's category decides its profile when the producer named none.
DEFAULT_PROFILES = {"vaccine": "vaccine"}


@dataclass(frozen=True)
class LegRecord:
    """One leg of the journey with the temperature its loggers recorded."""

    leg: Leg
    loggers: tuple[Party, ...]
    readings: int
    status: coldchain_status.ColdChainStatus | None  # None: no profile or no readings
    buckets: tuple[coldchain_downsample.Bucket, ...]


@dataclass(frozen=True)
class Integrity:
    events: int
    signatures_valid: int
    chain_intact: bool
    checkpoint_size: int | None  # size of the signed checkpoint checked against
    included: bool  # the newest event's inclusion proof matched that checkpoint
    log_origin: str
    problems: tuple[str, ...] = ()
    bad_signatures: frozenset[str] = frozenset()  # event ids whose signature failed

    @property
    def verified(self) -> bool:
        return (
            not self.problems
            and self.chain_intact
            and self.included
            and self.signatures_valid == self.events
        )


@dataclass(frozen=True)
class LotView:
    lot: Lot
    custody: Custody
    custodian: Party
    profile: coldchain.Profile | None
    legs: tuple[LegRecord, ...]
    integrity: Integrity
    state: str  # one of STATES
    reasons: tuple[str, ...]  # plain sentences behind the state and the warnings
    warnings: tuple[str, ...]  # lesser states that also apply, e.g. a gap beside an expiry
    now_us: int
    chain_length: int
    recalls: tuple[RecallRecord, ...] = ()  # every recall that reached the lot, oldest first
    holds: tuple[Hold, ...] = ()  # holds in force, oldest first
    flags: tuple[Flag, ...] = ()  # signals rules raised about it (they stop nothing)
    notes: tuple[str, ...] = ()  # keys of NOTES: what could not be placed plainly
    stability: LotStability | None = None  # None: its product states no stability profile

    @property
    def expiry(self) -> str | None:
        return self.lot.expiry or self.custody.origin.get("expiry")

    @property
    def active_recalls(self) -> tuple[RecallRecord, ...]:
        """Recalls in force, its own or cascaded from lots it was made from."""
        return tuple(record for record in self.recalls if record.active)


class _Alerts(NamedTuple):
    recalls: tuple[RecallRecord, ...]  # all, with their lifts
    holds: tuple[Hold, ...]  # in force
    flags: tuple[Flag, ...]


@dataclass
class _History:
    """What has been read and checked of one lot's chain so far."""

    chain_id: int
    length: int = 0
    link: bytes = b""
    steps: list[tuple[int, Envelope]] = field(default_factory=list)  # non-reading events
    readings: list[tuple[int, float, str]] = field(default_factory=list)  # (t, °C, signer)
    times: list[int] = field(default_factory=list)  # readings' times, sorted with them
    in_order: bool = True  # readings arrived in time order (else sort before use)
    leg_records: dict[Any, LegRecord] = field(default_factory=dict)  # by what they depend on
    bad_signatures: list[str] = field(default_factory=list)
    last_index: int = -1
    view_key: tuple[Any, ...] | None = None
    view: LotView | None = None
    stability: tuple[Any, LotStability] | None = None  # (what it depends on, the budget)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Scanner:
    """Builds `LotView`s, remembering up to *capacity* lots' histories.

    Thread-safe: a web server's threads share one Scanner; each passes its own
    Store (connections are per thread).
    """

    def __init__(
        self,
        *,
        log_public_key: bytes | None = None,
        clock: Callable[[], int] = now_micros,
        capacity: int = 256,
    ):
        self.log_public_key = log_public_key
        self.clock = clock
        self.capacity = capacity
        self._histories: OrderedDict[str, _History] = OrderedDict()
        self._lock = threading.Lock()

    def view(self, store: Store, lot_uri: str) -> LotView:
        """The lot as a scan shows it now. Raises NotFound for an unknown lot."""
        now = self.clock()
        with store.snapshot():
            lot = store.lot_by_uri(lot_uri)
            found = store.chain_by_subject(lot_uri)
            if lot is None or found is None:
                raise NotFound(f"no lot {lot_uri} in this ledger")
            chain_id, _, head, length = found
            note = store.latest_checkpoint()
            history = self._history(lot_uri, chain_id)
            with history.lock:
                if history.length > length:  # the database was replaced under us
                    history = self._forget(lot_uri, chain_id)
                self._catch_up(store, history, lot_uri, length)
                product = store.chain_by_subject(stability_chain(lot.gtin))
                profiles = product[3] if product is not None else 0
                key = (length, note, lot.recalled, lot.custodian, now // MINUTE, profiles)
                if history.view_key != key or history.view is None:
                    integrity = self._integrity(store, history, lot_uri, head, note)
                    alerts = _Alerts(
                        tuple(recall_records(store, lot.id, lot_uri)),
                        tuple(hold_records(store, lot.id, lot_uri)),
                        tuple(flag_records(store, lot.id, lot_uri)),
                    )
                    history.view = _build_view(store, lot, history, integrity, alerts, now)
                    history.view_key = key
                return history.view

    # --- the per-lot memory

    def _history(self, lot_uri: str, chain_id: int) -> _History:
        with self._lock:
            history = self._histories.get(lot_uri)
            if history is None or history.chain_id != chain_id:
                history = self._histories[lot_uri] = _History(chain_id)
            self._histories.move_to_end(lot_uri)
            while len(self._histories) > self.capacity:
                self._histories.popitem(last=False)
            return history

    def _forget(self, lot_uri: str, chain_id: int) -> _History:
        with self._lock:
            history = self._histories[lot_uri] = _History(chain_id)
            return history

    @staticmethod
    def _catch_up(store: Store, history: _History, lot_uri: str, length: int) -> None:
        """Read and check the events appended since the last scan."""
        if history.length == length:
            return
        if history.length == 0:
            history.link = chains.genesis_link(lot_uri)
        link = history.link
        new = store.chain_events(history.chain_id, history.length)
        for stored, failure in zip(new, _verify([s.envelope for s in new]), strict=True):
            envelope = stored.envelope
            if failure is not None:
                history.bad_signatures.append(envelope.event_id)
            link = chains.next_link(link, envelope.id_bytes)
            history.last_index = max(history.last_index, stored.index)
            if envelope.kind == "reading":
                temperature = envelope.data.get("temperature_c")
                if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
                    time_us = envelope.time_us
                    if history.times and time_us < history.times[-1]:
                        history.in_order = False
                    history.readings.append((time_us, temperature, envelope.signer))
                    history.times.append(time_us)
            else:
                history.steps.append((stored.index, envelope))
            history.length += 1
        history.link = link

    def _integrity(
        self, store: Store, history: _History, lot_uri: str, head: bytes, note: str | None
    ) -> Integrity:
        problems: list[str] = []
        chain_intact = history.link == head
        if not chain_intact:
            problems.append("the lot's hash chain does not match its stored head")
        if history.bad_signatures:
            problems.append(f"{len(history.bad_signatures)} signatures do not verify")
        origin = store.get_meta("origin") or ""
        size, included = None, False
        if note is None:
            problems.append("the ledger has no signed checkpoint yet")
        else:
            try:
                key = self.log_public_key or public_key_from_did(store.get_meta("log_key"))
                checkpoint = open_checkpoint(note, origin, key, origin=origin)
                size = checkpoint.size
                if history.last_index >= size:
                    problems.append("the newest event is not yet in the signed checkpoint")
                elif history.last_index >= 0:
                    leaf = store.leaf_hashes(history.last_index, history.last_index + 1)[0]
                    proof = inclusion_proof(store, history.last_index, size)
                    verify_inclusion(history.last_index, size, leaf, proof, checkpoint.root_hash)
                    included = True
            except (ProvenanceError, ValidationError) as exc:
                size = size or _size_of(note)
                problems.append(f"the log does not check out: {exc}")
        return Integrity(
            history.length,
            history.length - len(history.bad_signatures),
            chain_intact,
            size,
            included,
            origin,
            tuple(problems),
            frozenset(history.bad_signatures),
        )


def _verify(envelopes: list[Envelope]) -> list[str | None]:
    """Signature checks spread over the cores (a first scan of a big lot checks
    tens of thousands; libsodium releases the GIL while verifying)."""
    if len(envelopes) < VERIFY_CHUNK * 2:
        return verify_signatures(envelopes)
    chunks = [envelopes[i : i + VERIFY_CHUNK] for i in range(0, len(envelopes), VERIFY_CHUNK)]
    return [failure for chunk in _pool().map(verify_signatures, chunks) for failure in chunk]


_verify_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _verify_pool
    with _pool_lock:
        if _verify_pool is None:
            _verify_pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="scan-verify")
        return _verify_pool


def _size_of(note: str) -> int | None:
    try:
        return checkpoint_body(note).size
    except ProvenanceError:
        return None


def _lookup(store: Store) -> Callable[[str], Party]:
    known: dict[str, Party] = {}

    def lookup(did: str) -> Party:
        party = known.get(did)
        if party is None:
            identity = store.identity_by_did(did)
            if identity is None:
                party = unknown_party(did)
            else:
                role = "device" if identity.type == "device" else identity.role
                party = Party(did, identity.name, role)
            known[did] = party
        return party

    return lookup


def profile_of(lot: Lot, origin: dict[str, Any]) -> coldchain.Profile | None:
    """The lot's temperature profile: as registered, else its category's default."""
    name = lot.profile or origin.get("profile") or DEFAULT_PROFILES.get(lot.category or "")
    if name is None:
        return None
    try:
        return coldchain.profile(name)
    except ValidationError:
        return None  # a profile this version does not know: show the record without a band


def _build_view(
    store: Store,
    lot: Lot,
    history: _History,
    integrity: Integrity,
    alerts: _Alerts,
    now: int,
) -> LotView:
    lookup = _lookup(store)
    custody = read_custody(lot.uri, history.steps, lookup)
    profile = profile_of(lot, custody.origin)
    legs = _leg_records(custody, history, profile, lookup, now)
    notes = list(custody.notes)
    born = custody.born_us
    if born is not None and history.times:
        first = history.times[0] if history.in_order else min(history.times)
        if first < born:
            notes.append(NOTE_READINGS_BEFORE_ORIGIN)
    identity = store.identity_by_id(lot.custodian)
    custodian = (
        Party(identity.did, identity.name, identity.role) if identity else unknown_party("?")
    )
    active = tuple(record for record in alerts.recalls if record.active)
    state, reasons, warnings = judge(lot, custody, integrity, legs, active, alerts.holds, now)
    try:
        stability = _stability(store, lot, history, profile)
    except SignatureError as exc:
        stability = None
        why = [f"its product's stability profile does not verify: {exc}"]
        state, reasons, warnings = with_state(UNVERIFIED, state, reasons, warnings, why)
    if stability is not None and stability.spent:
        why = stability.reasons()
        state, reasons, warnings = with_state(DISCARD, state, reasons, warnings, why)
    return LotView(
        lot,
        custody,
        custodian,
        profile,
        legs,
        integrity,
        state,
        reasons,
        warnings,
        now,
        history.length,
        alerts.recalls,
        alerts.holds,
        alerts.flags,
        tuple(notes),
        stability,
    )


def _leg_records(
    custody: Custody,
    history: _History,
    profile: coldchain.Profile | None,
    lookup: Callable[[str], Party],
    now: int,
) -> tuple[LegRecord, ...]:
    """Each leg with its readings judged and downsampled. A leg's record is kept
    until its readings, bounds or profile change (or, while a logger is still
    attached to the open leg, the minute): a new reading rebuilds one leg."""
    legs = custody.legs
    if not legs:
        return ()
    if not history.in_order:
        history.readings.sort()
        history.times[:] = [time_us for time_us, _, _ in history.readings]
        history.in_order = True
    times, last = history.times, len(legs) - 1
    kept: dict[Any, LegRecord] = {}
    records = []
    for position, leg in enumerate(legs):
        # A reading belongs to the last leg that started at or before it; readings
        # from before the first leg belong to the first.
        low = 0 if position == 0 else bisect.bisect_left(times, leg.start_us)
        high = (
            len(times)
            if position == last
            else bisect.bisect_left(times, legs[position + 1].start_us)
        )
        watched = position == last and leg.end_us is None and bool(custody.attached)
        key = (leg, high - low, profile, now // MINUTE if watched else None)
        record = history.leg_records.get(key)
        if record is None:
            record = _leg_record(
                leg, history.readings[low:high], profile, lookup, now if watched else None
            )
        kept[key] = record
        records.append(record)
    history.leg_records = kept
    return tuple(records)


def _leg_record(
    leg: Leg,
    readings: list[tuple[int, float, str]],
    profile: coldchain.Profile | None,
    lookup: Callable[[str], Party],
    now: int | None,
) -> LegRecord:
    loggers = tuple(lookup(did) for did in dict.fromkeys(signer for _, _, signer in readings))
    status, buckets = None, ()
    if readings:
        data = coldchain.series([(time_us, temperature) for time_us, temperature, _ in readings])
        if profile is not None:
            # now: the logger should still read
            status = coldchain_status.assess(data, profile, now)
        buckets = tuple(coldchain_downsample.downsample(data, CHART_BUCKETS, profile))
    return LegRecord(leg, loggers, len(readings), status, buckets)


def judge(
    lot: Lot,
    custody: Custody,
    integrity: Integrity,
    legs: tuple[LegRecord, ...],
    recalls: tuple[RecallRecord, ...],
    holds: tuple[Hold, ...],
    now_us: int,
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The headline state, its reasons, and the lesser states that also apply.
    *recalls* and *holds* are those in force."""
    found: dict[str, list[str]] = {}
    if lot.recalled or recalls:
        found[RECALLED] = [r.reason for r in recalls] or ["recalled by a regulator"]
    if lot.held or holds:
        found[HELD] = [h.reason for h in holds] or ["held by a rule"]
    if not integrity.verified:
        found[UNVERIFIED] = list(integrity.problems) or ["the record could not be checked"]
    for record in legs:
        status = record.status
        if status is None:
            continue
        if status.state in (coldchain_status.EXCURSION, coldchain_status.EXCEEDED):
            found.setdefault(EXCURSION, []).extend(status.reasons)
        elif status.state == coldchain_status.GAP:
            found.setdefault(GAP, []).extend(status.reasons)
    expiry = lot.expiry or custody.origin.get("expiry")
    if expiry and _day_of(expiry) < now_us // DAY:
        found[EXPIRED] = [f"expired on {expiry}"]
    present = [state for state in STATES if state in found]
    if not present:
        return OK, (), ()
    headline = present[0]
    return headline, tuple(found[headline]), tuple(present[1:])


# --- the stability budget (docs/coldchain.md, "Stability budget")


def _stability(
    store: Store, lot: Lot, history: _History, profile: coldchain.Profile | None
) -> LotStability | None:
    """The lot's budget by its product's profile in force, over the readings of
    its whole life; kept until the readings or the profile change."""
    found = profile_in_force(store, lot.gtin)
    if found is None:
        return None
    key = (found.event_id, len(history.readings), profile)
    if history.stability is not None and history.stability[0] == key:
        return history.stability[1]
    readings = [(time_us, temperature) for time_us, temperature, _ in history.readings]
    result = LotStability(found, lot_budget(readings, found, profile))
    history.stability = (key, result)
    return result


def with_state(
    added: str,
    state: str,
    reasons: tuple[str, ...],
    warnings: tuple[str, ...],
    why: list[str],
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """*state* and its warnings with *added* (a spent stability budget, DISCARD,
    or a profile that does not verify, UNVERIFIED) among them, the most severe
    first, as `judge` orders them; *why* are its reasons."""
    present = sorted({*([] if state == OK else [state]), *warnings, added}, key=STATES.index)
    headline = present[0]
    if headline == added:
        reasons = tuple(why) if headline != state else (*reasons, *why)
    return headline, reasons, tuple(present[1:])


def _day_of(date_text: str) -> int:
    day = parse_date(date_text, "expiry")
    return day.toordinal() - 719_163  # days since 1970-01-01
