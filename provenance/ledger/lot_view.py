"""What a scan of a lot shows: its status, custody, cold chain and integrity.

`Scanner.view(store, lot_uri)` reads the lot's chain from the store and returns
a `LotView` for the consumer page and its JSON twin. Reading a lot with 20,000
readings and re-checking every signature takes seconds, so each lot's history
is kept in memory and only the events appended since the last scan are read
and checked again (`_History`). A view is rebuilt when the chain grows, the
signed checkpoint moves, or the clock crosses a minute.

Integrity is checked here, not taken from the database's word: the hash chain
recomputed from its genesis and compared with the stored head, an RFC 9162
inclusion proof of the newest event against the latest checkpoint, whose
signature is checked with the log key, and every event's signature — checked
here, or vouched for by the signed log: the ledger appends only events whose
signatures it verified, and the checkpoint's heads tree commits to the chain's
head, which commits to every event id, which covers the signature. So when the
chain as recomputed here from the stored events is the one the signed
checkpoint's heads tree holds, the events it covers are not checked one by one
again (`_vouch`); events after the checkpoint, and all of them when the log
does not vouch, are (docs/scan.md, "Integrity"). The proof bundle
(`provenance.ledger.proofs.build_bundle`) lets anyone repeat the check offline.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from provenance.core import chain as chains
from provenance.core.checkpoint import open_checkpoint
from provenance.core.envelope import Envelope, verify_signatures
from provenance.core.errors import (
    NotFound,
    ProvenanceError,
    SignatureError,
    ValidationError,
    VerificationError,
)
from provenance.core.heads import check_chain_head, parse_heads_line
from provenance.core.identity import public_key_from_did
from provenance.core.kinds import stability_chain
from provenance.core.merkle import inclusion_proof, verify_inclusion
from provenance.core.reason import Reason
from provenance.core.timefmt import now_micros, parse_date
from provenance.domain import coldchain, coldchain_downsample, coldchain_life, coldchain_status
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
from provenance.ledger.proofs import HeadsProver, checkpoint_body, heads_prover
from provenance.ledger.stability import LotStability, lot_budget, profile_in_force
from provenance.store.db import Store
from provenance.store.rows import Lot

MAX_INGREDIENTS = 6  # lots it was made from that a page shows (and checks) at each level
MAX_INGREDIENT_DEPTH = 2  # levels of "made from" a page follows: ingredients and theirs
VERIFY_CHUNK = 500  # signatures per task on the verify threads
VOUCH_FROM = 64  # new events under the checkpoint from which a later scan asks the signed log
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
UNMONITORED = "unmonitored"  # it needs a temperature, and no logger read on any leg
GAP = "gap"  # loggers fell silent, or a leg had none: not known to be fine
OK = "ok"
STATES = (RECALLED, HELD, UNVERIFIED, DISCARD, EXCURSION, EXPIRED, UNMONITORED, GAP, OK)

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
    # Of signatures_valid, how many the signed log vouches for (checked when the
    # ledger appended them, the chain matching the checkpoint's heads tree)
    # rather than checked again here.
    signatures_vouched: int = 0

    @property
    def verified(self) -> bool:
        return (
            not self.problems
            and self.chain_intact
            and self.included
            and self.signatures_valid == self.events
        )


@dataclass(frozen=True)
class Ingredient:
    """A lot this one was made from, as its own scan shows it (with its own ingredients,
    one level less deep)."""

    uri: str
    quantity: dict[str, Any] | None
    view: LotView

    @property
    def name(self) -> str:
        return self.view.lot.product


@dataclass(frozen=True)
class Inherited:
    """A hold, recall, excursion or unknown temperature of a lot this one was made from,
    with the path to it: *path* names the products from this lot's ingredient down to the
    lot it happened to (``("Kale",)``, ``("Dressing", "Olive oil")``)."""

    state: str  # a page state: RECALLED, HELD, EXCURSION, UNMONITORED or GAP
    path: tuple[str, ...]
    uris: tuple[str, ...]  # the lots along the path
    reasons: tuple[str, ...]  # plain English, as that lot's own page gives them
    life: coldchain_life.LifeVerdict | None = None  # for EXCURSION, UNMONITORED, GAP
    holds: tuple[Hold, ...] = ()  # for HELD

    @property
    def uri(self) -> str:
        return self.uris[-1]

    def sentence(self) -> str:
        """Plain English, with the path: "the Kale in it: …"."""
        return f"the {' in the '.join(reversed(self.path))} in it: " + "; ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "path": list(self.path),
            "lots": list(self.uris),
            "reasons": list(self.reasons),
        }


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
    # --- the cold chain over the whole life, and the lots it was made from
    life: coldchain_life.LifeVerdict | None = None  # None: no temperature requirement
    ingredients: tuple[Ingredient, ...] = ()  # lots it was made from, as far as shown
    ingredients_not_shown: int = 0  # inputs beyond MAX_INGREDIENTS or MAX_INGREDIENT_DEPTH
    inherited: tuple[Inherited, ...] = ()  # their holds, excursions… with the path to them
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
    readings: list[tuple[int, float, str, str | None]] = field(
        default_factory=list
    )  # (t, °C, signer, sensor)
    times: list[int] = field(default_factory=list)  # readings' times, sorted with them
    in_order: bool = True  # readings arrived in time order (else sort before use)
    leg_records: dict[Any, LegRecord] = field(default_factory=dict)  # by what they depend on
    life_key: tuple[Any, ...] | None = None
    life: coldchain_life.LifeVerdict | None = None
    # the view with its ingredients, by depth: (what it was made of, the view)
    made: dict[int, tuple[tuple[Any, ...], LotView]] = field(default_factory=dict)
    bad_signatures: list[str] = field(default_factory=list)
    vouched: int = 0  # events whose signatures the signed log vouches for
    problems: list[str] = field(default_factory=list)  # found while reading, kept
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
        vouch_from: int = VOUCH_FROM,
    ):
        self.log_public_key = log_public_key
        self.clock = clock
        self.capacity = capacity
        self.vouch_from = vouch_from
        self._histories: OrderedDict[str, _History] = OrderedDict()
        self._lock = threading.Lock()
        self._heads: tuple[str, HeadsProver | None] | None = None  # (note, its prover)
        self._heads_lock = threading.Lock()

    def view(self, store: Store, lot_uri: str) -> LotView:
        """The lot as a scan shows it now, with the lots it was made from (as far as
        MAX_INGREDIENT_DEPTH and MAX_INGREDIENTS reach). Raises NotFound for an unknown lot."""
        return self._made_view(store, lot_uri, MAX_INGREDIENT_DEPTH, frozenset())

    def _made_view(self, store: Store, lot_uri: str, depth: int, seen: frozenset[str]) -> LotView:
        """The lot's own view with its ingredients' views under it and their alerts
        inherited. Each ingredient's view is read on its own (its own snapshot and lock:
        never two locks at once), and the combination is kept while neither changes,
        so the page cache (keyed by the view) keeps working."""
        own, history = self._own_view(store, lot_uri)
        inputs = own.custody.inputs
        if not inputs:
            return own
        parts: list[Any] = [own]
        ingredients = []
        missing = max(len(inputs) - MAX_INGREDIENTS, 0) if depth > 0 else len(inputs)
        if depth > 0:
            for item in inputs[:MAX_INGREDIENTS]:
                uri = item.get("batch")
                if not isinstance(uri, str) or uri in seen or uri == lot_uri:
                    missing += 1
                    continue
                try:
                    sub = self._made_view(store, uri, depth - 1, seen | {lot_uri})
                except NotFound:
                    missing += 1
                    continue
                parts.append(sub)
                ingredients.append(Ingredient(uri, item.get("quantity"), sub))
        with history.lock:
            kept = history.made.get(depth)
            if (
                kept is not None
                and len(kept[0]) == len(parts)
                and all(a is b for a, b in zip(kept[0], parts, strict=True))
            ):
                return kept[1]
            made = _with_ingredients(own, tuple(ingredients), missing)
            history.made[depth] = (tuple(parts), made)
            return made

    def _own_view(self, store: Store, lot_uri: str) -> tuple[LotView, _History]:
        """The lot's own view, without its ingredients."""
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
                self._catch_up(store, history, lot_uri, length, note)
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
                return history.view, history

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

    def _catch_up(
        self, store: Store, history: _History, lot_uri: str, length: int, note: str | None
    ) -> None:
        """Read and check the events appended since the last scan."""
        if history.length == length:
            return
        if history.length == 0:
            history.link = chains.genesis_link(lot_uri)
        link = history.link
        new = store.chain_events(history.chain_id, history.length)
        links = []
        for stored in new:
            link = chains.next_link(link, stored.envelope.id_bytes)
            links.append(link)
        # The chain as of the checkpoint: its events in chain order are in log
        # order, so those the checkpoint covers are a prefix of the new ones.
        size = _size_of(note) if note is not None else None
        covered = 0
        if size is not None:
            while covered < len(new) and new[covered].index < size:
                covered += 1
        unchecked = new
        # A first scan always asks the log (one heads proof); later ones when
        # enough new events are covered to be worth the heads tree's building.
        first = history.length == 0
        if covered and (first or covered >= self.vouch_from) and note is not None:
            at_size = history.length + covered
            if self._vouch(store, history, lot_uri, at_size, links[covered - 1], note):
                unchecked = new[covered:]
                history.vouched += covered
        for stored, failure in zip(
            unchecked, _verify([s.envelope for s in unchecked]), strict=True
        ):
            if failure is not None:
                history.bad_signatures.append(stored.envelope.event_id)
        for stored in new:
            envelope = stored.envelope
            history.last_index = max(history.last_index, stored.index)
            if envelope.kind == "reading":
                temperature = _temperature(envelope)
                if temperature is not None:
                    time_us = envelope.time_us
                    if history.times and time_us < history.times[-1]:
                        history.in_order = False
                    sensor = envelope.data.get("sensor")
                    history.readings.append(
                        (time_us, temperature, envelope.signer, sensor if sensor else None)
                    )
                    history.times.append(time_us)
            else:
                history.steps.append((stored.index, envelope))
            history.length += 1
        history.link = link

    def _vouch(
        self, store: Store, history: _History, lot_uri: str, length: int, head: bytes, note: str
    ) -> bool:
        """Whether the signed checkpoint *note* holds this lot's chain of *length*
        events ending in *head*, as recomputed here from the stored events: then
        the log vouches for their signatures. Otherwise False, and the caller
        checks the signatures itself; a note that does not open is said by
        `_integrity`, while stored heads that do not make the signed heads root,
        or a chain other than the one that root holds, are problems the page
        shows (a ledger the log signed always makes its root again)."""
        try:
            origin = store.get_meta("origin") or ""
            key = self.log_public_key or public_key_from_did(store.get_meta("log_key"))
            checkpoint = open_checkpoint(note, origin, key, origin=origin)
            line = parse_heads_line(checkpoint.extensions)
            prover = self._heads_prover(store, note, checkpoint.size, line)
        except (ProvenanceError, ValidationError):
            return False  # _integrity says what is wrong with the log, if anything
        if prover is None:  # fail closed: the database disagrees with what the log signed
            _note(
                history.problems,
                Reason(
                    "heads-mismatch",
                    "the ledger's chain heads do not match its signed checkpoint, so the log "
                    "cannot confirm this lot's history",
                ),
            )
            return False
        try:
            position, proof, left, right = prover.proof(lot_uri)
            check_chain_head(lot_uri, length, head, position, proof, left, right, line)
        except (KeyError, VerificationError):
            _note(
                history.problems,
                Reason(
                    "history-differs",
                    "the lot's events differ from those the signed log commits to",
                ),
            )
            return False
        return True

    def _heads_prover(self, store: Store, note: str, size: int, line: Any) -> HeadsProver | None:
        """The heads tree of the checkpoint *note*, built once per checkpoint for
        every lot; None when the stored heads do not make its signed root."""
        with self._heads_lock:
            if self._heads is not None and self._heads[0] == note:
                return self._heads[1]
            try:
                prover: HeadsProver | None = heads_prover(store, size, line)
            except ProvenanceError:
                prover = None
            self._heads = (note, prover)
            return prover

    def _integrity(
        self, store: Store, history: _History, lot_uri: str, head: bytes, note: str | None
    ) -> Integrity:
        problems: list[str] = list(history.problems)
        chain_intact = history.link == head
        if not chain_intact:
            problems.append(
                Reason("chain-broken", "the lot's hash chain does not match its stored head")
            )
        if history.bad_signatures:
            bad = len(history.bad_signatures)
            problems.append(Reason("bad-signatures", f"{bad} signatures do not verify", count=bad))
        origin = store.get_meta("origin") or ""
        size, included = None, False
        if note is None:
            problems.append(Reason("no-checkpoint", "the ledger has no signed checkpoint yet"))
        else:
            try:
                key = self.log_public_key or public_key_from_did(store.get_meta("log_key"))
                checkpoint = open_checkpoint(note, origin, key, origin=origin)
                size = checkpoint.size
                if history.last_index >= size:
                    problems.append(
                        Reason(
                            "not-yet-logged", "the newest event is not yet in the signed checkpoint"
                        )
                    )
                elif history.last_index >= 0:
                    leaf = store.leaf_hashes(history.last_index, history.last_index + 1)[0]
                    proof = inclusion_proof(store, history.last_index, size)
                    verify_inclusion(history.last_index, size, leaf, proof, checkpoint.root_hash)
                    included = True
            except (ProvenanceError, ValidationError) as exc:
                size = size or _size_of(note)
                problems.append(
                    Reason("log-fails", f"the log does not check out: {exc}", detail=str(exc))
                )
        return Integrity(
            history.length,
            history.length - len(history.bad_signatures),
            chain_intact,
            size,
            included,
            origin,
            tuple(problems),
            frozenset(history.bad_signatures),
            history.vouched,
        )


