"""The key vault: each party's Ed25519 key held by the server as PKCS#8 PEM
encrypted with `BestAvailableEncryption`; the password is derived (HKDF-SHA256)
from the server secret, which is not in this database. docs/portal.md has the
threat model.

Only keys the operator is meant to hold come in: a party whose enrolment says it
is custodial (docs/protocol.md §3, "Keys"), never a regulator's, never a key a
party made on its own machine (those parties sign in their browser)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from provenance.core.errors import ValidationError
from provenance.store.accounts.db import AccountsDatabase
from provenance.store.accounts.models import KeyUnavailable
from provenance.store.accounts.secret import derive, server_secret


def refuse_server_held(party_name: str, *, role: str | None, custodial: bool) -> None:
    """Raise ValidationError unless the server may hold (or sign with) the key
    of this party: a custodial party that is not a regulator."""
    if role == "regulator":
        raise ValidationError(
            "key",
            f"{party_name} is a regulator: its key is never held by the operator's server. "
            "It signs in its browser (docs/portal.md, 'Keys in the browser') or with "
            "`provenance ... --key FILE` on its own machine",
        )
    if not custodial:
        raise ValidationError(
            "key",
            f"{party_name} was enrolled by its public key: it holds its own key, and the server "
            "will not hold it. It signs in its browser (docs/portal.md, 'Keys in the browser')",
        )


class KeyVault(AccountsDatabase):
    """Server-held party keys in the accounts database."""

    _secret: bytes | None
    _keys: dict[str, Ed25519PrivateKey]  # decrypted once, kept in memory

    def _start_vault(self, secret: bytes | None) -> None:
        self._secret = secret
        self._keys = {}

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = server_secret(self.directory)
        return self._secret

    def _key_password(self) -> bytes:
        return derive(self.secret, "party-keys")

    def store_party_key(
        self,
        party_did: str,
        party_name: str,
        key: Ed25519PrivateKey,
        *,
        role: str | None,
        custodial: bool,
    ) -> None:
        """Keep *key* encrypted under the server secret (replacing an older one).
        *role* and *custodial* come from the party's enrolment: a regulator's key
        and the key of a party enrolled as holding its own key are refused."""
        from provenance.core.signing import did_of

        if did_of(key) != party_did:
            raise ValidationError("key", f"is not the key of {party_name} ({party_did})")
        refuse_server_held(party_name, role=role, custodial=custodial)
        pem = key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(self._key_password())
        )
        _, at = self._now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO party_keys (party_did, party_name, pem, stored_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (party_did) DO UPDATE SET party_name = excluded.party_name, "
                "pem = excluded.pem, stored_at = excluded.stored_at",
                (party_did, party_name, pem, at),
            )
        self._keys.pop(party_did, None)

    def party_key(self, party_did: str) -> Ed25519PrivateKey:
        """The decrypted key of a party (kept in memory once decrypted)."""
        cached = self._keys.get(party_did)
        if cached is not None:
            return cached
        rows = self._read(
            "SELECT pem, party_name FROM party_keys WHERE party_did = ?", (party_did,)
        )
        if not rows:
            raise KeyUnavailable(
                "this server holds no signing key for your party: an operator imports it with "
                "`provenance portal key-import PARTY`"
            )
        try:
            key = load_pem_private_key(rows[0][0], password=self._key_password())
        except (ValueError, TypeError):
            raise KeyUnavailable(
                f"the stored key of {rows[0][1]} cannot be decrypted with this server secret "
                "(was PROVENANCE_SECRET_KEY or secret.key changed?): import it again"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyUnavailable(f"the stored key of {rows[0][1]} is not an Ed25519 key")
        self._keys[party_did] = key
        return key

    def has_party_key(self, party_did: str) -> bool:
        return bool(self._read("SELECT 1 FROM party_keys WHERE party_did = ?", (party_did,)))

    def party_keys(self) -> list[tuple[str, str, str]]:
        """(party name, did, stored at) of every key held."""
        return [
            (row[0], row[1], row[2])
            for row in self._read(
                "SELECT party_name, party_did, stored_at FROM party_keys ORDER BY party_name"
            )
        ]

    def remove_party_key(self, party_did: str) -> bool:
        with self._write() as conn:
            gone = conn.execute("DELETE FROM party_keys WHERE party_did = ?", (party_did,)).rowcount
        self._keys.pop(party_did, None)
        return bool(gone)
