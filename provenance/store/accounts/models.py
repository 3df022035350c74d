"""What callers of the accounts database hold: roles and scopes, the errors it
raises and the values it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provenance.core.errors import ProvenanceError
from provenance.core.identity import PARTY_ROLES

ADMIN = "admin"
ROLES = (*PARTY_ROLES, ADMIN)
SCOPES = ("write", "read")
SECOND = 1_000_000
HOUR = 3600 * SECOND


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
