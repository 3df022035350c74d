"""What portal forms and API calls do, in one place: check the role, build
the event's data, sign it with the party's server-held key, append it through
`Ledger.append`, write the audit trail, and turn a refusal into a `PortalError`
whose status says whose fault it is.

The party is always the caller's own (from the session or the token): no form
field or JSON member can name another party to act for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from flask import request

from provenance.core import gs1
from provenance.core.disclosure import is_wrapped
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.identity import is_did_key
from provenance.core.timefmt import format_time, parse_date_or_time
from provenance.ledger.append import Appended
from provenance.ledger.lineage import BOTH, DIRECTIONS, Trace, trace
from provenance.store.accounts.models import Document, KeyUnavailable, Principal
from provenance.store.db import Store
from provenance.store.key_custody import is_custodial
from provenance.store.rows import Identity

from ..params import parse_decimal
from ..state import store as read_store
from . import exports, queries
from .browser_keys import SignInBrowser, prepare
from .documents import DocumentRefused
from .guard import PortalError, forbidden, require
from .state import portal
from .writer import Item, WriteUnavailable

# Ledger reject reasons -> HTTP status: whose fault, and can it be fixed by asking again.
STATUS_OF_REASON = {
    "malformed": 400,
    "schema": 400,
    "disclosure": 400,
    "bad-signature": 400,
    "future-time": 400,
    "unknown-signer": 403,
    "revoked": 403,
    "unauthorised": 403,
    "not-custodian": 403,
    "unknown-lot": 404,
    "unknown-party": 404,
    "unknown-device": 404,
    "replay": 409,
    "not-attached": 409,
    "lot-exists": 409,
    "conflict": 409,
    "recalled": 409,
    "held": 409,
    "aborted": 409,
    "quantity": 409,  # more than is free of the lot now (docs/protocol.md §13)
}


@dataclass(frozen=True)
class Done:
    """A successful action: the events it appended (ids and log indexes)."""

    results: tuple[Appended, ...]
    lot_uri: str | None = None

    @property
    def event_ids(self) -> list[str]:
        return [r.event_id for r in self.results if r.event_id]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "events": [
                {"event_id": r.event_id, "status": r.status, "log_index": r.index}
                for r in self.results
            ]
        }
        if self.lot_uri:
            body["lot"] = self.lot_uri
        return body


def audit(who: Principal, action: str, params: dict[str, Any], outcome: str = "ok") -> None:
    portal().accounts.audit(
        who.actor, action, params, role=who.role, party=who.party_name, outcome=outcome
    )


def party_identity(store: Store, who: Principal) -> Identity:
    if not who.party_did:
        raise forbidden("this account belongs to no party", "no-party")
    identity = store.identity_by_did(who.party_did)
    if identity is None:
        raise forbidden(
            f"your party {who.party_name} is not enrolled in this ledger", "unknown-party"
        )
    return identity


def _refused(result: Appended) -> PortalError:
    reason = result.reason or "rejected"
    status = STATUS_OF_REASON.get(reason, 400)
    title = {400: "bad request", 403: "forbidden", 404: "not found", 409: "conflict"}[status]
    return PortalError(status, title, f"the ledger refused it: {result.message}", reason=reason)


def refused_result(result: Appended) -> PortalError:
    return _refused(result)


def _server_may_sign(who: Principal) -> bool:
    """Whether this server signs for the caller's party: only for a custodial
    party (its enrolment says the operator holds its key) that is not a
    regulator. Anyone else signs in their own browser, even if an old vault
    row still held their key."""
    identity = party_identity(read_store(), who)
    return identity.role != "regulator" and is_custodial(read_store(), identity)


def _sign_elsewhere(
    who: Principal,
    action: str,
    items: list[Item],
    params: dict[str, Any],
    time: str | None,
) -> Done:
    """The caller's party holds its own key: a portal user signs in the browser
    (raises SignInBrowser); an API client signs its envelopes itself."""
    if who.user_id is None:
        raise PortalError(
            503,
            "cannot sign",
            f"{who.party_name} holds its own key, so this server cannot sign for it: sign the "
            "envelopes yourself and POST them to /api/v1/events (docs/portal.md)",
            reason="no-key",
        )
    envelopes = portal().writer.prepare(who.party_did or "", items, time=time)
    audit(who, action, params, "prepared: waits for the browser's signature")
    prepare(who, action, params, envelopes)
    raise AssertionError("unreachable")  # prepare raises SignInBrowser


def _sign(
    who: Principal,
    action: str,
    items: list[Item],
    params: dict[str, Any],
    time: str | None = None,
) -> Done:
    """Sign and append *items* as the caller's party, all or nothing; dated
    *time* (RFC 3339 UTC), else now."""
    require(who, action)
    state = portal()
    try:
        if not _server_may_sign(who):
            return _sign_elsewhere(who, action, items, params, time)
        key = state.accounts.party_key(who.party_did or "")
        results = state.writer.sign_and_append(key, items, source=f"portal:{who.actor}", time=time)
    except KeyUnavailable as exc:
        audit(who, action, params, f"refused: {exc}")
        raise PortalError(503, "cannot sign", str(exc), reason="no-key") from exc
    except WriteUnavailable as exc:
        audit(who, action, params, f"refused: {exc}")
        raise PortalError(503, "read-only server", str(exc), reason="read-only") from exc
    except ValidationError as exc:  # the event did not validate before signing
        audit(who, action, params, f"refused: {exc}")
        raise PortalError(400, "bad request", str(exc), reason="schema") from exc
    failed = next((r for r in results if r.status == "rejected"), None)
    if failed is not None:
        audit(who, action, params, f"refused: {failed.reason}: {failed.message}")
        raise _refused(failed)
    done = Done(tuple(results))
    audit(who, action, {**params, "events": done.event_ids})
    return done


# --- input helpers


def lot_uri_of(value: Any, field: str = "batch") -> str:
    """The canonical URI of a lot named by any GS1 Digital Link spelling of it."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "give the lot's URI (https://id.gs1.org/01/{GTIN}/10/{lot})")
    gtin14, lot = gs1.parse_lot_uri(value.strip(), require_canonical_base=False, field=field)
    return gs1.lot_uri(gtin14, lot)


