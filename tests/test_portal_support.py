"""Fixtures for the portal and API tests (used with ``pytest_plugins``): the
test World in a ledger file, the web app over it with the log key in a keys
folder, an accounts folder, and helpers to sign in, send forms with their
CSRF token, and call the API with a bearer token."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from flask import Flask
from flask.testing import FlaskClient
from world import World

from provenance.core.envelope import b64url
from provenance.core.jcs import canonicalize
from provenance.store.accounts.accounts import Accounts
from provenance.web import create_app

PASSWORD = "correct horse battery"
FAST_HASH = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}  # tests only
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Portal:
    world: World
    app: Flask
    tmp: Path
    clients: dict[str, FlaskClient] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # user name -> World party

    @property
    def accounts(self) -> Accounts:
        return self.app.extensions["provenance.portal"].accounts

    def user(
        self, name: str, party: str | None = None, *, role: str | None = None, key: bool = True
    ) -> None:
        """A user of a World party (its key held by the server), or an admin."""
        if party is None:
            self.accounts.add_user(name, role or "admin", PASSWORD)
            return
        identity = self.world.store.identity_by_did(self.world.did(party))
        assert identity is not None
        self.accounts.add_user(
            name, role or identity.role, PASSWORD, party_did=identity.did, party_name=party
        )
        self.users[name] = party
        if key:
            self.hold_key(identity, party)

    def hold_key(self, identity: Any, party: str) -> None:
        """The server holds the party's key, as a custodial party's may be; a
        regulator's never is: it signs in its browser (`post` plays the browser)."""
        if identity.role == "regulator":
            return
        self.accounts.store_party_key(
            identity.did, party, self.world.keys[party], role=identity.role, custodial=True
        )

    def client(self, name: str | None = None) -> FlaskClient:
        """A browser: signed in as *name* when given."""
        key = name or ""
        if key not in self.clients:
            browser = self.app.test_client()
            if name:
                page = browser.get("/portal/login")
                response = browser.post(
                    "/portal/login",
                    data={"name": name, "password": PASSWORD, "csrf_token": csrf_of(page)},
                )
                assert response.status_code == 303, response.get_data(as_text=True)
            self.clients[key] = browser
        return self.clients[key]

    def csrf(self, name: str) -> str:
        return csrf_of(self.client(name).get("/portal/password"))

    def post(self, name: str, url: str, data: dict[str, Any] | None = None, **kwargs: Any):
        """A form post as *name*, with the session's CSRF token. When the portal
        answers with its sign page (the party holds its own key), this plays the
        browser: signs the JCS bytes with the party's key and posts the signatures."""
        body = {"csrf_token": self.csrf(name), **(data or {})}
        response = self.client(name).post(url, data=body, **kwargs)
        if response.status_code == 200 and SIGN_PAGE in response.get_data(as_text=True):
            signatures = [
                browser_signature(self.world.keys[self.users[name]], envelope)
                for envelope in unsigned_envelopes(response)
            ]
            response = self.client(name).post(
                sign_action(response),
                data={"csrf_token": self.csrf(name), "signatures": json.dumps(signatures)},
            )
        return response

    def token(self, party: str, *, scope: str = "write", key: bool = True) -> str:
        identity = self.world.store.identity_by_did(self.world.did(party))
        assert identity is not None
        if key:
            self.hold_key(identity, party)
        _, secret = self.accounts.create_token(
            identity.did, party, identity.role or "", scope=scope, created_by="test"
        )
        return secret

    def api(self, method: str, url: str, token: str | None, **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = self.app.test_client()
        return client.open(url, method=method, headers=headers, **kwargs)

    def lot_id(self, uri: str) -> int:
        lot = self.world.store.lot_by_uri(uri)
        assert lot is not None, uri
        return lot.id

    def resync(self, name: str) -> None:
        """After the portal signed for *name*, let the World sign with the next seq."""
        self.world.seqs[name] = self.world.ledger.next_seq(self.world.did(name))


SIGN_PAGE = '<script type="application/json" id="unsigned">'
_UNSIGNED = re.compile(r'<script type="application/json" id="unsigned">(.*?)</script>', re.S)
_SIGN_ACTION = re.compile(r'<form id="sign-form" method="post" action="([^"]+)"')


def unsigned_envelopes(response) -> list[dict[str, Any]]:
    found = _UNSIGNED.search(response.get_data(as_text=True))
    assert found, "no envelopes on the sign page"
    return json.loads(html.unescape(found.group(1)))


def sign_action(response) -> str:
    found = _SIGN_ACTION.search(response.get_data(as_text=True))
    assert found, "no sign form"
    return html.unescape(found.group(1))


def browser_signature(key: Any, envelope: dict[str, Any]) -> str:
    """What static/portal-sign.js does: Ed25519 over the envelope's JCS bytes."""
    return b64url(key.sign(canonicalize(envelope)))


def csrf_of(response) -> str:
    found = _CSRF.search(response.get_data(as_text=True))
    assert found, "no CSRF token on the page"
    return found.group(1)


def make_app(world: World, tmp: Path, **config: Any) -> Flask:
    keys = tmp / "keys"
    keys.mkdir(exist_ok=True)
    pem = world.log_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (keys / "log.pem").write_bytes(pem)
    settings = {
        "DATABASE": str(world.store.path),
        "CLOCK": lambda: world.now,
        "LOG_PUBLIC_KEY": world.log_public_key,
        "TESTING": True,
        "ACCOUNTS_DIR": str(tmp / "accounts"),
        "KEYS": str(keys),
        "PASSWORD_HASH": FAST_HASH,
        **config,
    }
    return create_app(settings)


@pytest.fixture
def portal(file_world, tmp_path) -> Portal:
    """The World's ledger behind the web app, with users farm1 (producer),
    packer1 (processor), carrier1, store1 (retailer), reg1 (regulator) and
    root (admin)."""
    app = make_app(file_world, tmp_path)
    found = Portal(file_world, app, tmp_path)
    for name, party in (
        ("farm1", "farm"),
        ("packer1", "packer"),
        ("carrier1", "carrier"),
        ("store1", "store"),
        ("reg1", "regulator"),
    ):
        found.user(name, party)
    found.user("root")
    return found
