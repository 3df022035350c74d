"""Checking the notices published on MQTT offline (pure): a recall notice by the
regulators' own signed envelopes it carries, an alert notice by the rules
identity's signature over it (docs/protocol.md §11, "Signed notices").

A **recall notice** (`provenance-recall-notice/v2`) is the operator's summary
of a lot's recall state, and the operator is not trusted to speak for a
regulator. So every recall (and every lift) it reports carries the regulator's
envelope exactly as logged, with its log index; `verify_recall_notice` checks
each envelope's signature, that it says what the notice says it says, that its
signer is a regulator (a pinned key, or an enrolment by the registrar the
caller trusts, carried in the notice), and, given the log key, that each
envelope is in the log the notice's checkpoint commits to. A notice that
reports nothing (no recall in force, none lifted) is refused: the notifier
only speaks of lots a recall reached. Given the notice kept before, it also
refuses one that drops a recall without a lift, or goes back in the log.

An **alert notice** (`provenance-alert-notice/v1`) is the rules service's own
statement: it is signed by the rules key over `ALERT_CONTEXT` and the notice's
canonical JSON without its `signature` member.

Every `verify_*` returns what it checked or raises `VerificationError`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from provenance.core import gs1
from provenance.core.bundle import unb64
from provenance.core.checkpoint import open_checkpoint
from provenance.core.ed25519 import InvalidSignature
from provenance.core.envelope import Envelope, b64url_decode
from provenance.core.errors import ProvenanceError, VerificationError
from provenance.core.fields import text_as_signed
from provenance.core.identity import verifier_for
from provenance.core.jcs import canonicalize, parse_json
from provenance.core.kinds import REGISTRAR
from provenance.core.merkle import hash_leaf, verify_inclusion

RECALL_FORMAT = "provenance-recall-notice/v2"
ALERT_FORMAT = "provenance-alert-notice/v1"
# What an alert notice's signature covers comes after this line, so that the
# signature can never be taken for an envelope's (whose signed bytes are JSON).
ALERT_CONTEXT = b"provenance alert notice v1\n"
MAX_NOTICE_BYTES = 4 * 1024 * 1024
REGULATOR = "regulator"


def alert_signing_bytes(notice: Mapping[str, Any]) -> bytes:
    """The bytes the rules key signs: the context line, then the notice's RFC 8785
    JSON without its `signature` member."""
    unsigned = {name: value for name, value in notice.items() if name != "signature"}
    return ALERT_CONTEXT + canonicalize(unsigned)


def parse_notice(payload: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """A notice as received (MQTT payload or file), parsed strictly."""
    if isinstance(payload, Mapping):
        return dict(payload)
    size = len(payload.encode("utf-8") if isinstance(payload, str) else payload)
    if size > MAX_NOTICE_BYTES:
        raise VerificationError(f"notice is {size} bytes; at most {MAX_NOTICE_BYTES} are read")
    try:
        value = parse_json(payload, max_depth=64)
    except ProvenanceError as exc:
        raise VerificationError(f"notice is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise VerificationError("notice must be a JSON object")
    return value


# --- alert notices


def verify_alert_notice(notice: Any, *, rules: Collection[str]) -> dict[str, Any]:
    """Check an alert notice's signature by one of the rules identities *rules*
    (did:keys the caller trusts); returns the notice."""
    notice = parse_notice(notice)
    if notice.get("format") != ALERT_FORMAT:
        raise VerificationError(f"not a {ALERT_FORMAT} notice")
    signature = notice.get("signature")
    if not isinstance(signature, dict) or set(signature) != {"signer", "sig"}:
        raise VerificationError(
            "the alert notice is unsigned: it needs `signature` {signer, sig} by the rules key"
        )
    signer = signature["signer"]
    if not isinstance(signer, str) or signer not in rules:
        raise VerificationError(
            f"the alert notice is signed by {signer!r}, not a trusted rules key"
        )
    try:
        raw = b64url_decode(signature["sig"], "signature.sig")
        verifier_for(signer).verify(raw, alert_signing_bytes(notice))
    except (InvalidSignature, ProvenanceError, TypeError, ValueError):
        raise VerificationError(
            f"the alert notice's signature does not verify for {signer}: it was changed "
            "after signing, or signed with another key"
        ) from None
    return notice


# --- recall notices


@dataclass
class RecallNoticeReport:
    lot: str
    recalled: bool
    recalls: list[str] = field(default_factory=list)  # event ids in force
    lifted: list[str] = field(default_factory=list)  # event ids of recalls lifted
    indirect: list[str] = field(default_factory=list)  # through an ancestor: lineage not proven
    log_size: int = 0
    included: bool = False  # every envelope proven in the checkpoint's log

    def summary(self) -> str:
        state = "RECALLED" if self.recalled else "not recalled"
        proof = ", each in the log" if self.included else ""
        return (
            f"{self.lot}: {state} ({len(self.recalls)} recall(s) in force, "
            f"{len(self.lifted)} lifted; signed by regulators{proof}; log size {self.log_size})"
        )


def verify_recall_notice(
    notice: Any,
    *,
    regulators: Collection[str] = (),
    registrar: str | None = None,
    log_key: bytes | None = None,
    previous: Any = None,
) -> RecallNoticeReport:
    """Check a recall notice (see the module's doc). Trust: *regulators*
    (did:keys pinned as regulators) and/or *registrar* (whose enrolments of
    regulators, carried in the notice, count); at least one is required.
    *log_key* (32 raw bytes): also require each envelope's inclusion in the log
    under the notice's checkpoint. *previous*: the notice kept before for the
    same lot."""
    if not regulators and registrar is None:
        raise VerificationError(
            "nothing to trust a regulator by: give the regulators' keys or the registrar's"
        )
    notice = parse_notice(notice)
    if notice.get("format") != RECALL_FORMAT:
        raise VerificationError(
            f"not a {RECALL_FORMAT} notice (an unsigned notice of an older format is not evidence)"
        )
    lot = _string(notice, "lot")
    try:
        gtin, lot_code = gs1.parse_lot_uri(lot, field="lot")
    except ProvenanceError as exc:
        raise VerificationError(f"notice `lot`: {exc}") from None
    if notice.get("gtin") != gtin or notice.get("lot_code") != lot_code:
        raise VerificationError(f"notice `gtin` and `lot_code` must be those of {lot}")
    recalls, lifted = notice.get("recalls"), notice.get("lifted")
    if not isinstance(recalls, list) or not isinstance(lifted, list):
        raise VerificationError("notice `recalls` and `lifted` must be lists")
    if not recalls and not lifted:
        raise VerificationError(
            f"the notice for {lot} reports no recall and no lift: a notice is only "
            "published for a lot a recall reached"
        )
    if notice.get("recalled") is not bool(recalls):
        raise VerificationError(
            f"the notice says recalled={notice.get('recalled')!r} but lists "
            f"{len(recalls)} recall(s) in force"
        )
    log = notice.get("log")
    if not isinstance(log, dict) or not isinstance(log.get("size"), int):
        raise VerificationError("notice `log` must give the log's size")
    report = RecallNoticeReport(lot, bool(recalls), log_size=log["size"])
    evidence = _Evidence(notice, regulators, registrar, log_key)
    for position, record in enumerate(recalls):
        where = f"recalls[{position}]"
        if not isinstance(record, dict) or "lifted" in record:
            raise VerificationError(f"{where}: a recall in force cannot carry a lift")
        report.recalls.append(evidence.recall(record, lot, where))
        if record.get("direct") is False:
            report.indirect.append(record["event_id"])
    for position, record in enumerate(lifted):
        where = f"lifted[{position}]"
        if not isinstance(record, dict) or not isinstance(record.get("lifted"), dict):
            raise VerificationError(f"{where}: a lifted recall must carry its lift")
        recall = evidence.recall(record, lot, where)
        evidence.lift(record, recall, where)
        report.lifted.append(recall)
    if len(set(report.recalls + report.lifted)) != len(recalls) + len(lifted):
        raise VerificationError("the notice lists one recall twice")
    report.included = log_key is not None
    if previous is not None:
        _check_succession(parse_notice(previous), notice, report)
    return report


def _string(value: Mapping[str, Any], name: str, where: str = "notice") -> str:
    found = value.get(name)
    if not isinstance(found, str) or not found:
        raise VerificationError(f"{where}: `{name}` must be a non-empty string")
    return found


class _Evidence:
    """The envelopes a recall notice carries, checked against its claims."""

    def __init__(
        self,
        notice: dict[str, Any],
        regulators: Collection[str],
        registrar: str | None,
        log_key: bytes | None,
    ):
        self.notice = notice
        self.regulators = set(regulators)
        self.registrar = registrar
        self.checked_regulators: dict[str, str] = {}  # did -> name enrolled
        self.checkpoint = None
        self.proofs = notice.get("proofs")
        if log_key is not None:
            note = notice.get("checkpoint")
            if not isinstance(note, str):
                raise VerificationError("the notice carries no checkpoint to prove inclusion by")
            self.checkpoint = open_checkpoint(note, note.split("\n", 1)[0], log_key)
            if self.checkpoint.origin != notice["log"].get("origin"):
                raise VerificationError(
                    f"the notice's checkpoint is of log {self.checkpoint.origin!r}, "
                    f"its `log.origin` says {notice['log'].get('origin')!r}"
                )
            if self.checkpoint.size != notice["log"]["size"]:
                raise VerificationError(
                    f"the notice's checkpoint is of size {self.checkpoint.size}, "
                    f"its `log.size` says {notice['log']['size']}"
                )
            if not isinstance(self.proofs, dict):
                raise VerificationError("the notice carries no inclusion proofs")

    def envelope(self, value: Any, index: Any, kind: str, where: str) -> Envelope:
        try:
            with text_as_signed():
                envelope = Envelope.from_json(value)
            envelope.verify_signature()
        except ProvenanceError as exc:
            raise VerificationError(f"{where}: the {kind} envelope does not check: {exc}") from None
        if envelope.kind != kind:
            raise VerificationError(f"{where}: carries a {envelope.kind} event, not a {kind}")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise VerificationError(f"{where}: `log_index` must be a log index")
        self.included(envelope, index, where)
        return envelope

    def included(self, envelope: Envelope, index: int, where: str) -> None:
        if self.checkpoint is None:
            return
        proof = self.proofs.get(str(index)) if isinstance(self.proofs, dict) else None
        if not isinstance(proof, list):
            raise VerificationError(f"{where}: no inclusion proof for log index {index}")
        try:
            hashes = [unb64(item, f"{where}: proof hash") for item in proof]
            verify_inclusion(
                index, self.checkpoint.size, hash_leaf(envelope.id_bytes), hashes,
                self.checkpoint.root_hash,
            )  # fmt: skip
        except ProvenanceError as exc:
            raise VerificationError(
                f"{where}: event {envelope.event_id} is not at log index {index} of the "
                f"checkpoint's log: {exc}"
            ) from None

    def regulator(self, named: Any, signer: str, where: str) -> None:
        """*signer* must be a trusted regulator, and *named* (the notice's
        `regulator`) must name it: its did, role `regulator` and, when trust
        comes from the registrar's enrolment, the name enrolled."""
        if not isinstance(named, dict) or named.get("did") != signer:
            raise VerificationError(f"{where}: the notice names a regulator other than the signer")
        if named.get("role") != REGULATOR:
            raise VerificationError(f"{where}: the notice says the signer's role is not regulator")
        if signer not in self.regulators:
            name = self.enrolled_regulator(signer, where)
            if named.get("name") != name:
                raise VerificationError(
                    f"{where}: the notice calls the regulator {named.get('name')!r}, "
                    f"its enrolment says {name!r}"
                )

    def enrolled_regulator(self, did: str, where: str) -> str:
        """The name the trusted registrar enrolled *did* under as a regulator."""
        if did in self.checked_regulators:
            return self.checked_regulators[did]
        if self.registrar is None:
            raise VerificationError(f"{where}: signed by {did}, not a trusted regulator")
        enrolments = self.notice.get("enrolments")
        item = enrolments.get(did) if isinstance(enrolments, dict) else None
        if not isinstance(item, dict):
            raise VerificationError(
                f"{where}: signed by {did}, which is not a pinned regulator and whose "
                "enrolment the notice does not carry"
            )
        enrol = self.envelope(item.get("envelope"), item.get("log_index"), "enrol", where)
        data = enrol.data
        if enrol.signer != self.registrar:
            raise VerificationError(
                f"{where}: {did} was enrolled by {enrol.signer}, not the trusted {REGISTRAR}"
            )
        if data.get("subject") != did or data.get("type") != "party":
            raise VerificationError(f"{where}: the enrolment carried is not {did}'s")
        if data.get("role") != REGULATOR:
            raise VerificationError(
                f"{where}: signed by {did}, enrolled as a {data.get('role')}, not a regulator"
            )
        self.checked_regulators[did] = data["name"]
        return data["name"]

    def recall(self, record: dict[str, Any], lot: str, where: str) -> str:
        envelope = self.envelope(record.get("envelope"), record.get("log_index"), "recall", where)
        data = envelope.data
        claims = {
            "event_id": envelope.event_id,
            "time": envelope.time,
            "reason": data.get("reason"),
            "class": data.get("class"),
            "instructions": data.get("instructions"),
        }
        for name, signed in claims.items():
            if record.get(name) != signed:
                raise VerificationError(
                    f"{where}: the notice says {name}={record.get(name)!r}, "
                    f"the regulator signed {signed!r}"
                )
        source = record.get("source")
        if source not in (envelope.lots or ()):
            raise VerificationError(f"{where}: the signed recall does not name {source!r}")
        if record.get("direct") is not (source == lot):
            raise VerificationError(f"{where}: `direct` must say whether {source} is {lot}")
        self.regulator(record.get("regulator"), envelope.signer, where)
        return envelope.event_id

    def lift(self, record: dict[str, Any], recall_id: str, where: str) -> None:
        lift = record["lifted"]
        where = f"{where}.lifted"
        envelope = self.envelope(lift.get("envelope"), lift.get("log_index"), "recall-lift", where)
        if lift.get("event_id") != envelope.event_id or lift.get("time") != envelope.time:
            raise VerificationError(f"{where}: event_id and time must be the signed lift's")
        if lift.get("reason") != envelope.data.get("reason"):
            raise VerificationError(f"{where}: the reason is not the one the regulator signed")
        if record["source"] not in (envelope.lots or ()):
            raise VerificationError(f"{where}: the signed lift does not name {record['source']}")
        if lift["log_index"] <= record["log_index"]:
            raise VerificationError(f"{where}: the lift is not after recall {recall_id}")
        self.regulator(lift.get("regulator"), envelope.signer, where)


def _check_succession(
    previous: dict[str, Any], notice: dict[str, Any], report: RecallNoticeReport
) -> None:
    """*notice* may follow *previous* (same lot): not older, and every recall
    that was in force is still in force or lifted, by a lift it carries."""
    if previous.get("lot") != report.lot:
        raise VerificationError(f"the previous notice is for {previous.get('lot')!r}")
    before = previous.get("log", {}).get("size") if isinstance(previous.get("log"), dict) else None
    if isinstance(before, int) and report.log_size < before:
        raise VerificationError(
            f"the notice describes log size {report.log_size}, older than the {before} "
            "of the notice kept before: a replay"
        )
    known = set(report.recalls) | set(report.lifted)
    for record in previous.get("recalls") or []:
        if isinstance(record, dict) and record.get("event_id") not in known:
            raise VerificationError(
                f"recall {record.get('event_id')} was in force and the notice neither "
                "lists it nor carries its lift: a recall cannot just disappear"
            )


__all__ = [
    "ALERT_CONTEXT",
    "ALERT_FORMAT",
    "RECALL_FORMAT",
    "RecallNoticeReport",
    "alert_signing_bytes",
    "parse_notice",
    "verify_alert_notice",
    "verify_recall_notice",
]
