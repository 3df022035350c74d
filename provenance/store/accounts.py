"""Portal accounts: users, roles, passwords, sessions, API tokens, server-held
party keys, the audit trail, consumer-scan counts (by lot, and by serial for the
counterfeit rule) and uploaded-document records.

All of it lives in its own SQLite file (``{accounts dir}/accounts.db``, through
sqlite-utils), never in the ledger: the ledger holds only signed events. The
accounts directory also holds the server secret (``secret.key``, mode 0600,
unless ``PROVENANCE_SECRET_KEY`` is set) and the uploaded documents
(``documents/``, content-addressed by SHA-256).

- Passwords: argon2id (argon2-cffi), rehashed on sign-in when the parameters
  change. Unknown names cost the same as wrong passwords.
- Sign-in throttling per account name: after ``max_failures`` consecutive
  failures the name is locked for ``lock_seconds``, doubling with each further
  failure up to ``max_lock_seconds``; while locked even the right password is
  refused (`LoginThrottled` carries the seconds to wait).
- Sessions: random ids; only their SHA-256 is stored; idle and absolute expiry;
  dropped on sign-out, password change and when the user is disabled.
- API tokens: ``pvt_`` + 43 random base64url characters, shown once; only the
  SHA-256 is stored. A token is scoped to one party with that party's role and
  a scope (``write`` or ``read``), and can be revoked.
- Party keys: each party's Ed25519 key as PKCS#8 PEM encrypted with
  `BestAvailableEncryption`; the password is derived (HKDF-SHA256) from the
  server secret, which is not in this database. docs/portal.md has the threat
  model.
- The audit trail is append-only (triggers refuse UPDATE and DELETE) and
  hash-chained: each entry's hash covers the previous hash and the entry, so
  `verify_audit` notices an entry edited or removed behind SQLite's back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.identity import PARTY_ROLES
from provenance.core.jcs import canonicalize
from provenance.core.timefmt import format_time, now_micros

ADMIN = "admin"
ROLES = (*PARTY_ROLES, ADMIN)
SCOPES = ("write", "read")
SECRET_ENV = "PROVENANCE_SECRET_KEY"
SECRET_FILE = "secret.key"
DATABASE_FILE = "accounts.db"
TOKEN_PREFIX = "pvt_"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
SECOND = 1_000_000
HOUR = 3600 * SECOND

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_TOKEN = re.compile(r"pvt_[A-Za-z0-9_-]{43}")
_PLACE = re.compile(r"[A-Z][A-Z0-9]")


class AccountError(ProvenanceError):
    """An accounts operation that cannot be done (duplicate name, unknown user…)."""


class AuthenticationFailed(AccountError):
    """Wrong name or password (deliberately not saying which)."""


class LoginThrottled(AccountError):
    """Too many failed sign-ins for this name: wait `retry_after` seconds."""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"too many failed sign-ins for this account: try again in {retry_after} s")


class TokenRefused(AccountError):
    """An API token that is malformed, unknown or revoked."""


class KeyUnavailable(AccountError):
    """A party key is not held, or cannot be decrypted with this server secret."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    party_did: str | None
    party_name: str | None
    disabled: bool
    created_at: str


@dataclass(frozen=True)
class Token:
    id: int
    party_did: str
    party_name: str
    role: str
    scope: str
    label: str
    created_by: str
    created_at: str
    revoked_at: str | None
    last_used_at: str | None


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user or an API token, with its party and role."""

    actor: str  # "user alice" or "token 7 (label)": what the audit trail says
    role: str
    party_did: str | None
    party_name: str | None
    user_id: int | None = None
    token_id: int | None = None
    scope: str = "write"

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    role: str | None
    party: str | None
    action: str
    params: dict[str, Any]
    outcome: str
    hash: str


@dataclass(frozen=True)
class Document:
    sha256: str
    name: str
    media_type: str
    size: int
    party_did: str
    uploaded_at: str


@dataclass(frozen=True)
class HashParams:
    """argon2id cost. The defaults are argon2-cffi's (RFC 9106 low-memory profile)."""

    time_cost: int = 3
    memory_cost: int = 65536  # KiB
    parallelism: int = 4


# --- the server secret and what is derived from it