def form_quantity(value: Any, unit: Any, field: str) -> dict[str, Any] | None:
    """``{value, unit}`` from form text (None when both are blank)."""
    if (value is None or str(value).strip() == "") and not unit:
        return None
    number = parse_decimal(str(value or ""), f"{field}.value")
    return {"value": number, "unit": str(unit or "").strip().upper()}


def form_location(name: Any, country: Any = None) -> dict[str, Any] | None:
    """The form's place: a name, or the GLN of a registered place (13 digits,
    spaces allowed: then `{"gln": …}`, completed from the registry where shown,
    docs/protocol.md §15); with a country code when given."""
    name = str(name or "").strip()
    if not name:
        return None
    digits = name.replace(" ", "")
    if re.fullmatch(r"[0-9]{13}", digits):  # said by the place field, before anything is signed
        out: dict[str, Any] = {"gln": gs1.validate_gln(digits, "location.gln")}
    else:
        out = {"name": name}
    country = str(country or "").strip().upper()
    if country:
        out["country"] = country
    return out


def resolve_party(store: Store, value: Any, field: str = "to") -> Identity:
    """An enrolled party by did:key or by name."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "name the party (its name or did:key)")
    text = value.strip()
    found = store.identity_by_did(text) if is_did_key(text) else None
    found = found or store.identity_by_name("party", text)
    if found is None or found.type != "party":
        raise PortalError(404, "not found", f"no enrolled party {text!r}", reason="unknown-party")
    return found


# --- the actions


def commission(
    who: Principal,
    *,
    gtin: str,
    lot: str,
    product: str,
    category: str | None = None,
    expiry: str | None = None,
    profile: str | None = None,
    quantity: dict[str, Any] | None = None,
    origin: dict[str, Any] | None = None,
    produced: str | None = None,
) -> Done:
    require(who, "commission")
    gtin14 = gs1.normalize_gtin((gtin or "").strip(), field="gtin")
    lot = gs1.validate_lot((lot or "").strip(), field="lot")
    uri = gs1.lot_uri(gtin14, lot)
    data: dict[str, Any] = {"gtin": gtin14, "lot": lot, "product": (product or "").strip()}
    optional = {
        "category": category,
        "expiry": expiry,
        "profile": profile,
        "quantity": quantity,
        "origin": origin,
        "produced": produced,
    }
    data.update({k: v for k, v in optional.items() if v})
    # A lot registered after harvest is dated at its production (a date: 00:00Z),
    # so its logger's and shipments' real, earlier times are not refused as
    # before its commissioning (docs/protocol.md §3.1).
    when = format_time(parse_date_or_time(produced, "produced")) if produced else None
    done = _sign(who, "commission", [("commission", [uri], data)], {"lot": uri}, when)
    return Done(done.results, uri)


def ship(
    who: Principal,
    *,
    lots: list[str],
    to: str,
    where: dict[str, Any] | None = None,
    purpose: str | None = None,
    quantities: Any = None,
) -> Done:
    """Ship lots to another party; with purpose "recall-return", send recalled
    lots back as their recall asks (docs/protocol.md §3); *quantities*
    [{batch, quantity}] ship only that much of a lot (§13)."""
    require(who, "ship")
    store = read_store()
    me = party_identity(store, who)
    uris = [lot_uri_of(b, f"batches[{n}]") for n, b in enumerate(lots)]
    if not uris:
        raise ValidationError("batches", "name at least one lot to ship")
    receiver = resolve_party(store, to)
    if receiver.id == me.id:
        raise PortalError(409, "conflict", "a shipment goes to another party", reason="conflict")
    data: dict[str, Any] = {"to": receiver.did}
    if where:
        data["location"] = where
    if purpose:
        data["purpose"] = purpose  # the ledger checks the value and the lots
    if quantities is not None:
        data["quantities"] = quantities  # the envelope's schema checks the shape
    params = {"lots": uris, "to": receiver.name}
    return _sign(who, "ship", [("ship", uris, data)], params)


def receive(
    who: Principal,
    *,
    shipment: str,
    where: dict[str, Any] | None = None,
    condition: str | None = None,
    quantities: Any = None,
    damaged: Any = None,
) -> Done:
    """Confirm receipt of a shipment sent to the caller's party: custody moves
    now; *quantities* received and *damaged* [{batch, quantity}] when not all
    of it arrived in good order (docs/protocol.md §13)."""
    require(who, "receive")
    store = read_store()
    me = party_identity(store, who)
    try:
        event_id = bytes.fromhex(shipment)
        if len(event_id) != 32:
            raise ValueError
    except (ValueError, TypeError):
        raise ValidationError("shipment", "must be the ship event's id: 64 hex digits") from None
    stored = store.find_event(event_id)
    if stored is None or stored.envelope.kind != "ship":
        raise PortalError(404, "not found", f"no shipment {shipment}", reason="unknown-shipment")
    receiver = store.identity_by_did(stored.envelope.data["to"])
    if receiver is None or receiver.id != me.id:
        raise forbidden(
            "this shipment was sent to another party: only its receiver may confirm it",
            "unauthorised",
        )
    data: dict[str, Any] = {"shipment": shipment}
    if where:
        data["location"] = where
    if condition:
        data["condition"] = condition.strip()
    for name, given in (("quantities", quantities), ("damaged", damaged)):
        if given is not None:
            data[name] = given
    lots = list(stored.envelope.lots or ())
    return _sign(who, "receive", [("receive", lots, data)], {"shipment": shipment})


def transform(
    who: Principal,
    *,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    where: dict[str, Any] | None = None,
) -> Done:
    require(who, "transform")
    if not inputs or not outputs:
        raise ValidationError("transform", "needs at least one input and one output lot")
    ins = [
        {
            "batch": lot_uri_of(item.get("batch"), f"inputs[{n}].batch"),
            "quantity": item.get("quantity"),
        }
        for n, item in enumerate(inputs)
    ]
    outs = []
    for n, item in enumerate(outputs):
        out = dict(item)
        if "batch" not in out and out.get("gtin") and out.get("lot"):
            gtin14 = gs1.normalize_gtin(str(out.pop("gtin")).strip(), field=f"outputs[{n}].gtin")
            code = gs1.validate_lot(str(out.pop("lot")).strip(), field=f"outputs[{n}].lot")
            out["batch"] = gs1.lot_uri(gtin14, code)
        else:
            out["batch"] = lot_uri_of(out.get("batch"), f"outputs[{n}].batch")
        outs.append({k: v for k, v in out.items() if v not in (None, "")})
    data: dict[str, Any] = {"inputs": ins, "outputs": outs}
    if where:
        data["location"] = where
    lots = [i["batch"] for i in ins] + [o["batch"] for o in outs]
    params = {"inputs": [i["batch"] for i in ins], "outputs": [o["batch"] for o in outs]}
    done = _sign(who, "transform", [("transform", lots, data)], params)
    return Done(done.results, outs[0]["batch"])


def _may_sign_about(who: Principal, uris: list[str]) -> None:
    """The ledger's rule for inspections, checked before anything is stored: the
    party holds or held every lot, or is an inspector or a regulator."""
    store = read_store()
    me = party_identity(store, who)
    for uri in uris:
        lot = store.lot_by_uri(uri)
        if lot is None:
            raise PortalError(
                404, "not found", f"no lot {uri} in this ledger", reason="unknown-lot"
            )
        if not queries.may_sign_about(store, lot, me):
            audit(who, "document", {"lots": uris}, "refused: never held the lot")
            raise forbidden(
                f"your party ({who.party_name}) never held {uri}: only its custodians past and "
                "present, inspectors and regulators may attach documents about it",
                "not-custodian",
            )


def attach_document(
    who: Principal,
    *,
    lots: list[str],
    stream: BinaryIO,
    filename: str | None,
    declared_type: str | None,
    result: str,
    notes: str | None = None,
) -> tuple[Done, Document]:
    """Store a certificate or lab result and sign an `inspect` event that
    carries its SHA-256, name and media type."""
    require(who, "document")
    uris = [lot_uri_of(b, f"batches[{n}]") for n, b in enumerate(lots)]
    if not uris:
        raise ValidationError("batches", "name the lot the document is about")
    if result not in ("pass", "fail"):
        raise ValidationError("result", "must be pass or fail")
    _may_sign_about(who, uris)  # before a byte of the file is stored
    state = portal()
    try:
        stored = state.documents.put(stream, filename, declared_type)
    except DocumentRefused as exc:
        titles = {413: "file too large", 415: "unsupported file type"}
        raise PortalError(
            exc.status, titles.get(exc.status, "bad request"), str(exc), reason="document"
        ) from exc
    data: dict[str, Any] = {
        "result": result,
        "document": {"sha256": stored.sha256, "name": stored.name, "media_type": stored.media_type},
    }
    if notes and notes.strip():
        data["notes"] = notes.strip()
    params = {"lots": uris, "sha256": stored.sha256, "name": stored.name}
    document = Document(
        stored.sha256,
        stored.name,
        stored.media_type,
        stored.size,
        who.party_did or "",
        format_time(state.clock()),
    )
    try:
        done = _sign(who, "document", [("inspect", uris, data)], params)
    except SignInBrowser as waiting:  # recorded once the browser's signature is appended
        waiting.pending.after.append(
            lambda results: state.accounts.add_document(document, uris, results[0].event_id or "")
        )
        raise
    except PortalError:
        if stored.new and state.accounts.document(stored.sha256) is None:
            state.documents.remove(stored.sha256)
        raise
    state.accounts.add_document(document, uris, done.event_ids[0])
    return done, document


def recall(
    who: Principal,
    *,
    lots: list[str],
    reason: str,
    recall_class: str,
    instructions: str | None = None,
) -> Done:
    require(who, "recall")
    uris = [lot_uri_of(b, f"batches[{n}]") for n, b in enumerate(lots)]
    if not uris:
        raise ValidationError("batches", "name the lot to recall")
    data: dict[str, Any] = {"reason": (reason or "").strip(), "class": recall_class}
    if instructions and instructions.strip():
        data["instructions"] = instructions.strip()
    params = {"lots": uris, "reason": data["reason"], "class": recall_class}
    return _sign(who, "recall", [("recall", uris, data)], params)


def lift(who: Principal, *, lots: list[str], reason: str) -> Done:
    require(who, "recall")
    uris = [lot_uri_of(b, f"batches[{n}]") for n, b in enumerate(lots)]
    if not uris:
        raise ValidationError("batches", "name the lot whose recall is lifted")
    data = {"reason": (reason or "").strip()}
    return _sign(
        who, "recall", [("recall-lift", uris, data)], {"lots": uris, "reason": data["reason"]}
    )


def recall_ack(
    who: Principal,
    *,
    lot: str,
    recall: str,
    returned: dict[str, Any] | None = None,
    destroyed: dict[str, Any] | None = None,
    notes: str | None = None,
) -> Done:
    """Acknowledge the recall *recall* (its event id) of *lot* as the caller's
    party, with what it returned and destroyed since its last acknowledgement;
    the ledger checks the party holds or held the lot (docs/lineage.md)."""
    require(who, "recall-ack")
    uri = lot_uri_of(lot)
    data: dict[str, Any] = {"recall": str(recall or "").strip().lower()}
    for name, value in (("returned", returned), ("destroyed", destroyed)):
        if value is not None:
            data[name] = value
    if notes and notes.strip():
        data["notes"] = notes.strip()
    params = {"lot": uri, **{k: v for k, v in data.items() if k != "notes"}}
    return _sign(who, "recall-ack", [("recall-ack", [uri], data)], params)


def release(who: Principal, *, lots: list[str], reason: str, hold: str | None = None) -> Done:
    """End the holds a rule put on these lots (all of them, or the one named)."""
    require(who, "recall")
    uris = [lot_uri_of(b, f"batches[{n}]") for n, b in enumerate(lots)]
    if not uris:
        raise ValidationError("batches", "name the held lot to release")
    data: dict[str, Any] = {"reason": (reason or "").strip()}
    if hold:
        data["hold"] = hold.strip()
    return _sign(who, "recall", [("release", uris, data)], {"lots": uris, **data})


def append_envelopes(who: Principal, items: list[Any], *, atomic: bool) -> list[Appended]:
    """Envelopes signed by the client, appended as they are (a v2 envelope as
    ``{"envelope": …, "disclosures": […]}``, docs/protocol.md §14). Each must
    be signed by the caller's party or one of its devices."""
    require(who, "envelopes")
    store = read_store()
    me = party_identity(store, who)
    for position, item in enumerate(items):
        envelope = item.get("envelope") if is_wrapped(item) else item
        signer = envelope.get("signer") if isinstance(envelope, dict) else None
        if not isinstance(signer, str):
            raise PortalError(
                400,
                "bad request",
                f"item {position}: not a signed envelope (no signer)",
                reason="schema",
            )
        identity = store.identity_by_did(signer)
        mine = identity is not None and (
            identity.id == me.id or (identity.type == "device" and identity.owner == me.id)
        )
        if not mine:
            params = {"count": len(items), "signer": signer}
            audit(who, "envelopes", params, "refused: another party's signer")
            raise forbidden(
                f"item {position} is signed by {signer}, which is neither your party nor one of "
                "its devices: an API token acts only for its own party",
                "other-party",
            )
    try:
        results = portal().writer.append(items, atomic=atomic, source=f"api:{who.actor}")
    except WriteUnavailable as exc:
        raise PortalError(503, "read-only server", str(exc), reason="read-only") from exc
    except ProvenanceError as exc:  # pragma: no cover - the ledger reports per item
        raise PortalError(400, "bad request", str(exc), reason="schema") from exc
    accepted = sum(1 for r in results if r.ok)
    outcome = "ok" if accepted == len(results) else f"{len(results) - accepted} refused"
    audit(who, "envelopes", {"count": len(items), "accepted": accepted}, outcome)
    return results


