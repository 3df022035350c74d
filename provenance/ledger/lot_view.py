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

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from provenance.core.timefmt import now_micros
from provenance.domain import coldchain, coldchain_life
from provenance.domain.custody import (
    Party,
    read_custody,
    unknown_party,
)
from provenance.domain.rule_decisions import Flag, Hold
from provenance.ledger.decisions import flag_records, hold_records
from provenance.ledger.holdings_view import holdings_by_id, party_lookup
from provenance.ledger.lineage import RecallRecord, recall_records
from provenance.ledger.lot_model import (
    DEFAULT_PROFILES,
    DISCARD,
    NOTE_READINGS_BEFORE_ORIGIN,
    UNVERIFIED,
    Ingredient,
    Integrity,
    LegRecord,
    LotView,
)
from provenance.ledger.lot_temperature import MINUTE, leg_records, life_of
from provenance.ledger.lot_verdict import judge, with_ingredients, with_state
from provenance.ledger.proofs import HeadsProver, checkpoint_body, heads_prover
from provenance.ledger.stability import LotStability, lot_budget, profile_in_force
from provenance.store.db import Store
from provenance.store.rows import Lot

MAX_INGREDIENTS = 6  # lots it was made from that a page shows (and checks) at each level
MAX_INGREDIENT_DEPTH = 2  # levels of "made from" a page follows: ingredients and theirs
VERIFY_CHUNK = 500  # signatures per task on the verify threads
VOUCH_FROM = 64  # new events under the checkpoint from which a later scan asks the signed log
DAY = 86_400_000_000


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
            made = with_ingredients(own, tuple(ingredients), missing)
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
    lookup = party_lookup(store)
    custody = read_custody(lot.uri, history.steps, lookup)
    profile = profile_of(lot, custody.origin)
    legs = leg_records(custody, history, profile, lookup, now)
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
    life = life_of(history, custody, legs, profile, lookup, now)
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
        holdings=holdings_by_id(store, [lot.id]).get(lot.id),
    )


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