# A reading's data as the protocol writes it (RFC 8785): only its temperature.
_PLAIN_READING = re.compile(
    r'\{"temperature_c":(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)\}\Z'
)


def _temperature(envelope: Envelope) -> float | None:
    """A reading's temperature in °C, None if it has none that is a number.
    Most readings carry nothing else, and their canonical text is read without
    a JSON parser (a first scan reads tens of thousands)."""
    plain = _PLAIN_READING.match(envelope.data_json)
    if plain is not None:
        text = plain.group(1)
        return int(text) if text.lstrip("-").isdigit() else float(text)
    temperature = envelope.data.get("temperature_c")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        return temperature
    return None


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


def _note(problems: list[str], problem: str) -> None:
    """Keep *problem* once: later scans may find it again."""
    if problem not in problems:
        problems.append(problem)


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
    life = _life(history, custody, legs, profile, lookup, now)
    active = tuple(record for record in alerts.recalls if record.active)
    state, reasons, warnings = judge(lot, custody, integrity, life, active, alerts.holds, now)
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
        life=life,
        stability=stability,
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
        history.times[:] = [reading[0] for reading in history.readings]
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
    readings: list[tuple[int, float, str, str | None]],
    profile: coldchain.Profile | None,
    lookup: Callable[[str], Party],
    now: int | None,
) -> LegRecord:
    loggers = tuple(lookup(did) for did in dict.fromkeys(reading[2] for reading in readings))
    status, buckets = None, ()
    if readings:
        data = coldchain.series([(reading[0], reading[1]) for reading in readings])
        if profile is not None:
            # now: the logger should still read
            status = coldchain_status.assess(data, profile, now)
        buckets = tuple(coldchain_downsample.downsample(data, CHART_BUCKETS, profile))
    return LegRecord(leg, loggers, len(readings), status, buckets)


