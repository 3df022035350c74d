"""Admins: users (create, disable, enable, set a password) and API tokens
(list, revoke), and which parties' keys the server holds. Keys themselves are
only imported from the command line (`provenance portal key-import`)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from provenance.store.accounts.models import ADMIN, AccountError

from ..errors import Unavailable
from ..state import store as read_store
from . import queries
from .actions import audit
from .guard import PortalError, needs, principal
from .state import portal

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _home():
    return redirect(url_for("portal.admin.home"), code=303)


@bp.get("/")
@needs("users")
def home():
    accounts = portal().accounts
    try:
        parties = queries.parties(read_store())
    except Unavailable:  # no ledger yet: users can still be managed
        parties = []
    return render_template(
        "portal/admin.html",
        users=accounts.users(),
        tokens=accounts.tokens(),
        keys={did for _, did, _ in accounts.party_keys()},
        parties=parties,
    )


@bp.post("/users")
@needs("users")
def add_user():
    who = principal()
    form = request.form
    role = form.get("role", "")
    party_did = party_name = None
    if role != ADMIN:
        party = read_store().identity_by_did(form.get("party", ""))
        if party is None or party.type != "party":
            raise PortalError(400, "bad request", "choose the user's party", reason="party")
        if party.role != role:
            raise PortalError(
                400,
                "bad request",
                f"{party.name} is enrolled as a {party.role}: its users have that role",
                reason="role",
            )
        party_did, party_name = party.did, party.name
    name = form.get("name", "").strip()
    try:
        portal().accounts.add_user(
            name, role, form.get("password", ""), party_did=party_did, party_name=party_name
        )
    except AccountError as exc:
        raise PortalError(409, "conflict", str(exc), reason="exists") from exc
    audit(who, "user-add", {"user": name, "role": role, "party": party_name})
    flash(_("User %(name)s created.", name=name))
    return _home()


@bp.post("/users/<name>/<change>")
@needs("users")
def change_user(name: str, change: str):
    who = principal()
    accounts = portal().accounts
    if accounts.user(name) is None:
        raise PortalError(404, "not found", f"no user {name!r}", reason="unknown-user")
    if change in ("disable", "enable"):
        if (
            change == "disable"
            and who.user_id is not None
            and accounts.user(name).id == who.user_id
        ):
            raise PortalError(409, "conflict", "you cannot disable yourself", reason="self")
        accounts.set_disabled(name, change == "disable")
    elif change == "password":
        accounts.set_password(name, request.form.get("password", ""))
    else:
        raise PortalError(404, "not found", f"no such change {change!r}")
    audit(who, f"user-{change}", {"user": name})
    flash(_("User %(name)s: %(change)s done.", name=name, change=change))
    return _home()


@bp.post("/tokens/<int:token_id>/revoke")
@needs("users")
def revoke_token(token_id: int):
    who = principal()
    try:
        portal().accounts.revoke_token(token_id)
    except AccountError as exc:
        raise PortalError(404, "not found", str(exc), reason="unknown-token") from exc
    audit(who, "token-revoke", {"token": token_id})
    flash(_("Token %(id)s revoked.", id=token_id))
    return _home()
