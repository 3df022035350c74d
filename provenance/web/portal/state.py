"""What the portal keeps per app: settings, the accounts database (opened on
first use), the ledger writer, rate limiters and the document store."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from provenance.core.timefmt import now_micros
from provenance.store.accounts.accounts import Accounts
from provenance.store.accounts.db import default_directory
from provenance.store.accounts.models import HashParams
from provenance.store.accounts.secret import derive, server_secret
from provenance.store.location import database_location

from .documents import DocumentStore
from .jobs import JobRunner
from .ratelimit import Limit, RateLimiter
from .writer import LedgerWriter

EXTENSION = "provenance.portal"

# Requests per client address; see docs/portal.md. Consumer pages are generous:
# many phones can share one address behind a carrier's NAT.
DEFAULT_RATE_LIMITS: dict[str, Any] = {
    "scan": "300/minute burst 60",  # consumer page, JSON twin, bundle
    "lookup": "60/minute burst 20",  # home page and the lookup form
    "log": "600/minute burst 120",  # transparency log API
    "login": "10/minute burst 5",  # sign-in attempts
    "api": "600/minute burst 120",  # /api/v1 (before the token is looked at)
}


def defaults(app: Flask) -> None:
    """Portal settings, each also read from the environment."""
    env = os.environ
    for key, value in {
        "ACCOUNTS_DIR": env.get("PROVENANCE_ACCOUNTS") or None,
        "KEYS": env.get("PROVENANCE_KEYS", "keys"),
        "RATE_LIMITS": {},
        "RATE_LIMIT_CLIENTS": 10_000,
        "TRUSTED_PROXIES": int(env.get("PROVENANCE_TRUSTED_PROXIES", "0") or 0),
        "SCAN_COUNTRY_HEADER": env.get("PROVENANCE_SCAN_COUNTRY_HEADER") or None,
        # "LATITUDE-HEADER,LONGITUDE-HEADER", e.g. "CF-IPLatitude,CF-IPLongitude"
        "SCAN_GEO_HEADERS": env.get("PROVENANCE_SCAN_GEO_HEADERS") or None,
        "RECORD_SCANS": True,
        "DOCUMENT_MAX_BYTES": 10 * 1024 * 1024,
        "PASSWORD_HASH": None,  # accounts.HashParams; None: argon2-cffi's defaults
        "LOGIN_MAX_FAILURES": 5,
        "LOGIN_LOCK_SECONDS": 30,
        "SESSION_IDLE_SECONDS": 2 * 3600,
        "SESSION_MAX_SECONDS": 12 * 3600,
        "VERIFY_WORKERS": 1,
        "JOB_WORKERS": 1,  # background jobs (whole-ledger verify, exports) at once
        "JOBS_KEPT": 20,  # jobs kept with their results; the oldest finished goes first
        "PORTAL_PAGE_SIZE": 25,
    }.items():
        app.config.setdefault(key, value)
    config = app.config
    if env.get("PROVENANCE_SECURE_COOKIES", "").lower() in ("1", "true", "yes"):
        config["SESSION_COOKIE_SECURE"] = True  # else: Secure whenever the request is HTTPS
    if config.get("SESSION_COOKIE_NAME") in (None, "session"):
        config["SESSION_COOKIE_NAME"] = "provenance_session"
    config["SESSION_COOKIE_HTTPONLY"] = True  # never readable by scripts
    if config.get("SESSION_COOKIE_SAMESITE") not in ("Lax", "Strict"):
        config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if not config.get("SESSION_COOKIE_PATH"):
        config["SESSION_COOKIE_PATH"] = "/portal"


class Portal:
    def __init__(self, app: Flask):
        config = app.config
        self.config = config
        self.database = database_location(config["DATABASE"])
        self.accounts_dir = Path(config["ACCOUNTS_DIR"] or default_directory(self.database))
        self.clock = config["CLOCK"] or now_micros
        self.writer = LedgerWriter(self.database, config["KEYS"], self.clock)
        limits = {**DEFAULT_RATE_LIMITS, **(config["RATE_LIMITS"] or {})}
        self.limiters = {
            name: RateLimiter(Limit.parse(spec), max_clients=config["RATE_LIMIT_CLIENTS"])
            for name, spec in limits.items()
            if spec is not None
        }
        self.documents = DocumentStore(
            self.accounts_dir / "documents", max_bytes=config["DOCUMENT_MAX_BYTES"]
        )
        self.jobs = JobRunner(workers=config["JOB_WORKERS"], keep=config["JOBS_KEPT"])
        self._accounts: Accounts | None = None
        self._secret: bytes | None = None
        self._lock = threading.RLock()

    @property
    def secret(self) -> bytes:
        """The server secret (env PROVENANCE_SECRET_KEY, else accounts/secret.key)."""
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    self._secret = server_secret(self.accounts_dir)
        return self._secret

    def session_key(self) -> str:
        given = self.config.get("SECRET_KEY")
        return given if given else derive(self.secret, "sessions").hex()

    @property
    def accounts(self) -> Accounts:
        if self._accounts is None:
            with self._lock:
                if self._accounts is None:
                    config = self.config
                    params = config["PASSWORD_HASH"]
                    if isinstance(params, dict):
                        params = HashParams(**params)
                    self._accounts = Accounts(
                        self.accounts_dir,
                        clock=self.clock,
                        secret=self.secret,
                        hash_params=params,
                        max_failures=config["LOGIN_MAX_FAILURES"],
                        lock_seconds=config["LOGIN_LOCK_SECONDS"],
                        session_idle_seconds=config["SESSION_IDLE_SECONDS"],
                        session_max_seconds=config["SESSION_MAX_SECONDS"],
                    )
        return self._accounts


def portal() -> Portal:
    return current_app.extensions[EXTENSION]
