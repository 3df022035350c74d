"""Signing in the user's browser (docs/portal.md, "Keys in the browser").

A party that holds its own key — every regulator, and every party enrolled by
its public key — is never signed for by this server. An action of such a party
is prepared here (the unsigned envelope, with the party's next seq), kept for a
few minutes under a random token tied to the user, and shown on a page whose
script (static/portal-sign.js) signs its RFC 8785 bytes with the key the
browser keeps; the signature comes back to `POST /portal/sign/<token>`, and the
envelope goes through `Ledger.append`, which checks the signature against the
enrolled key like any other. The server cannot change what was signed: an
altered envelope fails that check.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request
from flask_babel import ngettext

from provenance.core.jcs import parse_json
from provenance.ledger.append import Appended
from provenance.store.accounts.models import Principal

from .guard import PortalError, principal
from .state import portal
from .writer import WriteUnavailable

PENDING_SECONDS = 15 * 60  # how long a prepared envelope waits for its signature
MAX_PENDING = 1000  # prepared envelopes kept at once, oldest dropped first
MAX_SIGNATURES_FORM = 64 * 1024

bp = Blueprint("browser_keys", __name__)


@dataclass
class Pending:
    user_id: int | None
    actor: str
    action: str
    params: dict[str, Any]
    envelopes: list[dict[str, Any]]
    made_us: int
    next_url: str = "/portal/"
    # run once appended, in order; one that returns a portal URL sends the user there
    after: list[Callable[[list[Appended]], str | None]] = field(default_factory=list)
    # the form again, with its values and the refusal by its field (forms.py)
    again: Callable[[Exception], Any] | None = None


class SignInBrowser(Exception):
    """The action is prepared; the user's browser signs it."""

    def __init__(self, token: str, pending: Pending):
        super().__init__("sign in the browser")
        self.token = token
        self.pending = pending


class PendingSignatures:
    """Prepared envelopes by token: bounded in number and age."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Pending] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, pending: Pending) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._items[token] = pending
            while len(self._items) > MAX_PENDING:
                self._items.popitem(last=False)
        return token

    def peek(self, token: str) -> Pending | None:
        with self._lock:
            return self._items.get(token)

    def take(self, token: str, who: Principal, now_us: int) -> Pending:
        with self._lock:
            pending = self._items.get(token)
            if pending is None or pending.user_id != who.user_id:
                raise PortalError(
                    404, "not found", "no such action waits for your signature", reason="sign"
                )
            if now_us - pending.made_us > PENDING_SECONDS * 1_000_000:
                del self._items[token]
                raise PortalError(
                    410, "expired", "this action waited too long: do it again", reason="sign"
                )
            del self._items[token]
            return pending


def pending_signatures() -> PendingSignatures:
    state = portal()
    found = getattr(state, "pending_signatures", None)
    if found is None:
        found = state.pending_signatures = PendingSignatures()  # type: ignore[attr-defined]
    return found


def _safe_next(url: str | None) -> str:
    """Where to go once signed: a page of this portal, never another site."""
    if url and url.startswith("/portal/") and not url.startswith("//") and "\\" not in url:
        return url
    return "/portal/"


def prepare(
    who: Principal, action: str, params: dict[str, Any], envelopes: list[dict[str, Any]]
) -> None:
    """Keep *envelopes* for the caller's browser to sign; raises SignInBrowser."""
    referrer = request.referrer or ""
    host = request.host_url.rstrip("/")
    next_url = referrer[len(host) :] if referrer.startswith(host + "/") else None
    pending = Pending(
        who.user_id, who.actor, action, params, envelopes, portal().clock(), _safe_next(next_url)
    )
    raise SignInBrowser(pending_signatures().add(pending), pending)


def render_sign_page(exc: SignInBrowser):
    """The page that shows what the browser signs, and signs it."""
    return render_template(
        "portal/sign.html",
        token=exc.token,
        pending=exc.pending,
        signer=exc.pending.envelopes[0]["signer"],
    )


@bp.get("/key")
def key_page():
    """Make this browser's key (with its encrypted backup), or restore one. Open
    without signing in: a new party makes its key here before it is enrolled,
    and nothing is sent to the server (the page only runs our script)."""
    who = g.get("principal")
    enrolled = who.party_did if who is not None and who.party_did else ""
    return render_template("portal/key.html", who=who, enrolled=enrolled)


@bp.post("/sign/<token>")
def sign(token: str):
    """Append the prepared envelopes with the signatures the browser made."""
    from .actions import audit, refused_result

    who = principal()
    state = portal()
    pending = pending_signatures().take(token, who, state.clock())
    text = request.form.get("signatures", "")
    if len(text) > MAX_SIGNATURES_FORM:
        raise PortalError(413, "too large", "too many signatures", reason="sign")
    try:
        signatures = parse_json(text) if text else None
    except ValueError:
        signatures = None
    if (
        not isinstance(signatures, list)
        or len(signatures) != len(pending.envelopes)
        or not all(isinstance(s, str) for s in signatures)
    ):
        raise PortalError(
            400, "bad request", "signatures: one base64url signature per envelope", reason="sign"
        )
    signed = [{**e, "sig": s} for e, s in zip(pending.envelopes, signatures, strict=True)]
    try:
        results = state.writer.append(signed, atomic=True, source=f"portal:{who.actor}")
    except WriteUnavailable as exc:
        raise PortalError(503, "read-only server", str(exc), reason="read-only") from exc
    failed = next((r for r in results if r.status == "rejected"), None)
    if failed is not None:
        audit(who, pending.action, pending.params, f"refused: {failed.reason}: {failed.message}")
        if pending.again is not None:
            return pending.again(refused_result(failed))
        raise refused_result(failed)
    event_ids = [r.event_id for r in results if r.event_id]
    audit(who, pending.action, {**pending.params, "events": event_ids, "signed": "browser"})
    if not pending.after:
        flash(
            ngettext(
                "Signed in your browser and recorded: %(num)d event.",
                "Signed in your browser and recorded: %(num)d events.",
                len(event_ids),
            )
        )
    next_url = pending.next_url
    for step in pending.after:
        where = step(results)
        if where:
            next_url = _safe_next(where)
    return redirect(next_url, code=303)


@contextmanager
def when_signed(
    next_url: str,
    then: Callable[[list[Appended]], str | None] | None = None,
    again: Callable[[Exception], Any] | None = None,
) -> Iterator[None]:
    """Around an action in a route: if the action waits for the browser's
    signature, go to *next_url* once it is recorded, and run *then* (flash what
    the route would have said; return a better page, e.g. a new lot's) with the
    append results. *again*, if given, answers a refusal of the ledger when
    the signature comes: the form again, its values kept (forms.py)."""
    try:
        yield
    except SignInBrowser as waiting:
        waiting.pending.next_url = _safe_next(next_url)
        waiting.pending.again = again
        if then is not None:
            waiting.pending.after.append(then)
        raise
