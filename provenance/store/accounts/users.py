"""Users, their argon2id passwords, sign-in throttling and sessions.

- Passwords: argon2id (argon2-cffi), rehashed on sign-in when the parameters
  change. Unknown names cost the same as wrong passwords.
- Sign-in throttling per account name: after ``max_failures`` consecutive
  failures the name is locked for ``lock_seconds``, doubling with each further
  failure up to ``max_lock_seconds``; while locked even the right password is
  refused (`LoginThrottled` carries the seconds to wait).
- Sessions: random ids; only their SHA-256 is stored; idle and absolute expiry;
  dropped on sign-out, password change and when the user is disabled.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from provenance.core.errors import ValidationError
from provenance.store.accounts.db import AccountsDatabase
from provenance.store.accounts.models import (
    ADMIN,
    HOUR,
    ROLES,
    SECOND,
    AccountError,
    AuthenticationFailed,
    HashParams,
    LoginThrottled,
    User,
)
from provenance.store.accounts.secret import token_hash

MIN_PASSWORD = 10
MAX_PASSWORD = 1024

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError(
            "name", "1-64 letters, digits and . _ @ - (starting with a letter or digit)"
        )
    return name


def check_password(password: str, name: str = "") -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationError("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValidationError("password", f"must be at most {MAX_PASSWORD} characters")
    if name and password.casefold() == name.casefold():
        raise ValidationError("password", "must not be the user name")
    return password


class UserAccounts(AccountsDatabase):
    """Users, passwords, sign-in and sessions in the accounts database."""

    hasher: PasswordHasher
    _dummy_hash: str  # what an unknown name is checked against, so it costs the same
    max_failures: int
    lock_seconds: int
    max_lock_seconds: int
    session_idle_us: int
    session_max_us: int

    def _start_users(
        self,
        hash_params: HashParams | None,
        *,
        max_failures: int,
        lock_seconds: int,
        max_lock_seconds: int,
        session_idle_seconds: int,
        session_max_seconds: int,
    ) -> None:
        params = hash_params or HashParams()
        self.hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
        )
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.max_lock_seconds = max_lock_seconds
        self.session_idle_us = session_idle_seconds * SECOND
        self.session_max_us = session_max_seconds * SECOND

    # --- users

    _USER = "SELECT id, name, role, party_did, party_name, disabled, created_at FROM users "

    @staticmethod
    def _user(row: tuple[Any, ...] | None) -> User | None:
        if row is None:
            return None
        return User(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])

    def add_user(
        self,
        name: str,
        role: str,
        password: str,
        *,
        party_did: str | None = None,
        party_name: str | None = None,
    ) -> User:
        """A new user. Party roles need a party; an admin has none."""
        check_name(name)
        if role not in ROLES:
            raise ValidationError("role", f"must be one of {', '.join(ROLES)}; got {role!r}")
        if role == ADMIN and party_did:
            raise ValidationError("party", "an admin belongs to no party")
        if role != ADMIN and not (party_did and party_name):
            raise ValidationError("party", f"a {role} user belongs to a party: name it")
        check_password(password, name)
        hashed = self.hasher.hash(password)
        _, at = self._now()
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO users (name, role, party_did, party_name, password, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, role, party_did, party_name, hashed, at),
                )
        except sqlite3.IntegrityError:
            raise AccountError(f"a user named {name!r} exists already") from None
        user = self.user(name)
        assert user is not None
        return user

    def user(self, name: str) -> User | None:
        return self._user(next(iter(self._read(self._USER + "WHERE name = ?", (name,))), None))

    def user_by_id(self, user_id: int) -> User | None:
        return self._user(next(iter(self._read(self._USER + "WHERE id = ?", (user_id,))), None))

    def users(self) -> list[User]:
        return [u for row in self._read(self._USER + "ORDER BY name") if (u := self._user(row))]

    def _require_user(self, name: str) -> User:
        user = self.user(name)
        if user is None:
            raise AccountError(f"no user named {name!r}")
        return user

    def set_password(self, name: str, password: str) -> None:
        """A new password; every open session of the user ends."""
        user = self._require_user(name)
        check_password(password, user.name)
        hashed = self.hasher.hash(password)
        with self._write() as conn:
            conn.execute("UPDATE users SET password = ? WHERE id = ?", (hashed, user.id))
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (user.id,))
            conn.execute("DELETE FROM login_failures WHERE name = ?", (user.name,))

    def set_disabled(self, name: str, disabled: bool) -> User:
        """Disable (ending every session) or enable a user."""
        user = self._require_user(name)
        with self._write() as conn:
            conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user.id))
            if disabled:
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user.id,))
        return self._require_user(name)

    def password_hash(self, name: str) -> str | None:
        rows = self._read("SELECT password FROM users WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    # --- signing in

    def authenticate(self, name: str, password: str) -> User:
        """The user if *password* is theirs. Raises `LoginThrottled` while the
        name is locked, else `AuthenticationFailed` (unknown name, wrong
        password and disabled user alike)."""
        now, _ = self._now()
        key = (name or "")[:64]
        rows = self._read(
            "SELECT failures, locked_until_us FROM login_failures WHERE name = ?", (key,)
        )
        if rows and rows[0][1] > now:
            raise LoginThrottled(max(1, -(-(rows[0][1] - now) // SECOND)))
        found = self._read("SELECT id, password, disabled FROM users WHERE name = ?", (key,))
        stored = found[0][1] if found else self._dummy_hash
        try:
            self.hasher.verify(stored, password or "")
            good = bool(found) and not found[0][2]
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            good = False
        if not good:
            self._failed(key, now)
            raise AuthenticationFailed("wrong user name or password")
        with self._write() as conn:
            conn.execute("DELETE FROM login_failures WHERE name = ?", (key,))
            if self.hasher.check_needs_rehash(stored):
                conn.execute(
                    "UPDATE users SET password = ? WHERE id = ?",
                    (self.hasher.hash(password), found[0][0]),
                )
        user = self.user_by_id(found[0][0])
        assert user is not None
        return user

    def _failed(self, name: str, now: int) -> None:
        with self._write() as conn:
            # forget failures older than a day (bounds the table under name spraying)
            conn.execute("DELETE FROM login_failures WHERE last_us < ?", (now - 24 * HOUR,))
            row = conn.execute(
                "SELECT failures FROM login_failures WHERE name = ?", (name,)
            ).fetchone()
            failures = (row[0] if row else 0) + 1
            locked_until = 0
            if failures >= self.max_failures:
                doublings = min(failures - self.max_failures, 20)
                wait = min(self.lock_seconds * (1 << doublings), self.max_lock_seconds)
                locked_until = now + wait * SECOND
            conn.execute(
                "INSERT INTO login_failures (name, failures, last_us, locked_until_us) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "failures = excluded.failures, last_us = excluded.last_us, "
                "locked_until_us = excluded.locked_until_us",
                (name, failures, now, locked_until),
            )

    # --- sessions

    def open_session(self, user: User) -> str:
        """A new session id for *user* (give it to the browser; we keep its hash)."""
        sid = secrets.token_urlsafe(32)
        now, _ = self._now()
        with self._write() as conn:
            conn.execute(
                "DELETE FROM sessions WHERE seen_us < ? OR created_us < ?",
                (now - self.session_idle_us, now - self.session_max_us),
            )
            conn.execute(
                "INSERT INTO sessions (id_hash, user_id, created_us, seen_us) VALUES (?, ?, ?, ?)",
                (token_hash(sid), user.id, now, now),
            )
        return sid

    def session_user(self, sid: str) -> User | None:
        """The user of a live session, or None (unknown, expired, disabled)."""
        if not isinstance(sid, str) or len(sid) > 100:
            return None
        now, _ = self._now()
        digest = token_hash(sid)
        rows = self._read(
            "SELECT user_id, created_us, seen_us FROM sessions WHERE id_hash = ?", (digest,)
        )
        if not rows:
            return None
        user_id, created, seen = rows[0]
        if now - seen > self.session_idle_us or now - created > self.session_max_us:
            self.close_session(sid)
            return None
        user = self.user_by_id(user_id)
        if user is None or user.disabled:
            return None
        if now - seen > 60 * SECOND:  # at most one write a minute per session
            with self._write() as conn:
                conn.execute("UPDATE sessions SET seen_us = ? WHERE id_hash = ?", (now, digest))
        return user

    def close_session(self, sid: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash = ?", (token_hash(sid),))
