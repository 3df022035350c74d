"""Transparency-log endpoints in the manner of Certificate Transparency
(RFC 6962 §4), for monitors, auditors and witnesses:

- ``GET /log/v1/checkpoint``: the checkpoint to show (C2SP signed note,
  ``text/plain``): with witnesses configured, the newest one the quorum
  cosigned, its cosignature lines after the log's signature
  (provenance/store/cosignatures.py says which while cosignatures are pending);
- ``GET /log/v1/proof/inclusion?id=<event id hex>&size=N``: the event's leaf
  index and audit path in the tree of size N (default: the shown checkpoint's);
- ``GET /log/v1/proof/consistency?first=M&second=N``: the consistency proof
  between two tree sizes (``second`` defaults to the shown checkpoint's);
- ``GET /log/v1/entries?start=A&end=B``: envelopes A..B-1 (at most 100).
- ``GET /log/v1/policy``: the C2SP tlog-policy the scan page checks against
  (docs/scan.md, "Checked on this phone"): the ``POLICY`` setting's text (a
  regulator's published file) when set, else made from the operator's log key
  and the configured witnesses and quorum. Phones pin it on first use.

Hashes are base64, as in RFC 6962's JSON API. Sizes beyond the latest signed
checkpoint are refused: a proof is only useful against a signed tree head.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from provenance.core.checkpoint import format_verifier_key
from provenance.core.errors import NotFound, ValidationError
from provenance.core.identity import public_key_from_did
from provenance.core.merkle import consistency_proof, inclusion_proof
from provenance.ledger.proofs import checkpoint_body
from provenance.store.cosignatures import configured_witnesses, shown_checkpoint, witness_quorum

from .params import int_arg
from .state import store as get_store

bp = Blueprint("transparency", __name__, url_prefix="/log/v1")

MAX_ENTRIES = 100


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _signed_size() -> tuple[int, int]:
    """(the shown checkpoint's size, the newest signed size): sizes default to
    the first and may go up to the second (any signed tree head)."""
    store = get_store()
    shown = shown_checkpoint(store)
    note = store.latest_checkpoint()
    if shown is None or note is None:
        raise NotFound("the log has no signed checkpoint yet")
    return shown.size, checkpoint_body(note).size


def _within(name: str, size: int, signed: int) -> None:
    if size > signed:
        raise ValidationError(
            name, f"{size} is beyond the latest signed checkpoint ({signed}); ask for at most that"
        )


@bp.get("/checkpoint")
def checkpoint() -> Response:
    shown = shown_checkpoint(get_store())
    if shown is None:
        raise NotFound("the log has no signed checkpoint yet")
    return Response(shown.note, mimetype="text/plain", headers={"Cache-Control": "no-cache"})


@bp.get("/policy")
def policy() -> Response:
    return Response(trust_policy(), mimetype="text/plain", headers={"Cache-Control": "no-cache"})


def trust_policy() -> str:
    """The policy phones check this log's checkpoints against (see the module doc)."""
    configured = current_app.config.get("POLICY")
    if configured:
        return configured
    store = get_store()
    origin = store.get_meta("origin")
    key = current_app.config.get("LOG_PUBLIC_KEY")
    if key is None and store.get_meta("log_key"):
        key = public_key_from_did(store.get_meta("log_key"))
    if not origin or key is None:
        raise NotFound("this ledger has no log key yet, so no policy")
    lines = [
        "# The log and witnesses this resolver's scan page checks against (docs/scan.md).",
        f"log {format_verifier_key(origin, key)}",
    ]
    witnesses = configured_witnesses(store)
    quorum = witness_quorum(store)
    for witness in witnesses:
        lines.append(f"witness {witness.name} {witness.vkey}")
    if witnesses and quorum:
        names = " ".join(w.name for w in witnesses)
        lines.append(f"group witnesses {min(quorum, len(witnesses))} {names}")
        lines.append("quorum witnesses")
    else:
        lines.append("quorum none")
    return "\n".join(lines) + "\n"


@bp.get("/proof/inclusion")
def inclusion() -> Any:
    shown, signed = _signed_size()
    size = int_arg("size", shown, low=1)
    _within("size", size, signed)
    event_id = request.args.get("id", "")
    try:
        wanted = bytes.fromhex(event_id)
    except ValueError:
        wanted = b""
    if len(wanted) != 32:
        raise ValidationError("id", "must be an event id: 64 hex digits")
    store = get_store()
    found = store.find_event(wanted)
    if found is None:
        raise NotFound(f"no event {event_id} in this log")
    if found.index >= size:
        raise NotFound(f"event {event_id} is at index {found.index}, not in a tree of size {size}")
    proof = inclusion_proof(store, found.index, size)
    return jsonify(
        {
            "leaf_index": found.index,
            "tree_size": size,
            "leaf_hash": _b64(found.leaf),
            "audit_path": [_b64(h) for h in proof],
        }
    )


@bp.get("/proof/consistency")
def consistency() -> Any:
    shown, signed = _signed_size()
    first = int_arg("first", low=1)
    second = int_arg("second", shown, low=1)
    _within("second", second, signed)
    if first > second:
        raise ValidationError("first", f"must not exceed second ({first} > {second})")
    proof = consistency_proof(get_store(), first, second)
    return jsonify({"first": first, "second": second, "consistency": [_b64(h) for h in proof]})


@bp.get("/entries")
def entries() -> Any:
    _, signed = _signed_size()
    start = int_arg("start")
    end = min(int_arg("end", start + MAX_ENTRIES), start + MAX_ENTRIES, signed)
    if start >= end:
        raise ValidationError("start", f"must be below end and the signed size ({signed})")
    events = get_store().events(start, end)
    return jsonify(
        {"entries": [{"index": e.index, "envelope": e.envelope.to_json()} for e in events]}
    )
