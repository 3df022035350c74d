"""Fixtures for the portal and API tests (a plugin, registered in tests/conftest.py): the
test World in a ledger file, the web app over it with the log key in a keys
folder, an accounts folder, and helpers to sign in, send forms with their
CSRF token, and call the API with a bearer token."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from flask import Flask
from flask.testing import FlaskClient

from provenance.store.accounts.accounts import Accounts
from provenance.web import create_app
from support.world import World

PASSWORD = "correct horse battery"
FAST_HASH = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}  # tests only
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Portal:
    world: World
    app: Flask
    tmp: Path
    clients: dict[str, FlaskClient] = field(default_factory=dict)

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
        if key:
            self.accounts.store_party_key(identity.did, party, self.world.keys[party])

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
        """A form post as *name*, with the session's CSRF token."""
        body = {"csrf_token": self.csrf(name), **(data or {})}
        return self.client(name).post(url, data=body, **kwargs)

    def token(self, party: str, *, scope: str = "write", key: bool = True) -> str:
        identity = self.world.store.identity_by_did(self.world.did(party))
        assert identity is not None
        if key:
            self.accounts.store_party_key(identity.did, party, self.world.keys[party])
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
