"""The ledger: the single door for writes.

`Ledger.append(envelopes)` checks each envelope (structure, signature, known
and unrevoked signer, replay, authorisation for its kind), then, for the whole
batch in one SQLite transaction, files every accepted event into the chains
of its lots, appends it to the Merkle log, and signs a checkpoint covering the
result. It is idempotent: the same event again is reported as a duplicate and
changes nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core import chain as chains
from provenance.core import gs1
from provenance.core.checkpoint import Checkpoint, sign_checkpoint
from provenance.core.envelope import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    NotAnEnvelope,
    plain,
    too_large,
    verify_signatures,
)
from provenance.core.errors import ProvenanceError, RejectedEvent, ValidationError
from provenance.core.heads import SortedHeads
from provenance.core.identity import COMMISSIONING_ROLES, OVERSIGHT_ROLES
from provenance.core.jcs import parse_json
from provenance.core.kinds import (
    KIND_NAMES,
    PREFIXES_FIELD,
    RECALL_RETURN,
    REGISTRAR,
    SIGNER_ROLES,
    company_prefix_digits,
    epcis_stream,
    prefix_chain,
    under_prefix,
)
from provenance.core.merkle import Frontier, decompose
from provenance.core.timefmt import format_time, now_micros, parse_time
from provenance.ledger.rejects import (
    MAX_AGGREGATE_RAW,
    MAX_PER_MESSAGE,
    SOURCE_BURST,
    SOURCE_ROWS_PER_MINUTE,
    Refusal,
    RejectBudget,
)
from provenance.store.db import Store, StoreError, leaf_for
from provenance.store.migrations import ACCESS_RULES_FROM, RECALL_RULES_FROM, TIME_RULES_FROM
from provenance.store.rows import Identity, Lot
from provenance.store.state import MAX_REJECT_RAW

log = logging.getLogger(__name__)

MAX_FUTURE_US = 5 * 60 * 1_000_000  # clock skew we tolerate on `time`
PARALLEL_VERIFY_MIN = 64  # below this, threads cost more than they save
VERIFY_CHUNK = 50  # envelopes per verification task
GIL_SWITCH_INTERVAL_S = 0.0001  # while verification threads run (measured: docs/performance.md)

_AGGREGATE_DETAIL = (
    "{reason}: more refusals from this source than are stored one by one (the first "
    f"{MAX_PER_MESSAGE} of a message; a source's {SOURCE_BURST}, then "
    f"{SOURCE_ROWS_PER_MINUTE} a minute); this row counts them (`count`). First: {{first}}"
)

# Reject reasons (stable codes; docs/protocol.md lists them).
MALFORMED = "malformed"
SCHEMA = "schema"
BAD_SIGNATURE = "bad-signature"
UNKNOWN_SIGNER = "unknown-signer"
REVOKED = "revoked"
FUTURE_TIME = "future-time"
REPLAY = "replay"
UNAUTHORISED = "unauthorised"
UNKNOWN_LOT = "unknown-lot"
UNKNOWN_PARTY = "unknown-party"
UNKNOWN_DEVICE = "unknown-device"
NOT_CUSTODIAN = "not-custodian"
NOT_ATTACHED = "not-attached"
LOT_EXISTS = "lot-exists"
CONFLICT = "conflict"
RECALLED = "recalled"
HELD = "held"
BEFORE_COMMISSION = "before-commission"
OUT_OF_ORDER = "out-of-order"


@dataclass
class Appended:
    """What happened to one envelope: accepted, duplicate (already in the
    ledger, nothing changed), rejected (with reason) or aborted (valid, but an
    atomic batch it was in was refused)."""

    status: str
    event_id: str | None = None
    index: int | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("accepted", "duplicate")


@dataclass
class _Batch:
    """Work buffered during one append transaction."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    links: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    seqs: dict[tuple[int, int], bytes] = field(default_factory=dict)
    ids: dict[bytes, int] = field(default_factory=dict)
    moved: set[int] = field(default_factory=set)
    recalls: dict[int, Envelope] = field(default_factory=dict)  # recalls not yet flushed
    holds: dict[int, Envelope] = field(default_factory=dict)  # holds not yet flushed


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
        self._seen_version = -1
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

    # --- caches (rebuilt whenever another connection has written)

    def _load(self) -> None:
        store = self.store
        size = store.log_size()
        hashes = [store.subtree_hash(level, index) for level, index in decompose(0, size)]
        self._frontier = Frontier.from_subtrees(size, hashes)
        self._heads: list[list[Any]] = []  # [subject, head, length] by chain id - 1
        for chain_id, subject, head, length in store.chains():
            if chain_id != len(self._heads) + 1:
                raise StoreError(f"chain ids are not dense at {chain_id}: run `provenance verify`")
            self._heads.append([subject, head, length])
        self._heads_tree = SortedHeads.of((s, n, h) for s, h, n in self._heads)
        self._identities: dict[str, Identity | None] = {}
        self._identities_by_id: dict[int, Identity] = {}
        self._lots: dict[str, Lot | None] = {}
        self._lots_by_id: dict[int, Lot] = {}
        self._rules_from = int(store.get_meta(RECALL_RULES_FROM) or 0)
        # Who may sign about a lot, and GS1 prefixes, apply from this log index.
        self._access_from = int(store.get_meta(ACCESS_RULES_FROM) or 0)
        self._prefixes: dict[int, set[str]] = {}  # party id -> GS1 company prefixes
        self._time_rules_from = int(store.get_meta(TIME_RULES_FROM) or 0)
        self._born: dict[int, int] = {}  # lot id -> time of its commission (or making), µs
        self._attachments: dict[int, list[list[Any]]] = {}
        self._max_seq: dict[int, int] = {}
        self._streams: dict[str, int] = {}  # EPCIS stream chain subject -> chain id
        self._seen_version = store.data_version()
        self._loaded = True

    def _sync(self) -> None:
        if not self._loaded or self.store.data_version() != self._seen_version:
            self._load()

    def _forget(self) -> None:
        self._loaded = False

    def identity(self, did: str) -> Identity | None:
        if did not in self._identities:
            found = self.store.identity_by_did(did)
            self._identities[did] = found
            if found:
                self._identities_by_id[found.id] = found
        return self._identities[did]

    def lot(self, uri: str) -> Lot | None:
        if uri not in self._lots:
            found = self._lots[uri] = self.store.lot_by_uri(uri)
            if found is not None:
                self._lots_by_id[found.id] = found
        return self._lots[uri]

    def _highest_seq(self, signer_id: int) -> int:
        highest = self._max_seq.get(signer_id)
        if highest is None:
            stored = self.store.max_seq(signer_id)
            highest = self._max_seq[signer_id] = -1 if stored is None else stored
        return highest

    def _attachments_of(self, device_id: int) -> list[list[Any]]:
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
    ) -> list[Appended]:
        """Append envelopes; one result per item, in order.

        With ``atomic=True`` nothing is stored unless every envelope is accepted
        or a duplicate. Rejections are recorded in the store's reject log with
        *source* (e.g. the MQTT topic), or per item with *sources*; *messages*
        says which message each item came in (default: all in one), for the
        per-message bound on stored rejects (provenance/ledger/rejects.py).

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
        chunks: list[_Verification] = []
        parsed: list[tuple[int, Envelope]] = []
        for item in raws:
            envelope, failure = _parse(item)
            if failure:
                results.append(failure)
                continue
            assert envelope is not None
            results.append(Appended("pending", envelope.event_id))
            parsed.append((len(results) - 1, envelope))
            if len(parsed) == VERIFY_CHUNK:  # verify while we go on parsing
                chunks.append(_Verification(parsed, pool))
                parsed = []
        if parsed:
            chunks.append(_Verification(parsed, pool))
        if atomic and any(r.status == "rejected" for r in results):
            chunks = []
        if chunks:
            self._commit(chunks, results, atomic)
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

    def _commit(self, chunks: list[_Verification], results: list[Appended], atomic: bool) -> None:
        now = self.clock()
        try:
            with self.store.transaction():
                self._sync()
                batch = _Batch()
                for chunk in chunks:
                    for (position, envelope), failure in zip(
                        chunk.items, chunk.failures(), strict=True
                    ):
                        try:
                            if failure is not None:
                                raise RejectedEvent(BAD_SIGNATURE, failure)
                            results[position] = self._apply(envelope, batch, now)
                        except RejectedEvent as exc:
                            results[position] = _rejected(exc.reason, exc.args[0], envelope)
                            if atomic:
                                raise _Abort from None
                if batch.events:
                    self._flush(batch)
        except _Abort:
            self._forget()
        except BaseException:
            self._forget()
            raise

    def _record_rejects(
        self,
        results: list[Appended],
        raws: list[Any],
        sources: Sequence[str | None],
        messages: Sequence[int] | None = None,
    ) -> None:
        """Record the refusals: each counted, the first ones of a message and
        of a source stored one by one, the rest added to an aggregate row per
        source and reason (provenance/ledger/rejects.py)."""
        rejected = [
            (position, result)
            for position, result in enumerate(results)
            if result.status == "rejected"
        ]
        if not rejected:
            return
        now = self.clock()
        at = format_time(now)
        budget = self.reject_budget
        plan = budget.plan(
            [
                Refusal(0 if messages is None else messages[p], sources[p], r.reason or "")
                for p, r in rejected
            ],
            now,
        )
        try:
            with self.store.transaction():
                for index in plan.stored:
                    position, result = rejected[index]
                    self.store.insert_reject(
                        at,
                        result.reason or "",
                        result.message or "",
                        sources[position],
                        result.event_id,
                        _raw_bytes(raws[position]),
                    )
                for counted in plan.counted:
                    if counted.row is not None and self.store.count_rejects(
                        counted.row, counted.count, at
                    ):
                        continue
                    position, first = rejected[counted.first]
                    row = self.store.insert_reject(
                        at,
                        counted.reason,
                        _AGGREGATE_DETAIL.format(reason=counted.reason, first=first.message or ""),
                        counted.source,
                        None,
                        (_raw_bytes(raws[position]) or b"")[:MAX_AGGREGATE_RAW],
                        count=counted.count,
                    )
                    budget.opened(counted.source, counted.reason, row, now)
        except BaseException:
            budget.forget()
            raise

    # --- one envelope

    def _apply(self, envelope: Envelope, batch: _Batch, now: int) -> Appended:
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
        earlier = batch.seqs.get(key)
        highest = self._highest_seq(signer_id) if signer is not None else -1
        if earlier is None and envelope.seq <= highest:  # only then can the seq be in use
            stored = self.store.event_by_seq(signer_id, envelope.seq)
            if stored is not None:
                earlier = stored.envelope.id_bytes
                if earlier == event_id:
                    return Appended("duplicate", envelope.event_id, stored.index)
        if earlier is not None:
            if earlier == event_id:
                return Appended("duplicate", envelope.event_id, batch.ids[event_id])
            raise RejectedEvent(
                REPLAY,
                f"seq {envelope.seq} of {envelope.signer} was already used by event "
                f"{earlier.hex()}: each event needs a new seq",
            )

        index = self._frontier.size
        handler = getattr(self, "_on_" + envelope.kind.replace("-", "_"))
        filed: list[int] = handler(envelope, signer, index, batch)
        if signer is None:  # genesis: the registrar's identity now exists
            signer_id = self.identity(envelope.signer).id  # type: ignore[union-attr]

        leaf = leaf_for(envelope)
        batch.nodes.extend(self._frontier.append(leaf))
        batch_ids = (
            None if envelope.batches is None else [self.lot(uri).id for uri in envelope.batches]  # type: ignore[union-attr]
        )
        batch.events.append(
            Store.event_row(
                index, envelope, signer_id, batch_ids, None if filed == batch_ids else filed, leaf
            )
        )
        for chain_id in filed:
            entry = self._heads[chain_id - 1]
            entry[1] = chains.next_link(entry[1], event_id)
            batch.links.append((chain_id, entry[2], index, entry[1]))
            entry[2] += 1
            batch.moved.add(chain_id)
        batch.seqs[key] = event_id
        batch.ids[event_id] = index
        if envelope.seq > highest:
            self._max_seq[signer_id] = envelope.seq
        return Appended("accepted", envelope.event_id, index)

    def _flush(self, batch: _Batch) -> None:
        store = self.store
        store.insert_events(batch.events)
        store.insert_links(batch.links)
        store.insert_nodes(batch.nodes)
        moved = sorted(batch.moved)
        store.update_chains([(self._heads[i - 1][1], self._heads[i - 1][2], i) for i in moved])
        # The heads tree holds chains 1..size; add the chains made since, then the moved.
        for chain_id in [*range(self._heads_tree.size + 1, len(self._heads) + 1), *moved]:
            subject, head, length = self._heads[chain_id - 1]
            self._heads_tree.put(subject, length, head)
        store.insert_checkpoint(self._frontier.size, self._sign_checkpoint())

    def _sign_checkpoint(self) -> str:
        checkpoint = Checkpoint(
            origin=self.origin,
            size=self._frontier.size,
            root_hash=self._frontier.root(),
            extensions=(self._heads_tree.line().to_text(),),
        )
        return sign_checkpoint(checkpoint, self.origin, self.log_key)

    def _new_chain(self, subject: str) -> int:
        chain_id = len(self._heads) + 1
        head = chains.genesis_link(subject)
        self.store.insert_chain(chain_id, subject, head)
        self._heads.append([subject, head, 0])
        return chain_id

    # --- rules per kind: check everything first, then change state

    def _is_genesis(self, envelope: Envelope) -> bool:
        return (
            self._frontier.size == 0
            and envelope.kind == "enrol"
            and envelope.data["type"] == REGISTRAR
            and envelope.data["subject"] == envelope.signer
            and envelope.signer == self.store.get_meta("registrar")
        )

    def _on_enrol(
        self, env: Envelope, signer: Identity | None, index: int, _b: _Batch
    ) -> list[int]:
        data = env.data
        subject, kind, name = data["subject"], data["type"], data["name"]
        if kind == REGISTRAR and signer is not None:
            raise RejectedEvent(UNAUTHORISED, "there is one registrar, enrolled at init")
        if self.identity(subject) is not None:
            raise RejectedEvent(CONFLICT, f"{subject} is already enrolled")
        if self.store.identity_by_name(kind, name) is not None:
            raise RejectedEvent(CONFLICT, f"a {kind} named {name!r} is already enrolled")
        owner = None
        if kind == "device":
            owner_identity = self.identity(data["owner"])
            if owner_identity is None or owner_identity.type != "party":
                raise RejectedEvent(
                    UNKNOWN_PARTY, f"owner {data['owner']} is not an enrolled party"
                )
            owner = owner_identity.id
        chain_id = self._new_chain(subject)
        identity = Identity(chain_id, subject, kind, name, data.get("role"), owner, index)
        self.store.insert_identity(identity)
        self._identities[subject] = identity
        self._identities_by_id[chain_id] = identity
        if PREFIXES_FIELD in data:
            self.store.record_prefixes(chain_id, data[PREFIXES_FIELD], index)
            self._prefixes_of(chain_id).update(data[PREFIXES_FIELD])
        return [chain_id]

    def _prefixes_of(self, party_id: int) -> set[str]:
        if party_id not in self._prefixes:
            self._prefixes[party_id] = set(self.store.prefixes(party_id))
        return self._prefixes[party_id]

    def _on_grant(self, env: Envelope, _s: Identity | None, index: int, _b: _Batch) -> list[int]:
        """More GS1 company prefixes for a party that commissions lots. Filed
        under the party's prefix chain `{did}#gs1`, made on first use, so that
        its identity chain stays enrolments and revocations (docs/protocol.md §5)."""
        subject = self._party(env.data["subject"])
        if subject.role not in COMMISSIONING_ROLES:
            raise RejectedEvent(
                CONFLICT,
                f"{subject.name} is a {subject.role}: only producers and processors commission "
                "lots, so only they hold GS1 company prefixes",
            )
        if subject.revoked_from is not None:
            raise RejectedEvent(REVOKED, f"{subject.name} is revoked from {subject.revoked_from}")
        held = self._prefixes_of(subject.id)
        new = [prefix for prefix in env.data[PREFIXES_FIELD] if prefix not in held]
        if not new:
            raise RejectedEvent(
                CONFLICT, f"{subject.name} already holds every prefix this grant names"
            )
        self.store.record_prefixes(subject.id, new, index)
        held.update(new)
        chain_subject = prefix_chain(subject.did)
        found = self.store.chain_by_subject(chain_subject)
        return [found[0] if found else self._new_chain(chain_subject)]

    def _may_commission(self, signer: Identity, gtin14: str, uri: str, index: int) -> None:
        """A party commissions lots only under the GS1 company prefixes it was
        enrolled or granted with (from `access_rules_from` on)."""
        if index < self._access_from:
            return
        prefixes = self._prefixes_of(signer.id)
        if under_prefix(gtin14, prefixes):
            return
        digits = company_prefix_digits(gtin14)
        guess = digits[:7]  # the GTIN does not say how long its company prefix is
        held = ", ".join(sorted(prefixes)) or "none"
        raise RejectedEvent(
            UNAUTHORISED,
            f"{signer.name} may not commission {uri}: GTIN {gtin14} is not under a GS1 company "
            f"prefix granted to {signer.name} (granted: {held}). If the brand is yours, ask the "
            f"registrar to grant prefix {guess} (or the one GS1 issued you: the first 6 to 12 "
            f"of the digits {digits}): provenance party grant "
            f'"{signer.name}" --prefix {guess}',
        )

    def _may_sign_about(self, env: Envelope, signer: Identity | None, lots: Sequence[Lot]) -> None:
        """Inspections and EPCIS records about a lot come from the parties that
        hold or held it, accredited inspectors and regulators; having signed
        something about a lot grants nothing (docs/protocol.md §3)."""
        assert signer is not None
        if signer.role in OVERSIGHT_ROLES:
            return
        for lot in lots:
            if lot.custodian != signer.id and not self.store.held_by(lot.id, signer.id):
                raise RejectedEvent(
                    NOT_CUSTODIAN,
                    f"{signer.name} ({signer.role}) never held {lot.uri}: only its custodians "
                    f"past and present, inspectors and regulators may sign {env.kind} events "
                    "about it (an accredited lab or inspector is enrolled with role inspector)",
                )

    def _on_revoke(self, env: Envelope, _s: Identity | None, index: int, _b: _Batch) -> list[int]:
        from provenance.core.timefmt import parse_time

        subject = self.identity(env.data["subject"])
        if subject is None:
            raise RejectedEvent(UNKNOWN_SIGNER, f"{env.data['subject']} is not enrolled")
        if subject.type == REGISTRAR:
            raise RejectedEvent(UNAUTHORISED, "the registrar cannot revoke itself")
        if subject.revoked_from is not None:
            raise RejectedEvent(
                CONFLICT, f"{subject.name} is already revoked from {subject.revoked_from}"
            )
        subject.revoked_from = env.data["from"]
        subject.revoked_from_us = parse_time(subject.revoked_from)
        self.store.revoke_identity(subject.id, subject.revoked_from, index)
        return [subject.id]

    def _lots_of(self, env: Envelope) -> list[Lot]:
        found = []
        for uri in env.batches or ():
            lot = self.lot(uri)
            if lot is None:
                raise RejectedEvent(UNKNOWN_LOT, f"{uri} is not registered: commission it first")
            found.append(lot)
        return found

    def _custodian_of(self, env: Envelope, signer: Identity | None, lots: Sequence[Lot]) -> None:
        assert signer is not None
        for lot in lots:
            if lot.custodian != signer.id:
                holder = self._identities_by_id.get(lot.custodian) or self.store.identity_by_id(
                    lot.custodian
                )
                raise RejectedEvent(
                    NOT_CUSTODIAN,
                    f"{signer.name} does not hold {lot.uri} (custodian: "
                    f"{holder.name if holder else lot.custodian}); "
                    f"only the custodian may {env.kind}",
                )

    def _create_lot(
        self, uri: str, product: str, data: dict[str, Any], signer: Identity, index: int
    ) -> Lot:
        gtin, lot_code = gs1.parse_lot_uri(uri)
        chain_id = self._new_chain(uri)
        lot = Lot(
            chain_id,
            uri,
            gtin,
            lot_code,
            product,
            data.get("category"),
            data.get("expiry"),
            data.get("profile"),
            signer.id,
            signer.id,
            index,
            False,
        )
        self.store.insert_lot(lot)
        self._lots[uri] = lot
        self._lots_by_id[lot.id] = lot
        return lot

    def _on_commission(
        self, env: Envelope, signer: Identity | None, index: int, _b: _Batch
    ) -> list[int]:
        assert signer is not None and env.batches is not None
        uri = env.batches[0]
        if self.lot(uri) is not None:
            raise RejectedEvent(LOT_EXISTS, f"{uri} is already commissioned")
        self._may_commission(signer, gs1.parse_lot_uri(uri)[0], uri, index)
        lot = self._create_lot(uri, env.data["product"], env.data, signer, index)
        self.store.record_commission(lot.id, env.data)
        return [lot.id]

    def _on_reading(
        self, env: Envelope, signer: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        """Filed under the lots the device is attached to at `time` (or the named
        ones, which it must be attached to then) that existed then: a reading
        dated before a lot's commissioning is not about that lot. Readings are
        checked by their own `time`, whenever they arrive (store-and-forward)."""
        assert signer is not None
        attached = {
            lot_id
            for lot_id, start, until, _ in self._attachments_of(signer.id)
            if start <= env.time_us and (until is None or env.time_us < until)
        }
        if env.batches is None:
            if not attached:
                raise RejectedEvent(
                    NOT_ATTACHED,
                    f"device {signer.name} is attached to no lot at {env.time}: attach it first "
                    "or name the lots in batches",
                )
            if index < self._time_rules_from:
                return sorted(attached)
            existing = [i for i in attached if self._born_us_of(i, batch) <= env.time_us]
            if not existing:
                self._not_before_birth(env, [self._lot_by_id(i) for i in sorted(attached)], batch)
            return sorted(existing)
        lots = self._lots_of(env)
        if index >= self._time_rules_from:
            self._not_before_birth(env, lots, batch)
        for lot in lots:
            if lot.id not in attached:
                raise RejectedEvent(
                    NOT_ATTACHED, f"device {signer.name} is not attached to {lot.uri} at {env.time}"
                )
        return [lot.id for lot in lots]

    # --- the time rules of a lot (docs/protocol.md §3.1)

    def _time_at(self, index: int, batch: _Batch) -> int:
        """`time` (µs) of the event at log *index*, in this batch or stored."""
        if batch.events and index >= batch.events[0][0]:  # rows are in index order
            for row in reversed(batch.events):
                if row[0] == index:
                    return parse_time(row[4])
        stored = self.store.event_at(index)
        assert stored is not None, f"no event at log index {index}"
        return stored.envelope.time_us

    def _lot_by_id(self, lot_id: int) -> Lot:
        lot = self._lots_by_id.get(lot_id) or self.store.lot_by_id(lot_id)
        assert lot is not None, f"no lot {lot_id}"
        return lot

    def _born_us_of(self, lot_id: int, batch: _Batch) -> int:
        """When the lot came to be: the `time` of its commission, or of the
        transform that made it. Never changes, so it is kept."""
        born = self._born.get(lot_id)
        if born is None:
            lot = self._lot_by_id(lot_id)
            born = self._born[lot_id] = self._time_at(lot.origin_event, batch)
        return born

    def _not_before_birth(self, env: Envelope, lots: Sequence[Lot], batch: _Batch) -> None:
        """Refuse an event about a lot dated before the lot existed."""
        for lot in lots:
            born = self._born_us_of(lot.id, batch)
            if env.time_us < born:
                if self._kind_at(lot.origin_event, batch) == "transform":
                    how, fix = "was made by a transform", "date the transform when it happened"
                else:
                    how = "was commissioned"
                    fix = (
                        "date its commissioning at the real production time "
                        "(`provenance batch register --produced`, or Produced in the portal)"
                    )
                raise RejectedEvent(
                    BEFORE_COMMISSION,
                    f"{env.kind} at {env.time} is dated before {lot.uri} {how} "
                    f"({format_time(born)}): nothing happens to a lot before it exists. If the "
                    f"lot existed earlier, {fix}; else check the signer's clock",
                )

    def _within_custody(
        self, env: Envelope, signer: Identity | None, lots: Sequence[Lot], index: int, batch: _Batch
    ) -> None:
        """The holder's events about its lots (ship, attach, detach, dispense,
        transform) are dated at or after it got them: the lot's commission or
        making, or the receive that made the signer its custodian. So a lot's
        handoffs are in time order in its chain. From the time-rules index on."""
        if index < self._time_rules_from:
            return
        self._not_before_birth(env, lots, batch)
        for lot in lots:
            received = self.store.last_receive_of(lot.id)
            if received is None:
                continue  # held since its making, checked above
            since = self._time_at(received, batch)
            if env.time_us < since:
                who = signer.name if signer is not None else env.signer
                raise RejectedEvent(
                    OUT_OF_ORDER,
                    f"{env.kind} at {env.time} is dated before {who} received {lot.uri} "
                    f"({format_time(since)}): a holder's events about a lot come after the "
                    "handoff that made it the holder; check the signer's clock",
                )

    def _device(self, did: str) -> Identity:
        device = self.identity(did)
        if device is None or device.type != "device":
            raise RejectedEvent(UNKNOWN_DEVICE, f"{did} is not an enrolled device")
        return device

    def _on_attach(
        self, env: Envelope, signer: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        lots = self._lots_of(env)
        self._custodian_of(env, signer, lots)
        device = self._device(env.data["device"])
        if device.revoked_from is not None:
            raise RejectedEvent(REVOKED, f"device {device.name} is revoked")
        attachments = self._attachments_of(device.id)
        open_lots = {row[0] for row in attachments if row[2] is None}
        for lot in lots:
            if lot.id in open_lots:
                raise RejectedEvent(
                    CONFLICT, f"device {device.name} is already attached to {lot.uri}"
                )
        self._within_custody(env, signer, lots, index, batch)
        for lot in lots:
            row_id = self.store.insert_attachment(device.id, lot.id, env.time_us, index)
            attachments.append([lot.id, env.time_us, None, row_id])
        return [lot.id for lot in lots]

    def _on_detach(
        self, env: Envelope, signer: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        lots = self._lots_of(env)
        self._custodian_of(env, signer, lots)
        device = self._device(env.data["device"])
        attachments = self._attachments_of(device.id)
        rows = []
        for lot in lots:
            row = next((r for r in attachments if r[0] == lot.id and r[2] is None), None)
            if row is None:
                raise RejectedEvent(
                    NOT_ATTACHED, f"device {device.name} is not attached to {lot.uri}"
                )
            if env.time_us < row[1]:
                raise RejectedEvent(
                    CONFLICT,
                    f"detach at {env.time} is before the attach ({format_time(row[1])}): "
                    "check the signer's clock",
                )
            rows.append(row)
        self._within_custody(env, signer, lots, index, batch)
        for row in rows:
            row[2] = env.time_us
            self.store.close_attachment(row[3], env.time_us, index)
        return [lot.id for lot in lots]

    def _party(self, did: str) -> Identity:
        party = self.identity(did)
        if party is None or party.type != "party":
            raise RejectedEvent(UNKNOWN_PARTY, f"{did} is not an enrolled party")
        return party

    def _on_ship(
        self, env: Envelope, signer: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        assert signer is not None
        lots = self._lots_of(env)
        self._custodian_of(env, signer, lots)
        if env.data.get("purpose") == RECALL_RETURN:
            # Moving a recalled lot back (to its maker, or for destruction) is
            # what a recall asks for; the movement is recorded like any other.
            self._only_recalled(lots)
        else:
            back = f' (or shipped back with "purpose": "{RECALL_RETURN}")'
            self._not_recalled(lots, index, batch, "shipped", hint=back)
            self._not_held(lots, batch, "shipped")
        receiver = self._party(env.data["to"])
        if receiver.id == signer.id:
            raise RejectedEvent(CONFLICT, "a shipment goes to another party")
        if receiver.revoked_from is not None:
            raise RejectedEvent(REVOKED, f"receiver {receiver.name} is revoked")
        for lot in lots:
            if self.store.open_shipment_for(lot.id) is not None:
                raise RejectedEvent(CONFLICT, f"{lot.uri} is already in transit: receive it first")
        self._within_custody(env, signer, lots, index, batch)
        self.store.insert_shipment(index, signer.id, receiver.id, [lot.id for lot in lots])
        self.store.record_location([lot.id for lot in lots], env.data.get("location"))
        return [lot.id for lot in lots]

    def _on_receive(
        self, env: Envelope, signer: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        assert signer is not None
        shipment_id = bytes.fromhex(env.data["shipment"])
        ship_index = batch.ids.get(shipment_id)
        if ship_index is None:
            stored = self.store.find_event(shipment_id)
            ship_index = None if stored is None else stored.index
        shipment = None if ship_index is None else self.store.shipment(ship_index)
        if shipment is None:
            raise RejectedEvent(UNKNOWN_LOT, f"no shipment {env.data['shipment']} in the ledger")
        _sender, receiver, lot_ids, received = shipment
        if received is not None:
            raise RejectedEvent(CONFLICT, "that shipment was already received")
        if receiver != signer.id:
            raise RejectedEvent(
                UNAUTHORISED, "only the party the shipment was sent to may receive it"
            )
        lots = self._lots_of(env)
        if sorted(lot.id for lot in lots) != sorted(lot_ids):
            raise RejectedEvent(SCHEMA, "batches must list exactly the lots of the shipment")
        if index >= self._time_rules_from:
            self._not_before_birth(env, lots, batch)
            shipped = self._time_at(ship_index, batch)
            if env.time_us < shipped:
                raise RejectedEvent(
                    OUT_OF_ORDER,
                    f"receive at {env.time} is dated before its shipment was sent "
                    f"({format_time(shipped)}): a lot is received after it is shipped; "
                    "check the receiver's clock",
                )
        for lot in lots:
            lot.custodian = signer.id
            self.store.set_custodian(lot.id, signer.id)
        self.store.close_shipment(ship_index, index)
        self.store.record_location([lot.id for lot in lots], env.data.get("location"))
        return [lot.id for lot in lots]

    def _on_transform(
        self, env: Envelope, signer: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        assert signer is not None and env.batches is not None
        inputs = []
        for item in env.data["inputs"]:
            lot = self.lot(item["batch"])
            if lot is None:
                raise RejectedEvent(UNKNOWN_LOT, f"input {item['batch']} is not registered")
            inputs.append(lot)
        self._custodian_of(env, signer, inputs)
        self._not_recalled(inputs, index, batch, "transformed")
        self._not_held(inputs, batch, "transformed")
        self._within_custody(env, signer, inputs, index, batch)
        to_create = []
        for position, item in enumerate(env.data["outputs"]):
            lot = self.lot(item["batch"])
            if lot is None:
                if "product" not in item:
                    raise RejectedEvent(
                        SCHEMA, f"data.outputs[{position}].product is required for a new lot"
                    )
                self._may_commission(
                    signer, gs1.parse_lot_uri(item["batch"])[0], item["batch"], index
                )
                to_create.append(item)
            else:
                self._not_recalled([lot], index, batch, "made into a transform output")
                self._not_held([lot], batch, "made into a transform output")
                if (
                    lot.commissioned_by != signer.id
                    or lot.custodian != signer.id
                    or self._heads[lot.id - 1][2] != 1
                    # its one event must be its commission, not the transform that made it
                    or self._kind_at(lot.origin_event, batch) != "commission"
                ):
                    raise RejectedEvent(
                        LOT_EXISTS,
                        f"output {lot.uri} already exists; an output must be new or just "
                        "commissioned by the same party",
                    )
                if index >= self._time_rules_from:
                    self._not_before_birth(env, [lot], batch)
        for item in to_create:
            self._create_lot(item["batch"], item["product"], item, signer, index)
        ids = {uri: self.lot(uri).id for uri in env.batches}  # type: ignore[union-attr]
        # Lineage edges in this transaction: a recall later in the batch cascades.
        # An output is new or has only its commission, so it has no descendants:
        # no edge can close a cycle.
        self.store.record_transform(index, env.data, ids)
        return list(ids.values())

    def _kind_at(self, index: int, batch: _Batch) -> str | None:
        """Kind of the event at log *index*, in this batch or already stored."""
        for row in reversed(batch.events):  # rows are in index order
            if row[0] == index:
                return KIND_NAMES[row[1]]
            if row[0] < index:
                break
        return self.store.event_kind(index)

    def _on_inspect(
        self, env: Envelope, signer: Identity | None, index: int, _b: _Batch
    ) -> list[int]:
        lots = self._lots_of(env)
        if index >= self._access_from:
            self._may_sign_about(env, signer, lots)
        return [lot.id for lot in lots]

    def _on_recall(
        self, env: Envelope, _s: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        """Recall the named lots and, in the same transaction, every lot made
        from them (transitively); each affected lot records which named lot
        its recall comes from. Filed under every affected lot's chain, so each
        one's history and proof bundle carry the recall (docs/lineage.md)."""
        lots = self._lots_of(env)
        affected = self.store.record_recall(index, [lot.id for lot in lots])
        self._set_recalled_cache(affected, True)
        batch.recalls[index] = env
        return affected if index >= self._rules_from else [lot.id for lot in lots]

    def _on_recall_lift(
        self, env: Envelope, _s: Identity | None, index: int, _b: _Batch
    ) -> list[int]:
        """End the recalls the named lots are the source of, here and downstream.
        A lot recalled only through an ancestor is lifted by lifting that ancestor."""
        lots = self._lots_of(env)
        for lot in lots:
            active = self.store.active_recalls(lot.id)
            if not any(source == lot.id for source, _ in active):
                if not active:
                    raise RejectedEvent(CONFLICT, f"{lot.uri} is not recalled")
                sources = ", ".join(dict.fromkeys(self.store.subject(s) for s, _ in active))
                raise RejectedEvent(
                    CONFLICT,
                    f"{lot.uri} is recalled only through {sources}: lift the recall of that lot",
                )
        affected = self.store.record_lift(index, [lot.id for lot in lots])
        still = {
            lot_id
            for lot_id in affected
            if self.store.active_recalls(lot_id)  # recalled through another source too
        }
        self._set_recalled_cache([lot_id for lot_id in affected if lot_id not in still], False)
        return affected if index >= self._rules_from else [lot.id for lot in lots]

    def _set_recalled_cache(self, lot_ids: Iterable[int], recalled: bool) -> None:
        for lot_id in lot_ids:
            cached = self._lots_by_id.get(lot_id)
            if cached is not None:
                cached.recalled = recalled

    def _not_recalled(
        self, lots: Sequence[Lot], index: int, batch: _Batch, verb: str, hint: str = ""
    ) -> None:
        """Refuse to act on a recalled lot, naming the recall (regulator, reason,
        event, source lot). Applies from the log index the recall rules came in."""
        if index < self._rules_from:
            return
        for lot in lots:
            if lot.recalled:
                raise RejectedEvent(RECALLED, self._recall_message(lot, batch, verb) + hint)

    def _only_recalled(self, lots: Sequence[Lot]) -> None:
        """A recall return ships recalled lots only."""
        for lot in lots:
            if not lot.recalled:
                raise RejectedEvent(
                    CONFLICT,
                    f"{lot.uri} is not recalled: a shipment with purpose "
                    f"{RECALL_RETURN!r} carries recalled lots only; ship it without "
                    "a purpose",
                )

    def _recall_message(self, lot: Lot, batch: _Batch, verb: str) -> str:
        active = self.store.active_recalls(lot.id)
        if not active:  # pragma: no cover - the recalls table always backs the flag
            return f"{lot.uri} is recalled; it cannot be {verb} until the recall is lifted"
        source, event_index = active[0]
        envelope, who = self._decision(event_index, batch.recalls)
        through = "" if source == lot.id else f" through {self.store.subject(source)}"
        more = f" (and {len(active) - 1} more active recalls)" if len(active) > 1 else ""
        data = envelope.data
        return (
            f"{lot.uri} is recalled{through}: class {data.get('class')} recall by {who}, "
            f"event {envelope.event_id}, reason: {data.get('reason')}{more}; it cannot be "
            f"{verb} until the recall is lifted"
        )

    def _decision(self, event_index: int, pending: dict[int, Envelope]) -> tuple[Envelope, str]:
        """The recall or hold event at *event_index* (from this batch or the
        store) and the name of who signed it."""
        envelope = pending.get(event_index)
        if envelope is None:
            stored = self.store.event_at(event_index)
            assert stored is not None
            envelope = stored.envelope
        signer = self.identity(envelope.signer)
        return envelope, signer.name if signer else envelope.signer

    # --- holds, releases and flags: the rules key's decisions (docs/rules.md)

    def _on_hold(self, env: Envelope, _s: Identity | None, index: int, batch: _Batch) -> list[int]:
        """Hold the named lots for `data.rule` until a release: they cannot be
        shipped, transformed or dispensed meanwhile. One hold in force per lot
        and rule; a hold does not cascade to lots made from the lot earlier."""
        lots = self._lots_of(env)
        rule = env.data["rule"]
        for lot in lots:
            if any(held_rule == rule for _, held_rule in self.store.active_holds(lot.id)):
                raise RejectedEvent(
                    CONFLICT, f"{lot.uri} is already on hold by rule {rule}: release it first"
                )
        ids = [lot.id for lot in lots]
        self.store.record_hold(index, ids, rule)
        self._set_held_cache(ids, True)
        batch.holds[index] = env
        return ids

    def _on_release(
        self, env: Envelope, _s: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        """End the hold `data.hold` names on the named lots, or every hold in force
        on them; a lot stays held while another hold remains."""
        lots = self._lots_of(env)
        hold_index = None
        if "hold" in env.data:
            hold_id = bytes.fromhex(env.data["hold"])
            hold_index = batch.ids.get(hold_id)
            if hold_index is None:
                stored = self.store.find_event(hold_id)
                hold_index = None if stored is None else stored.index
            if hold_index is None or self._kind_at(hold_index, batch) != "hold":
                raise RejectedEvent(CONFLICT, f"no hold {env.data['hold']} in the ledger")
        for lot in lots:
            active = [event for event, _ in self.store.active_holds(lot.id)]
            if not active:
                raise RejectedEvent(CONFLICT, f"{lot.uri} is not on hold")
            if hold_index is not None and hold_index not in active:
                raise RejectedEvent(
                    CONFLICT, f"hold {env.data['hold']} is not in force on {lot.uri}"
                )
        ids = [lot.id for lot in lots]
        self.store.record_release(index, ids, hold_index)
        self._set_held_cache([i for i in ids if not self.store.active_holds(i)], False)
        return ids

    def _on_flag(self, env: Envelope, _s: Identity | None, index: int, _b: _Batch) -> list[int]:
        """A signal about the named lots (a silent logger, a counterfeit serial…):
        recorded once per lot, rule and key; it changes nothing else."""
        lots = self._lots_of(env)
        data = env.data
        for lot in lots:
            if self.store.has_flag(lot.id, data["rule"], data["key"]):
                raise RejectedEvent(
                    CONFLICT,
                    f"{lot.uri} is already flagged by rule {data['rule']} for {data['key']}",
                )
        ids = [lot.id for lot in lots]
        self.store.record_flag(index, ids, data["rule"], data["signal"], data["key"])
        return ids

    def _set_held_cache(self, lot_ids: Iterable[int], held: bool) -> None:
        for lot_id in lot_ids:
            cached = self._lots_by_id.get(lot_id)
            if cached is not None:
                cached.held = held

    def _not_held(self, lots: Sequence[Lot], batch: _Batch, verb: str) -> None:
        """Refuse to act on a held lot, naming the hold (rule, reason, signer, event)."""
        for lot in lots:
            if lot.held:
                raise RejectedEvent(HELD, self._hold_message(lot, batch, verb))

    def _hold_message(self, lot: Lot, batch: _Batch, verb: str) -> str:
        active = self.store.active_holds(lot.id)
        if not active:  # pragma: no cover - the holds table always backs the flag
            return f"{lot.uri} is on hold; it cannot be {verb} until the hold is released"
        event_index, rule = active[0]
        envelope, who = self._decision(event_index, batch.holds)
        more = f" (and {len(active) - 1} more holds)" if len(active) > 1 else ""
        return (
            f"{lot.uri} is on hold by rule {rule} ({who}, {envelope.time}, event "
            f"{envelope.event_id}): {envelope.data.get('reason')}{more}; it cannot be {verb} "
            "until the hold is released by a regulator or the rules key"
        )

    def _on_dispense(
        self, env: Envelope, signer: Identity | None, index: int, batch: _Batch
    ) -> list[int]:
        lots = self._lots_of(env)
        self._custodian_of(env, signer, lots)
        self._not_recalled(lots, index, batch, "dispensed")
        self._not_held(lots, batch, "dispensed")
        self._within_custody(env, signer, lots, index, batch)
        self.store.record_dispense([lot.id for lot in lots], env.data)
        return [lot.id for lot in lots]

    def _on_epcis(
        self, env: Envelope, signer: Identity | None, index: int, _b: _Batch
    ) -> list[int]:
        """An imported EPCIS 2.0 event, carried verbatim. With `batches` it is
        filed under those lots (each must exist, and the signer must be allowed
        to sign about each, as for `inspect`); without, under the signer's
        EPCIS stream chain `{did}#epcis`, made on first use."""
        assert signer is not None
        if env.batches is not None:
            lots = self._lots_of(env)
            if index >= self._access_from:
                self._may_sign_about(env, signer, lots)
            return [lot.id for lot in lots]
        subject = epcis_stream(signer.did)
        chain_id = self._streams.get(subject)
        if chain_id is None:
            found = self.store.chain_by_subject(subject)
            chain_id = found[0] if found else self._new_chain(subject)
            self._streams[subject] = chain_id
        return [chain_id]

    # --- reads used by adapters

    def next_seq(self, did: str) -> int:
        identity = self.store.identity_by_did(did)
        if identity is None:
            return 0
        highest = self.store.max_seq(identity.id)
        return 0 if highest is None else highest + 1


class _Abort(Exception):
    pass


class _Verification:
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


def _rejected(reason: str, message: str, envelope: Envelope | None = None) -> Appended:
    return Appended(
        "rejected", None if envelope is None else envelope.event_id, None, reason, message
    )


def _parse(item: Any) -> tuple[Envelope | None, Appended | None]:
    if isinstance(item, Envelope):
        return plain(item), None  # a subclass's overrides decide nothing
    if isinstance(item, NotAnEnvelope):
        return None, _rejected(item.reason, item.message)
    if isinstance(item, (bytes, bytearray, str)):
        try:
            size = len(item) if not isinstance(item, str) else _utf8_size(item)
            if size > MAX_ENVELOPE_BYTES:
                raise ValidationError("", too_large(size))
            item = parse_json(bytes(item) if isinstance(item, bytearray) else item)
        except ValidationError as exc:
            return None, _rejected(MALFORMED, str(exc))
    try:
        return Envelope.from_json(item), None
    except ValidationError as exc:
        return None, _rejected(SCHEMA, str(exc))
    except ProvenanceError as exc:  # pragma: no cover - defensive: never crash on input
        return None, _rejected(SCHEMA, str(exc))


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _text_bytes(text: str) -> bytes:
    """Text as the bytes it was (surrogateescape), or with unencodable characters escaped."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _raw_bytes(raw: Any) -> bytes | None:
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
        import json

        return json.dumps(raw, default=str).encode("utf-8", "backslashreplace")[:MAX_REJECT_RAW]
    except (TypeError, ValueError, RecursionError):
        return repr(raw).encode("utf-8", "backslashreplace")[:MAX_REJECT_RAW]