def server_secret(
    directory: str | os.PathLike[str], environ: dict[str, str] | None = None
) -> bytes:
    """The server secret: ``PROVENANCE_SECRET_KEY`` when set (at least 32
    characters), else ``{directory}/secret.key``, made (32 random bytes as hex,
    mode 0600) when absent. Losing it invalidates sessions and makes the stored
    party keys undecryptable (import them again)."""
    env = os.environ if environ is None else environ
    given = env.get(SECRET_ENV)
    if given:
        if len(given) < 32:
            raise ValidationError(SECRET_ENV, "must be at least 32 characters of random text")
        return given.encode("utf-8")
    folder = Path(directory)
    path = folder / SECRET_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    text = path.read_text(encoding="ascii").strip()
    if len(text) < 32:
        raise ValidationError(
            str(path), "the server secret is too short: delete it to make a new one"
        )
    return text.encode("ascii")


def derive(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (HKDF-SHA256), so that the session-signing
    key and the key-encryption key never coincide."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"provenance/v1/{purpose}".encode()
    ).derive(secret)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


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


def check_place(value: str | None) -> str:
    """A coarse place for scan counts: an ISO 3166 alpha-2 code (or a CDN's
    two-character pseudo-code such as T1), else ``unknown``. Never an address."""
    if value and _PLACE.fullmatch(value.strip().upper()):
        return value.strip().upper()
    return "unknown"


# --- schema

_MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def _migration(name: str):
    def register(function):
        _MIGRATIONS.append((name, function))
        return function

    return register


