"""`Accounts`: the one entry point to the accounts database — every job
(users and sessions, API tokens, the key vault, the audit trail, scan counts,
document records) over one connection."""

from __future__ import annotations

import os
from collections.abc import Callable

from provenance.core.timefmt import now_micros
from provenance.store.accounts.audit_trail import AuditTrail
from provenance.store.accounts.db import AccountsDatabase
from provenance.store.accounts.documents import DocumentRecords
from provenance.store.accounts.epcis_records import EpcisRecords
from provenance.store.accounts.models import HashParams
from provenance.store.accounts.rotation import KeyRotations
from provenance.store.accounts.scans import ScanCounts
from provenance.store.accounts.tokens import ApiTokens
from provenance.store.accounts.users import UserAccounts
from provenance.store.accounts.vault import KeyVault


class Accounts(
    UserAccounts,
    ApiTokens,
    KeyVault,
    AuditTrail,
    ScanCounts,
    DocumentRecords,
    KeyRotations,
    EpcisRecords,
):
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
        self._start_vault(secret)
        self._start_users(
            hash_params,
            max_failures=max_failures,
            lock_seconds=lock_seconds,
            max_lock_seconds=max_lock_seconds,
            session_idle_seconds=session_idle_seconds,
            session_max_seconds=session_max_seconds,
        )
        AccountsDatabase.__init__(self, directory, clock=clock)
