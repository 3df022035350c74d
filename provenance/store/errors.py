"""What a database engine raises, whichever engine it is.

`sqlite3.Error` comes from the SQLite store; `DatabaseError` from the
PostgreSQL one (provenance/store/postgres.py wraps every psycopg error in it,
so no layer above the store imports psycopg). Code that treats a database
failure as transient (the ingest's commit retry, the services' rounds, the
CLI's `Error: …`) catches `DATABASE_ERRORS`.
"""

from __future__ import annotations

import sqlite3


class DatabaseError(Exception):
    """A statement failed on the PostgreSQL server (or never reached it)."""


class DatabaseUnavailable(DatabaseError):
    """The server cannot be reached, or the connection was lost: nothing of
    the transaction under way was committed; retry once it is back."""


DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, DatabaseError)