def audited_trace(who: Principal, store: Store) -> Trace:
    """The trace of the request's lot (`uri`, `direction`), written to the
    audit trail (the portal page and the API share it)."""
    uri = lot_uri_of(request.args.get("uri"), "uri")
    direction = request.args.get("direction", BOTH)
    if direction not in DIRECTIONS:
        raise ValidationError("direction", f"must be one of {', '.join(DIRECTIONS)}")
    found = trace(store, uri, direction)
    counts = {"upstream": len(found.upstream), "downstream": len(found.downstream)}
    audit(who, "trace", {"lot": uri, "direction": direction, **counts})
    return found


def audited_export(who: Principal, kind: str, lot_arg: str) -> exports.Export:
    """An export for the request's lot (query parameter *lot_arg*), product and
    date range, written to the audit trail (the portal page and the API share it)."""
    lot = (request.args.get(lot_arg) or "").strip()
    params = {
        "format": kind,
        "lot": lot_uri_of(lot, lot_arg) if lot else None,
        "product": (request.args.get("product") or "").strip()[:200] or None,
        "from": request.args.get("from") or None,
        "to": request.args.get("to") or None,
    }
    made = exports.export(
        read_store(),
        kind,
        lot=params["lot"],
        product=params["product"],
        since=params["from"],
        until=params["to"],
    )
    audit(who, "export", {**params, "count": made.count})
    return made
