"""API tokens: ``pvt_`` + 43 random base64url characters, shown once; only the
SHA-256 is stored. A token is scoped to one party with that party's role and a
scope (``write`` or ``read``), and can be revoked."""

from __future__ import annotations

import re
import secrets
from typing import Any

from provenance.core.errors import ValidationError
from provenance.core.identity import PARTY_ROLES
from provenance.core.timefmt import format_time
from provenance.store.accounts.db import AccountsDatabase
from provenance.store.accounts.models import (
    SCOPES,
    SECOND,
    AccountError,
    Principal,
    Token,
    TokenRefused,
)
from provenance.store.accounts.secret import token_hash

TOKEN_PREFIX = "pvt_"

_TOKEN = re.compile(r"pvt_[A-Za-z0-9_-]{43}")


class ApiTokens(AccountsDatabase):
    """API tokens in the accounts database."""

    _TOKEN_COLUMNS = (
        "SELECT id, party_did, party_name, role, scope, label, created_by, created_at, "
        "revoked_at, last_used_us FROM tokens "
    )

    @staticmethod
    def _token(row: tuple[Any, ...]) -> Token:
        last = row[9]
        return Token(*row[:9], None if last is None else format_time(last))

    def create_token(
        self,
        party_did: str,
        party_name: str,
        role: str,
        *,
        scope: str = "write",
        label: str = "",
        created_by: str,
    ) -> tuple[Token, str]:
        """A new token; returns it and its secret (shown once, never stored)."""
        if role not in PARTY_ROLES:
            raise ValidationError(
                "role", f"a token acts for a party: one of {', '.join(PARTY_ROLES)}"
            )
        if scope not in SCOPES:
            raise ValidationError("scope", f"must be one of {', '.join(SCOPES)}")
        label = (label or "").strip()[:100]
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        _, at = self._now()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO tokens (token_hash, party_did, party_name, role, scope, label, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_hash(secret), party_did, party_name, role, scope, label, created_by, at),
            )
            token_id = cursor.lastrowid
        return self.token(token_id or 0), secret  # type: ignore[return-value]

    def token(self, token_id: int) -> Token | None:
        rows = self._read(self._TOKEN_COLUMNS + "WHERE id = ?", (token_id,))
        return self._token(rows[0]) if rows else None

    def tokens(self, party_did: str | None = None) -> list[Token]:
        if party_did is None:
            rows = self._read(self._TOKEN_COLUMNS + "ORDER BY id")
        else:
            rows = self._read(self._TOKEN_COLUMNS + "WHERE party_did = ? ORDER BY id", (party_did,))
        return [self._token(row) for row in rows]

    def revoke_token(self, token_id: int) -> Token:
        token = self.token(token_id)
        if token is None:
            raise AccountError(f"no token {token_id}")
        if token.revoked_at is None:
            _, at = self._now()
            with self._write() as conn:
                conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (at, token_id))
        return self.token(token_id)  # type: ignore[return-value]

    def token_principal(self, secret: str) -> Principal:
        """Who a bearer token acts for. Raises `TokenRefused` with the reason."""
        if not isinstance(secret, str) or not _TOKEN.fullmatch(secret):
            raise TokenRefused("malformed API token: expected pvt_ and 43 characters")
        rows = self._read(self._TOKEN_COLUMNS + "WHERE token_hash = ?", (token_hash(secret),))
        if not rows:
            raise TokenRefused("unknown API token")
        token = self._token(rows[0])
        if token.revoked_at is not None:
            raise TokenRefused(f"this API token was revoked at {token.revoked_at}")
        now, _ = self._now()
        last = rows[0][9]
        if last is None or now - last > 60 * SECOND:
            with self._write() as conn:
                conn.execute("UPDATE tokens SET last_used_us = ? WHERE id = ?", (now, token.id))
        label = f" ({token.label})" if token.label else ""
        return Principal(
            f"token {token.id}{label}",
            token.role,
            token.party_did,
            token.party_name,
            token_id=token.id,
            scope=token.scope,
        )