@_migration("0001_accounts")
def _initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            role TEXT NOT NULL, party_did TEXT, party_name TEXT,
            password TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE login_failures (
            name TEXT PRIMARY KEY COLLATE NOCASE, failures INTEGER NOT NULL,
            last_us INTEGER NOT NULL, locked_until_us INTEGER NOT NULL DEFAULT 0)"""
    )
    db.execute(
        """CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL,
            created_us INTEGER NOT NULL, seen_us INTEGER NOT NULL)"""
    )
    db.execute("CREATE INDEX sessions_user ON sessions (user_id)")
    db.execute(
        """CREATE TABLE tokens (
            id INTEGER PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
            party_did TEXT NOT NULL, party_name TEXT NOT NULL, role TEXT NOT NULL,
            scope TEXT NOT NULL, label TEXT NOT NULL, created_by TEXT NOT NULL,
            created_at TEXT NOT NULL, revoked_at TEXT, last_used_us INTEGER)"""
    )
    db.execute(
        """CREATE TABLE party_keys (
            party_did TEXT PRIMARY KEY, party_name TEXT NOT NULL,
            pem BLOB NOT NULL, stored_at TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
            role TEXT, party TEXT, action TEXT NOT NULL, params TEXT NOT NULL,
            outcome TEXT NOT NULL, hash TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX audit_action ON audit (action)")
    db.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
    )
    db.execute(
        """CREATE TABLE scans (
            lot TEXT NOT NULL, hour TEXT NOT NULL, place TEXT NOT NULL,
            count INTEGER NOT NULL, PRIMARY KEY (lot, hour, place)) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE documents (
            sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, media_type TEXT NOT NULL,
            size INTEGER NOT NULL, party_did TEXT NOT NULL, uploaded_at TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE document_lots (
            sha256 TEXT NOT NULL, lot TEXT NOT NULL, event_id TEXT NOT NULL,
            PRIMARY KEY (sha256, lot, event_id)) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX document_lots_lot ON document_lots (lot)")


@_migration("0002_serial_scans")
def _serial_scans(db: sqlite_utils.Database) -> None:
    """Consumer scans of serialised items (`/01/…/10/{lot}/21/{serial}`) by serial,
    hour and coarse place, for the counterfeit rule (docs/rules.md)."""
    db.execute(
        """CREATE TABLE serial_scans (
            lot TEXT NOT NULL, serial TEXT NOT NULL, hour TEXT NOT NULL, place TEXT NOT NULL,
            count INTEGER NOT NULL, PRIMARY KEY (lot, serial, hour, place)) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX serial_scans_hour ON serial_scans (hour)")


_GENESIS = "0" * 64


class Accounts:
    """The accounts database. Thread-safe: one connection behind a lock (the
    work per call is small); other processes (the CLI) write beside it."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        clock: Callable[[], int] = now_micros,
        secret: bytes | None = None,
        hash_params: HashParams | None = None,
        max_failures: int = 5,
        lock_seconds: int = 30,
        max_lock_seconds: int = 900,
        session_idle_seconds: int = 2 * 3600,
        session_max_seconds: int = 12 * 3600,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.clock = clock
        self._secret = secret
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
        path = self.directory / DATABASE_FILE
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # not world-readable
        self.path = path
        self.conn = sqlite3.connect(
            str(path), isolation_level=None, timeout=30, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: accounts, keys and the audit trail survive a power cut.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.db = sqlite_utils.Database(self.conn)
        self._lock = threading.RLock()
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    # --- plumbing

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._lock:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"
            )
            done = {row[0] for row in self.conn.execute("SELECT name FROM _migrations")}
            unknown = done - {name for name, _ in _MIGRATIONS}
            if unknown:
                raise AccountError(
                    f"{self.path} has migrations this version does not know "
                    f"({', '.join(sorted(unknown))}): upgrade Provenance"
                )
            for name, function in _MIGRATIONS:
                if name in done:
                    continue
                with self._write():
                    function(self.db)
                    self.conn.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))

    def _now(self) -> tuple[int, str]:
        now = self.clock()
        return now, format_time(now)

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = server_secret(self.directory)
        return self._secret

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

    # --- API tokens

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

    # --- server-held party keys

    def _key_password(self) -> bytes:
        return derive(self.secret, "party-keys")

    def store_party_key(self, party_did: str, party_name: str, key: Ed25519PrivateKey) -> None:
        """Keep *key* encrypted under the server secret (replacing an older one)."""
        from provenance.core.signing import did_of

        if did_of(key) != party_did:
            raise ValidationError("key", f"is not the key of {party_name} ({party_did})")
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

    # --- the audit trail

    @staticmethod
    def _entry_hash(previous: str, fields: dict[str, Any]) -> str:
        return hashlib.sha256(previous.encode("ascii") + canonicalize(fields)).hexdigest()

    def audit(
        self,
        actor: str,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        role: str | None = None,
        party: str | None = None,
        outcome: str = "ok",
    ) -> AuditEntry:
        """Append one entry: who, what, with which parameters, and how it ended."""
        clean = json.loads(json.dumps(params or {}, default=str))  # JSON values only
        _, at = self._now()
        fields = {
            "at": at,
            "actor": actor,
            "role": role,
            "party": party,
            "action": action,
            "params": clean,
            "outcome": outcome[:2000],
        }
        with self._write() as conn:
            row = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            digest = self._entry_hash(row[0] if row else _GENESIS, fields)
            cursor = conn.execute(
                "INSERT INTO audit (at, actor, role, party, action, params, outcome, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    at,
                    actor,
                    role,
                    party,
                    action,
                    json.dumps(clean, ensure_ascii=False, sort_keys=True),
                    fields["outcome"],
                    digest,
                ),
            )
        return AuditEntry(
            cursor.lastrowid or 0, at, actor, role, party, action, clean, fields["outcome"], digest
        )

    def audit_entries(
        self,
        *,
        limit: int = 100,
        before: int | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first; *before* pages back from an entry id."""
        where, params = [], []
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if action:
            where.append("action = ?")
            params.append(action)
        if actor:
            where.append("actor = ?")
            params.append(actor)
        sql = "SELECT id, at, actor, role, party, action, params, outcome, hash FROM audit "
        if where:
            sql += "WHERE " + " AND ".join(where) + " "
        sql += "ORDER BY id DESC LIMIT ?"
        rows = self._read(sql, (*params, max(1, min(limit, 1000))))
        return [
            AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
            for r in rows
        ]

    def verify_audit(self) -> tuple[int, str | None]:
        """(entries checked, the first problem or None): recomputes the hash chain."""
        previous, count = _GENESIS, 0
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, at, actor, role, party, action, params, outcome, hash FROM audit "
                "ORDER BY id"
            )
            for row in rows:
                fields = {
                    "at": row[1],
                    "actor": row[2],
                    "role": row[3],
                    "party": row[4],
                    "action": row[5],
                    "params": json.loads(row[6]),
                    "outcome": row[7],
                }
                if self._entry_hash(previous, fields) != row[8]:
                    return count, f"audit entry {row[0]} was changed, or one before it removed"
                previous, count = row[8], count + 1
        return count, None

    # --- consumer scans (counts only: lot, hour, coarse place; never an address)

    def record_scan(self, lot_uri: str, at_us: int, place: str | None) -> None:
        hour = format_time(at_us)[:13]
        with self._write() as conn:
            conn.execute(
                "INSERT INTO scans (lot, hour, place, count) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (lot, hour, place) DO UPDATE SET count = count + 1",
                (lot_uri, hour, check_place(place)),
            )

    def record_serial_scan(self, lot_uri: str, serial: str, at_us: int, place: str | None) -> None:
        """Count one scan of item *serial* of *lot_uri* (hour and coarse place only)."""
        if not isinstance(serial, str) or not 0 < len(serial) <= 20:
            raise ValidationError("serial", "must be 1-20 characters (GS1 AI 21)")
        hour = format_time(at_us)[:13]
        with self._write() as conn:
            conn.execute(
                "INSERT INTO serial_scans (lot, serial, hour, place, count) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (lot, serial, hour, place) DO UPDATE SET count = count + 1",
                (lot_uri, serial, hour, check_place(place)),
            )

    def serial_scans_since(self, since_us: int) -> list[tuple[str, str, str, str, int]]:
        """(lot URI, serial, hour ``YYYY-MM-DDTHH``, place, count) of serial scans from
        the hour of *since_us* on, by lot, serial and hour."""
        since = format_time(max(since_us, 0))[:13]
        return [
            (row[0], row[1], row[2], row[3], row[4])
            for row in self._read(
                "SELECT lot, serial, hour, place, count FROM serial_scans WHERE hour >= ? "
                "ORDER BY lot, serial, hour, place",
                (since,),
            )
        ]

    def scans(self, lot_uris: list[str], since_us: int) -> list[tuple[str, str, int]]:
        """(day, place, count) for the lots from the hour of *since_us* on."""
        if not lot_uris:
            return []
        since = format_time(since_us)[:13]
        found: dict[tuple[str, str], int] = {}
        for start in range(0, len(lot_uris), 500):
            chunk = lot_uris[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for day, place, count in self._read(
                f"SELECT substr(hour, 1, 10), place, sum(count) FROM scans "
                f"WHERE lot IN ({marks}) AND hour >= ? GROUP BY 1, 2",
                (*chunk, since),
            ):
                found[(day, place)] = found.get((day, place), 0) + count
        return sorted(((day, place, n) for (day, place), n in found.items()))

    # --- uploaded documents (the files are in documents/, see portal.documents)

    def add_document(self, document: Document, lot_uris: list[str], event_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO documents (sha256, name, media_type, size, party_did, "
                "uploaded_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    document.sha256,
                    document.name,
                    document.media_type,
                    document.size,
                    document.party_did,
                    document.uploaded_at,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO document_lots (sha256, lot, event_id) VALUES (?, ?, ?)",
                [(document.sha256, uri, event_id) for uri in lot_uris],
            )

    def document(self, sha256: str) -> Document | None:
        rows = self._read(
            "SELECT sha256, name, media_type, size, party_did, uploaded_at FROM documents "
            "WHERE sha256 = ?",
            (sha256,),
        )
        return Document(*rows[0]) if rows else None

    def document_lots(self, sha256: str) -> list[str]:
        return [
            row[0]
            for row in self._read("SELECT lot FROM document_lots WHERE sha256 = ?", (sha256,))
        ]

    def lot_documents(self, lot_uri: str) -> list[tuple[Document, str]]:
        """(document, inspect event id) attached to a lot through this portal."""
        rows = self._read(
            "SELECT d.sha256, d.name, d.media_type, d.size, d.party_did, d.uploaded_at, "
            "l.event_id FROM document_lots l JOIN documents d ON d.sha256 = l.sha256 "
            "WHERE l.lot = ? ORDER BY d.uploaded_at",
            (lot_uri,),
        )
        return [(Document(*row[:6]), row[6]) for row in rows]


def default_directory(database: str | os.PathLike[str]) -> Path:
    """Where accounts live when not configured: ``accounts/`` beside the ledger."""
    return Path(database).resolve().parent / "accounts"


__all__ = [
    "ADMIN",
    "ROLES",
    "SCOPES",
    "AccountError",
    "Accounts",
    "AuditEntry",
    "AuthenticationFailed",
    "Document",
    "HashParams",
    "KeyUnavailable",
    "LoginThrottled",
    "Principal",
    "Token",
    "TokenRefused",
    "User",
    "check_name",
    "check_password",
    "check_place",
    "default_directory",
    "derive",
    "server_secret",
]
