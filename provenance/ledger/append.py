"""The ledger: the single door for writes.

`Ledger.append(envelopes)` checks each envelope (structure, signature, known
and unrevoked signer, replay, authorisation for its kind), then, for the whole
batch in one SQLite transaction, files every accepted event into the chains
of its lots, appends it to the Merkle log, and signs a checkpoint covering the
result. It is idempotent: the same event again is reported as a duplicate and
changes nothing.

What each kind checks and changes is its entry in the kinds registry
(provenance/ledger/kinds/); here are the checks every event gets, the
transaction and the caches the kinds' rules share.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core import chain as chains
from provenance.core.checkpoint import Checkpoint, sign_checkpoint
from provenance.core.envelope import Envelope, NotAnEnvelope
from provenance.core.errors import RejectedEvent
from provenance.core.heads import SortedHeads
from provenance.core.kinds import REGISTRAR, SIGNER_ROLES
from provenance.core.merkle import Frontier, decompose
from provenance.core.timefmt import format_time, now_micros
from provenance.ledger.intake import Verification, parse_disclosed
from provenance.ledger.kinds import KINDS
from provenance.ledger.kinds.base import Transaction
from provenance.ledger.reasons import (
    BAD_SIGNATURE,
    FUTURE_TIME,
    REPLAY,
    REVOKED,
    UNAUTHORISED,
    UNKNOWN_SIGNER,
    WAITS_FOR_EARLIER,
)
from provenance.ledger.reject_log import record_rejects
from provenance.ledger.rejects import RejectBudget
from provenance.store.db import Store, StoreError, leaf_for
from provenance.store.disclosures import insert_disclosures
from provenance.store.migrations import (
    ACCESS_RULES_FROM,
    QUANTITY_RULES_FROM,
    RECALL_RULES_FROM,
    TIME_RULES_FROM,
)
from provenance.store.record_times import record_append
from provenance.store.rows import Identity, Lot

log = logging.getLogger(__name__)

MAX_FUTURE_US = 5 * 60 * 1_000_000  # clock skew we tolerate on `time`
PARALLEL_VERIFY_MIN = 64  # below this, threads cost more than they save
VERIFY_CHUNK = 50  # envelopes per verification task
GIL_SWITCH_INTERVAL_S = 0.0001  # while verification threads run (measured: docs/performance.md)


@dataclass
class Appended:
    """What happened to one envelope: accepted, duplicate (already in the
    ledger, nothing changed), rejected (with reason), aborted (valid, but an
    atomic batch it was in was refused) or waiting (allowed to wait, and
    refused for a reason in WAITS_FOR_EARLIER: nothing stored, not recorded
    as a refusal; try it again later)."""

    status: str
    event_id: str | None = None
    index: int | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("accepted", "duplicate")


class Ledger:
    """Appends to and reads from one store. Not thread-safe: one per writer."""

    def __init__(
        self,
        store: Store,
        log_key: Ed25519PrivateKey,
        *,
        clock: Callable[[], int] = now_micros,
        max_future_us: int = MAX_FUTURE_US,
        verify_threads: int | None = None,
    ):
        self.store = store
        self.verify_threads = verify_threads or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None
        self.log_key = log_key
        self.clock = clock
        self.max_future_us = max_future_us
        origin = store.get_meta("origin")
        if origin is None:
            raise StoreError("the ledger has no origin yet: run `provenance init`")
        self.origin = origin
        self._loaded = False
        self.catch_ups = 0  # times another writer's appends were caught up with
        self._may_wait: Sequence[bool] | None = None  # of the append under way
        self.reject_budget = RejectBudget()  # what of the refusals is stored one by one

    # --- set-up

    @staticmethod
    def initialise(
        store: Store,
        log_key: Ed25519PrivateKey,
        registrar_key: Ed25519PrivateKey,
        origin: str,
        *,
        clock: Callable[[], int] = now_micros,
    ) -> Ledger:
        """Make a fresh ledger: meta, then the registrar's self-enrolment as leaf 0.
        Idempotent: on an initialised store it only checks the keys match."""
        from provenance.core.checkpoint import format_verifier_key
        from provenance.core.signing import did_of, sign

        log_did = did_of(log_key)
        registrar_did = did_of(registrar_key)
        existing = store.get_meta("log_key")
        if existing is not None:
            if existing != log_did or store.get_meta("registrar") != registrar_did:
                raise StoreError(
                    "this database was initialised with other keys: use the --keys folder it was "
                    "made with"
                )
            return Ledger(store, log_key, clock=clock)
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = log_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        with store.transaction():
            store.set_meta("origin", origin)
            store.set_meta("log_key", log_did)
            store.set_meta("log_verifier_key", format_verifier_key(origin, raw))
            store.set_meta("registrar", registrar_did)
        ledger = Ledger(store, log_key, clock=clock)
        genesis = sign(
            registrar_key,
            kind="enrol",
            seq=0,
            time=format_time(clock()),
            data={"subject": registrar_did, "type": REGISTRAR, "name": "registrar"},
        )
        result = ledger.append([genesis], atomic=True)[0]
        if not result.ok:
            raise StoreError(f"could not write the genesis enrolment: {result.message}")
        return ledger

    # --- caches: brought up to date at the start of every write transaction
    #
    # Several writers may share one ledger (ingest nodes on a shared
    # subscription, the portal, the CLI). Each write transaction holds the
    # store's write lock (SQLite: BEGIN IMMEDIATE); inside it, `_sync` compares
    # the stored log size, the ledger's generation, with the cached frontier's:
    # every change to the state the caches hold comes with an appended event,
    # so an equal size means nothing changed. Otherwise `_catch_up` reloads
    # the frontier and only the chains that moved, and empties the lazy caches
    # (docs/ingest.md, "Several ingest nodes").

    def _load(self) -> None:
        """The caches without a leading underscore are the state the kinds'
        rules (provenance/ledger/kinds/) read and keep up to date."""
        store = self.store
        size = store.log_size()
        self._frontier = self._frontier_at(size)
        self._heads: list[list[Any]] = []  # [subject, head, length] by chain id - 1
        for chain_id, subject, head, length in store.chains():
            if chain_id != len(self._heads) + 1:
                raise StoreError(f"chain ids are not dense at {chain_id}: run `provenance verify`")
            self._heads.append([subject, head, length])
        self._heads_tree = SortedHeads.of((s, n, h) for s, h, n in self._heads)
        self._reset_lazy()
        self._loaded = True

    def _frontier_at(self, size: int) -> Frontier:
        store = self.store
        hashes = [store.subtree_hash(level, index) for level, index in decompose(0, size)]
        return Frontier.from_subtrees(size, hashes)

    def _reset_lazy(self) -> None:
        """Empty the caches that fill on first use, and read the rules' start
        indexes again."""
        store = self.store
        self.identities: dict[str, Identity | None] = {}
        self.identities_by_id: dict[int, Identity] = {}
        self.lots_by_uri: dict[str, Lot | None] = {}
        self.lots_by_id: dict[int, Lot] = {}
        self.rules_from = int(store.get_meta(RECALL_RULES_FROM) or 0)
        # Who may sign about a lot, and GS1 prefixes, apply from this log index.
        self.access_from = int(store.get_meta(ACCESS_RULES_FROM) or 0)
        self._prefixes: dict[int, set[str]] = {}  # party id -> GS1 company prefixes
        self.time_rules_from = int(store.get_meta(TIME_RULES_FROM) or 0)
        self.quantity_rules_from = int(store.get_meta(QUANTITY_RULES_FROM) or 0)
        self.born: dict[int, int] = {}  # lot id -> time of its commission (or making), µs
        self._attachments: dict[int, list[list[Any]]] = {}
        self._max_seq: dict[int, int] = {}
        self.streams: dict[str, int] = {}  # EPCIS stream chain subject -> chain id

    def _sync(self) -> None:
        """Called inside the write transaction: catch up with other writers."""
        if not self._loaded:
            self._load()
            return
        size = self.store.log_size()
        if size != self._frontier.size:
            self._catch_up(size)

    def _catch_up(self, size: int) -> None:
        """Another writer appended events since our last commit: reload the
        frontier, the chains that moved or were made since, and forget the
        lazy caches (identities, lots, attachments… may have changed)."""
        if size < self._frontier.size:  # pragma: no cover - a log never shrinks
            self._load()
            return
        changed = self.store.chains_moved_since(self._frontier.size, len(self._heads))
        self._frontier = self._frontier_at(size)
        for chain_id, subject, head, length in changed:
            if chain_id <= len(self._heads):
                self._heads[chain_id - 1] = [subject, head, length]
            elif chain_id == len(self._heads) + 1:
                self._heads.append([subject, head, length])
            else:
                raise StoreError(f"chain ids are not dense at {chain_id}: run `provenance verify`")
        for _, subject, head, length in changed:
            self._heads_tree.put(subject, length, head)
        self._reset_lazy()
        self.catch_ups += 1

    def _forget(self) -> None:
        """After a rollback: the caches may hold what was not committed."""
        self._loaded = False

    def identity(self, did: str) -> Identity | None:
        if did not in self.identities:
            found = self.store.identity_by_did(did)
            self.identities[did] = found
            if found:
                self.identities_by_id[found.id] = found
        return self.identities[did]

    def lot(self, uri: str) -> Lot | None:
        if uri not in self.lots_by_uri:
            found = self.lots_by_uri[uri] = self.store.lot_by_uri(uri)
            if found is not None:
                self.lots_by_id[found.id] = found
        return self.lots_by_uri[uri]

    def _highest_seq(self, signer_id: int) -> int:
        highest = self._max_seq.get(signer_id)
        if highest is None:
            stored = self.store.max_seq(signer_id)
            highest = self._max_seq[signer_id] = -1 if stored is None else stored
        return highest

    def chain_length(self, chain_id: int) -> int:
        """How many events chain *chain_id* holds so far (this batch's included)."""
        return self._heads[chain_id - 1][2]

    def attachments_of(self, device_id: int) -> list[list[Any]]:
        if device_id not in self._attachments:
            self._attachments[device_id] = self.store.attachments(device_id)
        return self._attachments[device_id]

    # --- the door

    def append(
        self,
        items: Iterable[Envelope | bytes | str | dict[str, Any] | NotAnEnvelope],
        *,
        atomic: bool = False,
        source: str | None = None,
        sources: Sequence[str | None] | None = None,
        messages: Sequence[int] | None = None,
        may_wait: Sequence[bool] | None = None,
    ) -> list[Appended]:
        """Append envelopes; one result per item, in order.

        With ``atomic=True`` nothing is stored unless every envelope is accepted
        or a duplicate. Rejections are recorded in the store's reject log with
        *source* (e.g. the MQTT topic), or per item with *sources*; *messages*
        says which message each item came in (default: all in one), for the
        per-message bound on stored rejects (provenance/ledger/rejects.py).
        *may_wait* (not with *atomic*): per item, whether a refusal in
        WAITS_FOR_EARLIER makes it `waiting` instead of `rejected`.

        An `Envelope` counts as signature-checked only if this process's
        verifier marked it so (`envelope.signature_checked`); any other,
        including any subclass whatever its `verify_signature` does, is
        checked here, and refused as `bad-signature` if it does not verify.
        """
        raws = list(items)
        if sources is None:
            sources = [source] * len(raws)
        elif len(sources) != len(raws):
            raise ValueError(f"{len(sources)} sources for {len(raws)} items")
        if messages is not None and len(messages) != len(raws):
            raise ValueError(f"{len(messages)} message numbers for {len(raws)} items")
        if may_wait is not None and (atomic or len(may_wait) != len(raws)):
            raise ValueError("may_wait: one flag per item, and not with atomic")
        self._may_wait = may_wait
        pool = self._verify_pool(len(raws))
        if pool is None:
            return self._append(raws, None, atomic, sources, messages)
        # The verification threads need the GIL for a moment around each
        # (GIL-free) Ed25519 verify; with the default 5 ms switch interval they
        # starve behind this thread's parsing. Hand it over more often meanwhile.
        previous = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        try:
            return self._append(raws, pool, atomic, sources, messages)
        finally:
            sys.setswitchinterval(previous)

    def _append(
        self,
        raws: list[Any],
        pool: ThreadPoolExecutor | None,
        atomic: bool,
        sources: Sequence[str | None],
        messages: Sequence[int] | None = None,
    ) -> list[Appended]:
        results: list[Appended] = []
        chunks: list[Verification] = []
        parsed: list[tuple[int, Envelope]] = []
        disclosed: dict[int, list[tuple[str, str]]] = {}  # position -> (digest, disclosure)
        for item in raws:
            envelope, opened, failure = parse_disclosed(item)
            if failure:
                results.append(_rejected(*failure))
                continue
            assert envelope is not None
            if opened:
                disclosed[len(results)] = [(d.digest, d.encoded) for d in opened]
            results.append(Appended("pending", envelope.event_id))
            parsed.append((len(results) - 1, envelope))
            if len(parsed) == VERIFY_CHUNK:  # verify while we go on parsing
                chunks.append(Verification(parsed, pool))
                parsed = []
        if parsed:
            chunks.append(Verification(parsed, pool))
        if atomic and any(r.status == "rejected" for r in results):
            chunks = []
        if chunks:
            self._commit(chunks, results, atomic, disclosed)
        if atomic and any(r.status == "rejected" for r in results):
            for result in results:
                if result.status in ("pending", "accepted"):
                    result.status, result.index = "aborted", None
                    result.reason, result.message = "aborted", "not stored: another event in "
                    result.message += "the same batch was rejected"
        self._record_rejects(results, raws, sources, messages)
        return results

    def _verify_pool(self, count: int) -> ThreadPoolExecutor | None:
        """Threads for signature checks on big batches: Ed25519 verification in
        libsodium releases the GIL, so it overlaps parsing and applying."""
        if self.verify_threads <= 1 or count < PARALLEL_VERIFY_MIN:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.verify_threads, thread_name_prefix="verify")
        return self._pool

    def close(self) -> None:
        """Stop the verification threads (the store stays open)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _commit(
        self,
        chunks: list[Verification],
        results: list[Appended],
        atomic: bool,
        disclosed: dict[int, list[tuple[str, str]]],
    ) -> None:
        now = self.clock()
        try:
            with self.store.transaction():
                self._sync()
                txn = Transaction()
                for chunk in chunks:
                    for (position, envelope), failure in zip(
                        chunk.items, chunk.failures(), strict=True
                    ):
                        try:
                            if failure is not None:
                                raise RejectedEvent(BAD_SIGNATURE, failure)
                            results[position] = done = self._apply(envelope, txn, now)
                            if done.status == "accepted" and position in disclosed:
                                txn.disclosures += [(done.index, *d) for d in disclosed[position]]
                        except RejectedEvent as exc:
                            results[position] = _rejected(exc.reason, exc.args[0], envelope)
                            if self._waits(position, exc.reason):
                                results[position].status = "waiting"
                            if atomic:
                                raise _Abort from None
                if txn.events:
                    self._flush(txn)
        except _Abort:
            self._forget()
        except BaseException:
            self._forget()
            raise

    def _waits(self, position: int, reason: str) -> bool:
        may_wait = self._may_wait
        return may_wait is not None and may_wait[position] and reason in WAITS_FOR_EARLIER

    def _record_rejects(
        self,
        results: list[Appended],
        raws: list[Any],
        sources: Sequence[str | None],
        messages: Sequence[int] | None = None,
    ) -> None:
        """Record the refusals (provenance/ledger/reject_log.py)."""
        record_rejects(
            self.store, self.reject_budget, self.clock(), results, raws, sources, messages
        )

    # --- one envelope

    def _apply(self, envelope: Envelope, txn: Transaction, now: int) -> Appended:
        signer = self.identity(envelope.signer)
        if signer is None:
            if not self._is_genesis(envelope):
                raise RejectedEvent(
                    UNKNOWN_SIGNER,
                    f"{envelope.signer} is not enrolled: register the party or device first",
                )
            signer_id = 0  # set once the genesis enrolment has made the registrar
        else:
            signer_id = signer.id
            if signer.revoked_from_us is not None and envelope.time_us >= signer.revoked_from_us:
                raise RejectedEvent(
                    REVOKED, f"the key of {signer.name} is revoked from {signer.revoked_from}"
                )
            role = signer.role if signer.type == "party" else signer.type
            allowed = SIGNER_ROLES[envelope.kind]
            if role not in allowed:
                raise RejectedEvent(
                    UNAUTHORISED,
                    f"a {role} may not sign {envelope.kind} events (allowed: "
                    f"{', '.join(sorted(allowed))})",
                )
        if envelope.time_us > now + self.max_future_us:
            raise RejectedEvent(
                FUTURE_TIME,
                f"time {envelope.time} is more than {self.max_future_us // 60_000_000} minutes in "
                "the future: check the signer's clock",
            )
        event_id = envelope.id_bytes
        key = (signer_id, envelope.seq)
        earlier = txn.seqs.get(key)
        highest = self._highest_seq(signer_id) if signer is not None else -1
        if earlier is None and envelope.seq <= highest:  # only then can the seq be in use
            stored = self.store.event_by_seq(signer_id, envelope.seq)
            if stored is not None:
                earlier = stored.envelope.id_bytes
                if earlier == event_id:
                    return Appended("duplicate", envelope.event_id, stored.index)
        if earlier is not None:
            if earlier == event_id:
                return Appended("duplicate", envelope.event_id, txn.ids[event_id])
            raise RejectedEvent(
                REPLAY,
                f"seq {envelope.seq} of {envelope.signer} was already used by event "
                f"{earlier.hex()}: each event needs a new seq",
            )

        index = self._frontier.size
        filed = KINDS[envelope.kind].apply(self, envelope, signer, index, txn)
        if signer is None:  # genesis: the registrar's identity now exists
            signer_id = self.identity(envelope.signer).id  # type: ignore[union-attr]

        leaf = leaf_for(envelope)
        txn.nodes.extend(self._frontier.append(leaf))
        lot_ids = (
            None if envelope.lots is None else [self.lot(uri).id for uri in envelope.lots]  # type: ignore[union-attr]
        )
        txn.events.append(
            Store.event_row(
                index, envelope, signer_id, lot_ids, None if filed == lot_ids else filed, leaf
            )
        )
        for chain_id in filed:
            entry = self._heads[chain_id - 1]
            entry[1] = chains.next_link(entry[1], event_id)
            txn.links.append((chain_id, entry[2], index, entry[1]))
            entry[2] += 1
            txn.moved.add(chain_id)
        txn.seqs[key] = event_id
        txn.ids[event_id] = index
        if envelope.seq > highest:
            self._max_seq[signer_id] = envelope.seq
        return Appended("accepted", envelope.event_id, index)

    def _flush(self, txn: Transaction) -> None:
        store = self.store
        store.insert_events(txn.events)
        if txn.events:  # EPCIS recordTime (store/record_times.py)
            record_append(store, txn.events[0][0], self.clock())
        store.insert_links(txn.links)
        store.insert_nodes(txn.nodes)
        moved = sorted(txn.moved)
        store.update_chains([(self._heads[i - 1][1], self._heads[i - 1][2], i) for i in moved])
        # The heads tree holds chains 1..size; add the chains made since, then the moved.
        for chain_id in [*range(self._heads_tree.size + 1, len(self._heads) + 1), *moved]:
            subject, head, length = self._heads[chain_id - 1]
            self._heads_tree.put(subject, length, head)
        insert_disclosures(store, txn.disclosures)  # beside the log, never in it (§14)
        store.insert_checkpoint(self._frontier.size, self._sign_checkpoint())

    def _sign_checkpoint(self) -> str:
        checkpoint = Checkpoint(
            origin=self.origin,
            size=self._frontier.size,
            root_hash=self._frontier.root(),
            extensions=(self._heads_tree.line().to_text(),),
        )
        return sign_checkpoint(checkpoint, self.origin, self.log_key)

    def new_chain(self, subject: str) -> int:
        chain_id = len(self._heads) + 1
        head = chains.genesis_link(subject)
        self.store.insert_chain(chain_id, subject, head)
        self._heads.append([subject, head, 0])
        return chain_id

    # --- for the kinds' rules (provenance/ledger/kinds/): state they share

    def _is_genesis(self, envelope: Envelope) -> bool:
        return (
            self._frontier.size == 0
            and envelope.kind == "enrol"
            and envelope.data["type"] == REGISTRAR
            and envelope.data["subject"] == envelope.signer
            and envelope.signer == self.store.get_meta("registrar")
        )

    def prefixes_of(self, party_id: int) -> set[str]:
        if party_id not in self._prefixes:
            self._prefixes[party_id] = set(self.store.prefixes(party_id))
        return self._prefixes[party_id]

    def set_recalled_cache(self, lot_ids: Iterable[int], recalled: bool) -> None:
        for lot_id in lot_ids:
            cached = self.lots_by_id.get(lot_id)
            if cached is not None:
                cached.recalled = recalled

    def set_held_cache(self, lot_ids: Iterable[int], held: bool) -> None:
        for lot_id in lot_ids:
            cached = self.lots_by_id.get(lot_id)
            if cached is not None:
                cached.held = held

    # --- reads used by adapters

    def next_seq(self, did: str) -> int:
        identity = self.store.identity_by_did(did)
        if identity is None:
            return 0
        highest = self.store.max_seq(identity.id)
        return 0 if highest is None else highest + 1


class _Abort(Exception):
    pass


def _rejected(reason: str, message: str, envelope: Envelope | None = None) -> Appended:
    return Appended(
        "rejected", None if envelope is None else envelope.event_id, None, reason, message
    )
