"""Signing in and out, and changing one's password."""

from __future__ import annotations

import secrets

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from provenance.core.errors import ValidationError
from provenance.store.accounts.models import AuthenticationFailed, LoginThrottled

from .guard import PortalError, login_required, principal, safe_next
from .state import portal

bp = Blueprint("auth", __name__)


def _audit_login(name: str, outcome: str, user=None) -> None:
    accounts = portal().accounts
    accounts.audit(
        f"user {name[:64]}",
        "login",
        {},
        role=user.role if user else None,
        party=user.party_name if user else None,
        outcome=outcome,
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.get("principal") is not None:
            return redirect(target or url_for("portal.producer.home"))
        return render_template("portal/login.html", next=target, error=None)
    name = (request.form.get("name") or "").strip()
    password = request.form.get("password") or ""
    accounts = portal().accounts
    try:
        user = accounts.authenticate(name, password)
    except LoginThrottled as exc:
        _audit_login(name, "refused: throttled")
        raise PortalError(
            429,
            "too many failed sign-ins",
            str(exc),
            reason="login-throttled",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    except AuthenticationFailed:
        _audit_login(name, "refused: wrong name or password")
        page = render_template(
            "portal/login.html", next=target, error=_("Wrong user name or password."), name=name
        )
        return page, 401
    old = session.get("sid")
    if old:
        accounts.close_session(old)
    session.clear()  # a new session id and CSRF token: no session fixation
    session["sid"] = accounts.open_session(user)
    session["csrf"] = secrets.token_urlsafe(32)
    _audit_login(user.name, "ok", user)
    return redirect(target or url_for("portal.producer.home"), code=303)


@bp.post("/logout")
def logout():
    sid = session.get("sid")
    if sid:
        portal().accounts.close_session(sid)
    session.clear()
    return redirect(url_for("portal.auth.login"), code=303)


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    who = principal()
    if request.method == "GET":
        return render_template("portal/password.html", error=None)
    user = g.user
    accounts = portal().accounts
    current = request.form.get("current") or ""
    new = request.form.get("new") or ""
    if new != (request.form.get("repeat") or ""):
        return render_template("portal/password.html", error=_("The new passwords differ.")), 400
    try:
        accounts.authenticate(user.name, current)
    except (AuthenticationFailed, LoginThrottled):
        accounts.audit(
            who.actor,
            "password",
            {},
            role=who.role,
            party=who.party_name,
            outcome="refused: wrong current password",
        )
        return render_template(
            "portal/password.html", error=_("The current password is wrong.")
        ), 403
    try:
        accounts.set_password(user.name, new)
    except ValidationError as exc:
        return render_template("portal/password.html", error=str(exc)), 400
    accounts.audit(who.actor, "password", {}, role=who.role, party=who.party_name)
    session.clear()
    session["sid"] = accounts.open_session(user)
    session["csrf"] = secrets.token_urlsafe(32)
    flash(_("Password changed. Every other session of yours was signed out."))
    return redirect(url_for("portal.producer.home"), code=303)
