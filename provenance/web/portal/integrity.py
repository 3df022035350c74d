"""The regulator's integrity checks: the latest checkpoint (its signature
checked), whole-ledger and per-lot verification (`provenance.ledger.audit`), the
consistency of an older checkpoint the regulator kept with the latest one, and
the audit trail against its anchors in the log (`audit_trail`).

Each returns a plain dict (rendered as a page or as JSON); none raises for
what it finds.
"""

from __future__ import annotations

import base64
from typing import Any

from provenance.core.checkpoint import open_checkpoint
from provenance.core.errors import NotFound, ProvenanceError, ValidationError
from provenance.core.identity import did_from_public_key, public_key_from_did
from provenance.core.merkle import consistency_proof, verify_consistency
from provenance.core.progress import Progress
from provenance.core.trail import TrailReport
from provenance.ledger.audit import verify_ledger, verify_lot
from provenance.ledger.trail_anchors import verify_anchored
from provenance.store.accounts.audit_trail import TRAIL, AuditTrail
from provenance.store.db import Store

MAX_PROBLEMS = 50
MAX_NOTE = 8192


def audit_trail(accounts: AuditTrail, store: Store) -> TrailReport:
    """The audit trail's hash chain recomputed and held against every anchor of
    it in the log (docs/portal.md, "The audit trail is anchored")."""
    return verify_anchored(list(accounts.trail_entries()), store, TRAIL)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def log_key(store: Store, configured: bytes | None) -> tuple[bytes, str]:
    """The key checkpoints are checked with, and where it came from."""
    if configured:
        return configured, "the operator's log key"
    did = store.get_meta("log_key")
    if did is None:
        raise NotFound("the ledger names no log key: run `provenance init`")
    return public_key_from_did(did), "the key the ledger names (no operator key configured)"


def latest(store: Store, configured: bytes | None) -> dict[str, Any]:
    note = store.latest_checkpoint()
    origin = store.get_meta("origin") or ""
    key, source = log_key(store, configured)
    out: dict[str, Any] = {
        "origin": origin,
        "checkpoint": note,
        "log_key": did_from_public_key(key),
        "log_key_source": source,
        "log_size": store.log_size(),
    }
    if note is None:
        out.update(verified=False, problem="the ledger has no signed checkpoint yet")
        return out
    try:
        checkpoint = open_checkpoint(note, origin, key, origin=origin)
    except (ProvenanceError, ValidationError) as exc:
        out.update(verified=False, problem=str(exc))
        return out
    out.update(verified=True, size=checkpoint.size, root=_b64(checkpoint.root_hash))
    return out


def consistency(store: Store, configured: bytes | None, older: str) -> dict[str, Any]:
    """Is the log the regulator saw at *older* (a signed checkpoint note) a
    prefix of the log as its latest checkpoint signs it?"""
    origin = store.get_meta("origin") or ""
    key, _ = log_key(store, configured)
    text = (older or "").replace("\r\n", "\n").strip("\n") + "\n"
    out: dict[str, Any] = {"ok": False}
    if len(text) > MAX_NOTE:
        out["problem"] = f"that is not a checkpoint: longer than {MAX_NOTE} characters"
        return out
    try:
        old = open_checkpoint(text, origin, key, origin=origin)
    except (ProvenanceError, ValidationError) as exc:
        out["problem"] = f"the checkpoint you pasted does not verify with this log's key: {exc}"
        return out
    with store.snapshot():
        note = store.latest_checkpoint()
        if note is None:
            out["problem"] = "the ledger has no signed checkpoint yet"
            return out
        new = open_checkpoint(note, origin, key, origin=origin)
        out.update(old_size=old.size, new_size=new.size, checkpoint=note)
        if old.size > new.size:
            out["problem"] = (
                f"the checkpoint you hold covers {old.size} events but the latest signed one only "
                f"{new.size}: the log was rolled back or truncated"
            )
            return out
        if old.size == 0:
            out.update(ok=True, proof=[], detail="an empty log is a prefix of every log")
            return out
        proof = consistency_proof(store, old.size, new.size)
    out["proof"] = [_b64(h) for h in proof]
    try:
        verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    except ProvenanceError as exc:
        out["problem"] = (
            f"the log is NOT consistent with the checkpoint you hold: the first {old.size} "
            f"events were changed ({exc})"
        )
        return out
    out["ok"] = True
    out["detail"] = (
        f"the log of {new.size} events extends the {old.size} events you saw: nothing signed "
        "then was changed or removed"
    )
    return out


def verify_all(
    store: Store, configured: bytes | None, workers: int, progress: Progress | None = None
) -> dict[str, Any]:
    key, _ = log_key(store, configured)
    report = verify_ledger(store, key, workers=workers, progress=progress)
    problems = [str(p) for p in report.problems]
    return {
        "ok": report.ok,
        "scope": "ledger",
        "log_size": report.log_size,
        "chains": report.chains_checked,
        "problems": problems[:MAX_PROBLEMS],
        "problem_count": len(problems),
        "warnings": report.warnings[:MAX_PROBLEMS],
    }


def verify_one(store: Store, configured: bytes | None, lot_uri: str) -> dict[str, Any]:
    key, _ = log_key(store, configured)
    if store.lot_by_uri(lot_uri) is None:
        raise NotFound(f"no lot {lot_uri} in this ledger")
    try:
        report = verify_lot(store, lot_uri, key)
    except ProvenanceError as exc:
        return {"ok": False, "scope": "lot", "lot": lot_uri, "problems": [str(exc)]}
    return {
        "ok": True,
        "scope": "lot",
        "lot": lot_uri,
        "summary": report.summary(),
        "events": len(report.events),
        "checkpoint_size": report.checkpoint.size,
        "problems": [],
        "warnings": list(report.warnings),
    }