# --- the cold chain over the whole life (docs/coldchain.md, "The whole life of a lot")


def _life(
    history: _History,
    custody: Custody,
    legs: tuple[LegRecord, ...],
    profile: coldchain.Profile | None,
    lookup: Callable[[str], Party],
    now: int,
) -> coldchain_life.LifeVerdict | None:
    """The lot's whole life judged by `coldchain_life.judge_life`, as the rules engine
    judges it: one record per logger (per probe of a gateway), each read on its own.
    Kept until the readings, legs or profile change (or the minute, while a logger
    is attached to the open leg)."""
    if profile is None:
        return None
    attached = frozenset(party.did for party in custody.attached)
    still_going = bool(custody.legs) and custody.legs[-1].end_us is None
    live = attached if still_going else frozenset()
    key = (len(history.readings), custody.legs, profile, live, now // MINUTE if live else None)
    if history.life_key == key and history.life is not None:
        return history.life
    by_record: dict[tuple[str, str | None], list[tuple[int, float]]] = {}
    for time_us, temperature, signer, sensor in history.readings:
        by_record.setdefault((signer, sensor), []).append((time_us, temperature))
    records = []
    for (signer, sensor), readings in by_record.items():
        name = lookup(signer).name + (f" ({sensor})" if sensor else "")
        key_text = signer + (f"/{sensor}" if sensor else "")
        records.append(coldchain_life.Record(name, readings, key_text, signer in live))
    covers = [
        coldchain_life.LegCover(
            record.leg.holder.name,
            record.leg.start_us,
            record.leg.end_us,
            record.readings,
            record.leg.receiver.name if record.leg.receiver else None,
        )
        for record in legs
    ]
    history.life = coldchain_life.judge_life(records, profile, legs=covers, now_us=now)
    history.life_key = key
    return history.life


def judge(
    lot: Lot,
    custody: Custody,
    integrity: Integrity,
    life: coldchain_life.LifeVerdict | None,
    recalls: tuple[RecallRecord, ...],
    holds: tuple[Hold, ...],
    now_us: int,
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The headline state, its reasons, and the lesser states that also apply.
    *recalls* and *holds* are those in force; the cold chain is *life*'s verdict
    over the whole life, never leg by leg."""
    found: dict[str, list[str]] = {}
    if lot.recalled or recalls:
        found[RECALLED] = [r.reason for r in recalls] or [
            Reason("recalled", "recalled by a regulator")
        ]
    if lot.held or holds:
        found[HELD] = [h.reason for h in holds] or [Reason("held", "held by a rule")]
    if not integrity.verified:
        found[UNVERIFIED] = list(integrity.problems) or [
            Reason("not-checked", "the record could not be checked")
        ]
    if life is not None:
        page_state = _LIFE_STATES.get(life.state)
        if page_state is not None:
            found[page_state] = list(life.reasons)
    expiry = lot.expiry or custody.origin.get("expiry")
    if expiry and _day_of(expiry) < now_us // DAY:
        found[EXPIRED] = [Reason("expired", f"expired on {expiry}", date=expiry)]
    return _headline(found)


# --- ingredients (docs/lineage.md, "Ingredients on the scan page")


def _with_ingredients(own: LotView, ingredients: tuple[Ingredient, ...], missing: int) -> LotView:
    """*own* with its ingredients and what it inherits from them; the headline is
    judged again with their holds, excursions and unknown temperatures, each with its
    path (recalls already reach it through the recall table: docs/lineage.md)."""
    inherited = tuple(item for ingredient in ingredients for item in _inherits(ingredient))
    found: dict[str, list[str]] = {}
    if own.state != OK:
        found[own.state] = list(own.reasons)
    for state in own.warnings:
        found.setdefault(state, [])
    for item in inherited:
        if item.state == RECALLED and own.active_recalls:
            continue  # the recall reached this lot itself (cascaded): said once
        found.setdefault(item.state, []).append(item.sentence())
    state, reasons, warnings = _headline(found)
    return replace(
        own,
        state=state,
        reasons=reasons,
        warnings=warnings,
        ingredients=ingredients,
        ingredients_not_shown=missing,
        inherited=inherited,
    )


def _inherits(ingredient: Ingredient) -> list[Inherited]:
    """What this lot inherits from one ingredient: the ingredient's own holds, direct
    recalls and cold-chain verdict, and (one level down) what it inherited itself."""
    view, name, uri = ingredient.view, ingredient.name, ingredient.uri
    out = []
    direct = tuple(r.reason for r in view.active_recalls if r.direct)
    if direct:
        out.append(Inherited(RECALLED, (name,), (uri,), direct))
    if view.holds or view.lot.held:
        reasons = tuple(h.reason for h in view.holds) or (Reason("held", "held by a rule"),)
        out.append(Inherited(HELD, (name,), (uri,), reasons, holds=view.holds))
    life = view.life
    if life is not None and life.state in _LIFE_STATES:
        out.append(Inherited(_LIFE_STATES[life.state], (name,), (uri,), life.reasons, life))
    for deeper in view.inherited:
        out.append(replace(deeper, path=(name, *deeper.path), uris=(uri, *deeper.uris)))
    return out


# The page's state for each whole-life verdict (OK adds nothing).
_LIFE_STATES = {
    coldchain_status.EXCEEDED: EXCURSION,
    coldchain_status.EXCURSION: EXCURSION,
    coldchain_life.UNMONITORED: UNMONITORED,
    coldchain_status.GAP: GAP,
}


def _headline(found: dict[str, list[str]]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
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
    readings = [(reading[0], reading[1]) for reading in history.readings]
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
