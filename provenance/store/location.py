"""Where a ledger is: `--db` as a SQLite file or a PostgreSQL URL, where the
files kept beside a ledger go, and a URL fit to show (no password)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def is_database_url(location: str | Path | None) -> bool:
    """Whether --db names a PostgreSQL database (postgresql://…) rather than a file."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def database_location(location: str | Path) -> str | Path:
    """--db as given: a PostgreSQL URL stays text (a Path would fold its //), a
    file name becomes a Path."""
    return location if is_database_url(location) else Path(location)


def local_path(location: str | Path) -> Path:
    """Where the files kept beside a ledger go (accounts/, cursors): beside the
    ledger's file, or for a PostgreSQL database in the working directory, named
    after the database."""
    if is_database_url(location):
        name = urlsplit(str(location)).path.strip("/") or "provenance"
        return Path(name.replace("/", "_"))
    return Path(location)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def redacted(url: str) -> str:
    """*url* without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
